"""Signing bearer tokens with the local servers' key: `shopflow token`, the tests and the
benchmarks. A deployment's tokens come from its identity provider, never from here.

The local key pair is made by `scripts/infra.sh up` (RSA 2048, PKCS8 PEM):
SHOPFLOW_INFRA_DIR/token-signing-key.pem, and its public half beside it, the key `serve`
checks tokens against when neither SHOPFLOW_AUTH_JWKS_URL nor
SHOPFLOW_AUTH_PUBLIC_KEY_FILE is set. A token's `kid` is the public key's RFC 7638
thumbprint, as the verifier names the keys of a key file (`queries.token_keys`)."""

import time
from collections.abc import Sequence

import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from shopflow.local_credentials import TOKEN_SIGNING_KEY_FILE
from shopflow.queries.token_keys import jwk_thumbprint
from shopflow.settings import Settings

ALGORITHM = "RS256"
SCOPE_ONLY_SUBJECT = "shopflow-token"  # the `sub` of a token that is no user's


class NoSigningKey(Exception):
    """The local signing key is missing or unreadable."""


def signing_key(private_key_pem: bytes) -> RSAPrivateKey:
    """The key of a PEM text (loading it takes milliseconds: load once to sign many)."""
    key = load_pem_private_key(private_key_pem, password=None)
    if not isinstance(key, RSAPrivateKey):
        raise NoSigningKey(f"the signing key is {type(key).__name__}, not an RSA key")
    return key


def sign_token(
    key: RSAPrivateKey,
    *,
    issuer: str,
    audience: str,
    user_id: int | None = None,
    scopes: Sequence[str] = (),
    ttl_s: int = 3600,
    now: float | None = None,
    subject: str | None = None,
) -> str:
    """An RS256 token for `user_id` (its `sub`; or, for a service, `subject`) and/or
    `scopes` (its `scope`), valid for
    `ttl_s` seconds from `now` (the current time by default), its `kid` the key's
    thumbprint. `key` is loaded once (`signing_key`, `local_signing_key`): loading one
    takes milliseconds, signing with it far less."""
    if user_id is not None and subject is not None:
        raise ValueError("a token is a user's (user_id) or a service's (subject), not both")
    if user_id is not None:
        subject = str(user_id)
    issued = int(time.time() if now is None else now)
    claims: dict[str, object] = {
        "iss": issuer,
        "aud": audience,
        "sub": subject or SCOPE_ONLY_SUBJECT,
        "iat": issued,
        "exp": issued + ttl_s,
    }
    if scopes:
        claims["scope"] = " ".join(scopes)
    kid = jwk_thumbprint(key.public_key())
    return jwt.encode(claims, key, algorithm=ALGORITHM, headers={"kid": kid})


def local_signing_key(settings: Settings) -> RSAPrivateKey:
    """The local servers' private signing key."""
    path = settings.infra_dir / TOKEN_SIGNING_KEY_FILE
    try:
        return signing_key(path.read_bytes())
    except FileNotFoundError:
        raise NoSigningKey(
            f"there is no {path}: start the local servers: scripts/infra.sh up makes it"
        ) from None
    except OSError as error:
        raise NoSigningKey(f"cannot read {path}: {error.strerror}") from None
