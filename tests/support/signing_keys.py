"""Throwaway signing keys and tokens for the tests of bearer tokens (and of the HTTP
side, which needs them): made with `cryptography` in the test, never read from anywhere."""

import base64
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    NoEncryption,
    PrivateFormat,
    PublicFormat,
)

from shopflow.queries.auth import Authenticator
from shopflow.queries.token_keys import PublicKey, TokenKeys, jwk_thumbprint

ISSUER = "https://id.example.test"
AUDIENCE = "shopflow"

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


@dataclass(frozen=True)
class SigningKey:
    private: PrivateKey
    algorithm: str

    @property
    def public(self) -> PublicKey:
        return self.private.public_key()

    @property
    def kid(self) -> str:
        return jwk_thumbprint(self.public)

    def public_pem(self) -> bytes:
        return self.public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)

    def private_pem(self) -> bytes:
        return self.private.private_bytes(Encoding.PEM, PrivateFormat.PKCS8, NoEncryption())

    def token(self, *, kid: str | None = "", algorithm: str = "", **overrides: Any) -> str:
        """A token of `claims(**overrides)`; `kid` "" is this key's thumbprint, None none."""
        headers = {} if kid is None else {"kid": kid or self.kid}
        return jwt.encode(
            claims(**overrides),
            self.private,
            algorithm=algorithm or self.algorithm,
            headers=headers,
        )


def rsa_key() -> SigningKey:
    return SigningKey(rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256")


def ec_key() -> SigningKey:
    return SigningKey(ec.generate_private_key(ec.SECP256R1()), "ES256")


def ed25519_key() -> SigningKey:
    return SigningKey(ed25519.Ed25519PrivateKey.generate(), "EdDSA")


def claims(**overrides: Any) -> dict[str, Any]:
    """A customer's claims (user 7, valid for an hour); `name=None` leaves `name` out."""
    now = int(time.time())
    base: dict[str, Any] = {"iss": ISSUER, "aud": AUDIENCE, "sub": "7", "iat": now}
    base["exp"] = now + 3600
    base.update(overrides)
    return {name: value for name, value in base.items() if value is not None}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def by_hand(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"") -> str:
    """A token put together without PyJWT (which refuses to make the forged ones)."""
    parts = [json.dumps(header).encode(), json.dumps(payload).encode()]
    return ".".join([*map(b64url, parts), b64url(signature)])


def signing_input(token: str) -> bytes:
    return token.rsplit(".", 1)[0].encode("ascii")


def write_keys(path: Path, *keys: SigningKey) -> None:
    """The public halves of `keys` in one PEM file, its modification time moved on (a
    rewrite within the same clock tick must still look changed)."""
    previous = path.stat().st_mtime_ns if path.exists() else time.time_ns()
    path.write_bytes(b"".join(key.public_pem() for key in keys))
    later = max(previous + 1_000_000, time.time_ns())
    os.utime(path, ns=(later, later))


def public_key_file(folder: Path) -> Path:
    """A key file of a throwaway key, for an app that must be built with one (its
    tokens are not the point)."""
    path = folder / "token-keys.pem"
    path.write_bytes(ec_key().public_pem())
    return path


def accepting(*signers: SigningKey) -> Authenticator:
    """An authenticator of `create_http_app` that accepts the tokens of `signers` (and
    no other), usable at once: nothing to start."""
    keys = TokenKeys.fixed(*(signer.public for signer in signers))
    return Authenticator(keys, issuer=ISSUER, audience=AUDIENCE)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}
