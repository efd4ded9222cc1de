"""Bearer tokens for a test session (the `shopflow_token` fixture): signed with the local
servers' key when there is one (SHOPFLOW_INFRA_DIR/token-signing-key.pem), else with a
key pair made for the session (servers in containers have none). The session's HTTP app
checks tokens against the public half of that key (`settings_for`), whatever the
settings say, so the two always agree."""

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from shopflow.settings import Settings
from shopflow.tokens import NoSigningKey, local_signing_key, sign_token


@dataclass(frozen=True)
class TokenSigner:
    """`signer(user=7)`: a customer's token; `signer(scopes=["shopflow:read"])`: a
    service's; both at once are allowed."""

    key: rsa.RSAPrivateKey
    public_key_file: Path
    issuer: str
    audience: str

    def __call__(
        self,
        *,
        user: int | None = None,
        scopes: Sequence[str] = (),
        ttl_s: int = 3600,
        subject: str | None = None,
    ) -> str:
        """`subject`: a service's own name as its `sub` (whose Idempotency-Keys its
        writes' keys are)."""
        return sign_token(
            self.key,
            issuer=self.issuer,
            audience=self.audience,
            user_id=user,
            scopes=scopes,
            ttl_s=ttl_s,
            subject=subject,
        )

    def headers(
        self,
        *,
        user: int | None = None,
        scopes: Sequence[str] = (),
        ttl_s: int = 3600,
        subject: str | None = None,
    ) -> dict[str, str]:
        """`{"Authorization": "Bearer ..."}` for such a token."""
        token = self(user=user, scopes=scopes, ttl_s=ttl_s, subject=subject)
        return {"Authorization": f"Bearer {token}"}

    def settings_for(self, settings: Settings) -> Settings:
        """`settings` with the HTTP side checking tokens against this signer's key."""
        return settings.model_copy(
            update={"auth_jwks_url": None, "auth_public_key_file": self.public_key_file}
        )


def session_signer(settings: Settings, folder: Path) -> TokenSigner:
    """A signer with the local key, or with a key made now; its public half in `folder`."""
    try:
        key = local_signing_key(settings)
    except NoSigningKey:
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_key_file = folder / "token-public-key.pem"
    public_key_file.write_bytes(
        key.public_key().public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)
    )
    return TokenSigner(key, public_key_file, settings.auth_issuer, settings.auth_audience)
