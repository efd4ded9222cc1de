"""The public keys bearer tokens are checked against, kept current off the request path
(CONTRACT.md, Access). A PEM file of public keys (each named by its RFC 7638 thumbprint)
or an identity provider's JWKS URL is read at start, where no usable key is an error,
then again every refresh interval by one task; a request only looks a key up. A failed
refresh keeps the keys there were; a token of an unknown key may wake the refresher
early, at most once per EARLY_REFRESH_MIN_S. Only asymmetric signing keys are kept, so
an HMAC token signed with a public key as its secret finds no key (docs/access.md).
"""

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import jwt
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ec import (
    SECP256R1,
    SECP384R1,
    EllipticCurvePublicKey,
)
from cryptography.hazmat.primitives.asymmetric.ed448 import Ed448PublicKey
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from cryptography.hazmat.primitives.serialization import load_pem_public_key
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

log = logging.getLogger(__name__)

PublicKey = RSAPublicKey | EllipticCurvePublicKey | Ed25519PublicKey | Ed448PublicKey

RSA_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512"})
# The token algorithms accepted at all; a key accepts those of its type (`VerificationKey`).
ALGORITHMS = RSA_ALGORITHMS | {"ES256", "ES384", "EdDSA"}
MIN_RSA_BITS = 2048
EARLY_REFRESH_MIN_S = 30.0
JWKS_TIMEOUT_S = 10.0
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})

# RFC 7638, 3.2: the members of each key type's thumbprint, in lexicographic order.
_THUMBPRINT_MEMBERS = {
    "RSA": ("e", "kty", "n"),
    "EC": ("crv", "kty", "x", "y"),
    "OKP": ("crv", "kty", "x"),
}
_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----.*?-----END \1-----", re.DOTALL)


class KeySourceError(Exception):
    """A key source that could not be read, or held no usable key."""


class NoTokenKeys(KeySourceError):
    """No key could be loaded at start: the service cannot check any token."""


@dataclass(frozen=True)
class VerificationKey:
    kid: str
    public_key: PublicKey = field(compare=False, repr=False)
    algorithms: frozenset[str]
    thumbprint: str


def public_jwk(key: PublicKey) -> dict[str, Any]:
    """The key as a JWK (RFC 7517), by PyJWT."""
    if isinstance(key, RSAPublicKey):
        return RSAAlgorithm.to_jwk(key, as_dict=True)
    if isinstance(key, EllipticCurvePublicKey):
        return ECAlgorithm.to_jwk(key, as_dict=True)
    return OKPAlgorithm.to_jwk(key, as_dict=True)


def jwk_thumbprint(key: PublicKey) -> str:
    """RFC 7638: SHA-256 of the JWK's required members as compact JSON with sorted keys,
    base64url without padding. The `kid` of a key of the key file, and of the tokens
    `shopflow token` signs."""
    jwk = public_jwk(key)
    members = {name: jwk[name] for name in _THUMBPRINT_MEMBERS[jwk["kty"]]}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True)
    digest = hashlib.sha256(canonical.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def as_public_key(key: object) -> PublicKey:
    if isinstance(key, RSAPublicKey | EllipticCurvePublicKey | Ed25519PublicKey | Ed448PublicKey):
        return key
    raise KeySourceError(f"not a public signing key: {type(key).__name__}")


def algorithms_for(key: PublicKey) -> frozenset[str]:
    """The token algorithms `key` may verify; KeySourceError for one too weak or on a
    curve none of them uses."""
    if isinstance(key, RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise KeySourceError(f"an RSA key of {key.key_size} bits (at least {MIN_RSA_BITS})")
        return RSA_ALGORITHMS
    if isinstance(key, EllipticCurvePublicKey):
        if isinstance(key.curve, SECP256R1):
            return frozenset({"ES256"})
        if isinstance(key.curve, SECP384R1):
            return frozenset({"ES384"})
        raise KeySourceError(f"an EC key on {key.curve.name} (P-256 or P-384 only)")
    return frozenset({"EdDSA"})


def verification_key(key: object, kid: str | None = None) -> VerificationKey:
    """`key` ready to verify tokens, named `kid` (by default, its thumbprint)."""
    public_key = as_public_key(key)
    thumbprint = jwk_thumbprint(public_key)
    return VerificationKey(kid or thumbprint, public_key, algorithms_for(public_key), thumbprint)


def keys_from_pem(data: bytes, where: str) -> dict[str, VerificationKey]:
    """Every public key (or certificate's key) of a PEM text, by thumbprint. A private key
    in it is refused: the file is to hold what may be published, and nothing else."""
    keys: dict[str, VerificationKey] = {}
    for number, block in enumerate(_PEM_BLOCK.finditer(data), start=1):
        label = block.group(1).decode("ascii")
        try:
            if label in ("PUBLIC KEY", "RSA PUBLIC KEY"):
                key: object = load_pem_public_key(block.group(0))
            elif label == "CERTIFICATE":
                key = x509.load_pem_x509_certificate(block.group(0)).public_key()
            else:
                raise KeySourceError(f"a {label} block (only public keys and certificates)")
            found = verification_key(key)
        except (KeySourceError, ValueError, TypeError) as error:
            raise KeySourceError(f"{where}, PEM block {number}: {error}") from None
        keys[found.kid] = found
    if not keys:
        raise KeySourceError(f"{where} holds no PEM public key")
    return keys


_FROM_JWK: Mapping[str, Callable[[dict[str, Any]], object]] = {
    "RSA": RSAAlgorithm.from_jwk,
    "EC": ECAlgorithm.from_jwk,
    "OKP": OKPAlgorithm.from_jwk,
}


def keys_from_jwks(document: object, where: str) -> dict[str, VerificationKey]:
    """The signing keys of a JWKS document, by `kid`. Keys for encryption, symmetric or
    private keys, keys of other algorithms or too weak are left out (at debug level:
    a provider's set often has some)."""
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list):
        raise KeySourceError(f"{where} is not a JWK set (no `keys` list)")
    keys: dict[str, VerificationKey] = {}
    for entry in entries:
        if not isinstance(entry, dict):
            continue
        try:
            found = _jwk_signing_key(entry)
        except (KeySourceError, jwt.PyJWTError, ValueError, TypeError, KeyError) as error:
            log.debug("JWKS key %r of %s left out: %s", entry.get("kid"), where, error)
            continue
        keys[found.kid] = found
    if not keys:
        raise KeySourceError(f"{where} has no usable signing key")
    return keys


def _jwk_signing_key(entry: dict[str, Any]) -> VerificationKey:
    if entry.get("use", "sig") != "sig":
        raise KeySourceError(f"a key for {entry.get('use')!r}")
    from_jwk = _FROM_JWK.get(str(entry.get("kty")))
    if from_jwk is None:
        raise KeySourceError(f"a key of type {entry.get('kty')!r}")
    if "d" in entry:
        raise KeySourceError("a private key")
    kid = entry.get("kid")
    found = verification_key(from_jwk(entry), kid if isinstance(kid, str) and kid else None)
    declared = entry.get("alg")
    if declared is None:
        return found
    # RFC 7517, 4.4: a key that names its algorithm is used with that one only.
    if declared not in found.algorithms:
        raise KeySourceError(f"a key for {declared!r}")
    return VerificationKey(found.kid, found.public_key, frozenset({declared}), found.thumbprint)


class KeySource(Protocol):
    """Where the keys come from. `load` is called in a thread: it may block. It returns
    None when the keys cannot have changed since its last successful load."""

    def describe(self) -> str: ...

    def load(self) -> dict[str, VerificationKey] | None: ...


class KeyFile:
    """A PEM file of public keys, read again when its modification time, size or inode
    changes (an in-place edit or a file renamed over it)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._loaded: tuple[int, int, int] | None = None

    def describe(self) -> str:
        return str(self.path)

    def load(self) -> dict[str, VerificationKey] | None:
        try:
            status = self.path.stat()
            seen = (status.st_mtime_ns, status.st_size, status.st_ino)
            if seen == self._loaded:
                return None
            keys = keys_from_pem(self.path.read_bytes(), str(self.path))
        except OSError as error:
            raise KeySourceError(f"cannot read {self.path}: {error.strerror}") from None
        self._loaded = seen  # only once read whole: a broken file is read again next time
        return keys


class JwksUrl:
    """An identity provider's JWKS document, fetched by PyJWT's client (no redirects; its
    own JWK set cache off, since this is the cache). Over https: whoever could change the
    document on its way could sign any token; plain http only on loopback (tests, a
    sidecar)."""

    def __init__(self, url: str, *, timeout_s: float = JWKS_TIMEOUT_S) -> None:
        parts = urlsplit(url)
        if parts.scheme != "https" and not (
            parts.scheme == "http" and parts.hostname in LOOPBACK_HOSTS
        ):
            raise KeySourceError(f"the JWKS URL {url} is not https (plain http: loopback only)")
        self.url = url
        self._client = jwt.PyJWKClient(url, cache_jwk_set=False, timeout=timeout_s)

    def describe(self) -> str:
        return self.url

    def load(self) -> dict[str, VerificationKey]:
        try:
            document = self._client.fetch_data()
        except jwt.PyJWKClientError as error:
            raise KeySourceError(f"cannot fetch {self.url}: {error}") from None
        return keys_from_jwks(document, self.url)


class FixedKeys:
    """Keys given in code (tests, a tool): loaded once, never changing."""

    def __init__(self, *public_keys: object) -> None:
        self._keys = {k.kid: k for k in map(verification_key, public_keys)}

    def describe(self) -> str:
        return f"{len(self._keys)} fixed key(s)"

    def load(self) -> dict[str, VerificationKey]:
        return dict(self._keys)


class TokenKeys:
    """The current keys of one source, and the task that refreshes them. `version` grows
    whenever the keys change, so that what was verified with the old ones is forgotten
    (`queries.auth.TokenVerifier`'s cache)."""

    def __init__(self, source: KeySource, *, refresh_s: float) -> None:
        self.source = source
        self.refresh_s = refresh_s
        self.version = 0
        self._keys: dict[str, VerificationKey] = {}
        self._wake = asyncio.Event()
        self._last_early = -EARLY_REFRESH_MIN_S
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def fixed(cls, *public_keys: object) -> "TokenKeys":
        """Keys of code's own, usable at once, without `start` (tests)."""
        keys = cls(FixedKeys(*public_keys), refresh_s=3600.0)
        keys._install(keys.source.load() or {})
        return keys

    @property
    def keys(self) -> Mapping[str, VerificationKey]:
        return self._keys

    def find(self, kid: str | None) -> VerificationKey | None:
        """The key of `kid`; a token without one names the only key, if there is one."""
        if kid is None:
            return next(iter(self._keys.values())) if len(self._keys) == 1 else None
        return self._keys.get(kid)

    async def start(self) -> None:
        """Load the keys (NoTokenKeys if none can be) and start refreshing them."""
        try:
            loaded = await asyncio.to_thread(self.source.load)
        except KeySourceError as error:
            raise NoTokenKeys(f"no token key could be loaded: {error}") from None
        if loaded is not None:
            self._install(loaded)
        if not self._keys:
            raise NoTokenKeys(f"no token key could be loaded from {self.source.describe()}")
        log.info("token keys from %s: %s", self.source.describe(), ", ".join(self._keys))
        self._task = asyncio.create_task(self._refreshing(), name="token-keys-refresh")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def refresh_soon(self) -> None:
        """Wake the refresher now (a token named an unknown key), unless it was woken so
        less than EARLY_REFRESH_MIN_S ago."""
        now = time.monotonic()
        if now - self._last_early >= EARLY_REFRESH_MIN_S:
            self._last_early = now
            self._wake.set()

    async def refresh(self) -> bool:
        """Load the keys again now; whether they changed. A failure keeps the current
        keys and is logged."""
        try:
            loaded = await asyncio.to_thread(self.source.load)
        except KeySourceError as error:
            log.warning(
                "token keys not refreshed, keeping the %d there are: %s", len(self._keys), error
            )
            return False
        if loaded is None or loaded == self._keys:
            return False
        self._install(loaded)
        log.info("token keys from %s are now: %s", self.source.describe(), ", ".join(loaded))
        return True

    def _install(self, keys: dict[str, VerificationKey]) -> None:
        self._keys = keys
        self.version += 1

    async def _refreshing(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.refresh_s):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self.refresh()
            except Exception:  # a bug here must not end the refreshing for good
                log.exception("refreshing the token keys failed")
