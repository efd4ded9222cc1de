"""`shopflow token`: prints a token, and only it, signed with the key of the local
servers (here a key made in SHOPFLOW_INFRA_DIR, a temporary folder), that the HTTP
side's verifier accepts with the public half."""

import time
from pathlib import Path

import jwt
import pytest
from typer.testing import CliRunner

from shopflow.cli import app
from shopflow.local_credentials import TOKEN_SIGNING_KEY_FILE
from shopflow.queries.auth import SCOPE_METRICS, SCOPE_READ, Caller, TokenVerifier
from shopflow.queries.token_keys import TokenKeys, keys_from_pem
from shopflow.settings import Settings
from shopflow.testing.tokens import session_signer
from tests.support.signing_keys import SigningKey, rsa_key

ISSUER, AUDIENCE = "shopflow-local", "shopflow"


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return rsa_key()


@pytest.fixture
def infra(tmp_path: Path, key: SigningKey) -> Path:
    (tmp_path / TOKEN_SIGNING_KEY_FILE).write_bytes(key.private_pem())
    return tmp_path


def shopflow_token(infra: Path, *args: str, **env: str) -> tuple[int, str, str]:
    environment = {
        "SHOPFLOW_INFRA_DIR": str(infra),
        "SHOPFLOW_AUTH_ISSUER": ISSUER,
        "SHOPFLOW_AUTH_AUDIENCE": AUDIENCE,
        **env,
    }
    result = CliRunner().invoke(app, ["token", *args], env=environment)
    return result.exit_code, result.stdout, result.stderr


def verified(key: SigningKey, token: str, issuer: str = ISSUER) -> Caller:
    verifier = TokenVerifier(TokenKeys.fixed(key.public), issuer=issuer, audience=AUDIENCE)
    return verifier.verify(token)


def test_a_user_token_is_printed_alone_and_verifies_as_that_user(
    infra: Path, key: SigningKey
) -> None:
    code, out, _ = shopflow_token(infra, "--user", "2")

    assert code == 0
    token = out.removesuffix("\n")
    assert not any(c.isspace() for c in token)
    assert verified(key, token) == Caller(2, frozenset())
    assert jwt.get_unverified_header(token) == {"alg": "RS256", "kid": key.kid, "typ": "JWT"}
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 3600
    assert abs(claims["iat"] - time.time()) < 60


def test_a_scope_token_has_no_user_and_the_ttl_asked_for(infra: Path, key: SigningKey) -> None:
    code, out, _ = shopflow_token(infra, "--scope", f"{SCOPE_READ} {SCOPE_METRICS}", "--ttl", "60")

    assert code == 0
    assert verified(key, out.strip()) == Caller(None, frozenset({SCOPE_READ, SCOPE_METRICS}))
    claims = jwt.decode(out.strip(), options={"verify_signature": False})
    assert claims["sub"] == "shopflow-token"
    assert claims["exp"] - claims["iat"] == 60


def test_a_services_token_may_name_it_as_its_subject(infra: Path, key: SigningKey) -> None:
    code, out, _ = shopflow_token(infra, "--scope", SCOPE_READ, "--subject", "storefront")
    refused, _, error = shopflow_token(infra, "--user", "5", "--subject", "storefront")

    assert code == 0
    assert verified(key, out.strip()).subject == "storefront"
    assert refused == 2
    assert "sub" in error


def test_user_and_scope_combine_with_the_configured_issuer(infra: Path, key: SigningKey) -> None:
    code, out, _ = shopflow_token(
        infra, "--user", "5", "--scope", SCOPE_READ, SHOPFLOW_AUTH_ISSUER="https://id.test"
    )

    assert code == 0
    assert verified(key, out.strip(), issuer="https://id.test") == Caller(
        5, frozenset({SCOPE_READ})
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), "give --user, --scope or both"),
        (("--scope", "shopflow:reed"), "unknown shopflow:reed"),
        (("--user", "0"), "greater than or equal to 1"),
        (("--user", "1", "--ttl", "0"), "greater than or equal to 1"),
    ],
)
def test_a_token_asked_for_wrongly_is_refused_with_usage_exit_code_2(
    infra: Path, args: tuple[str, ...], message: str
) -> None:
    code, out, err = shopflow_token(infra, *args)

    assert code == 2
    assert out == ""
    assert message in " ".join(err.replace("│", " ").split())


def test_without_the_local_key_it_says_how_to_make_it(tmp_path: Path) -> None:
    code, out, err = shopflow_token(tmp_path, "--user", "2")

    assert code == 1
    assert out == ""
    assert "scripts/infra.sh up makes it" in err
    assert str(tmp_path) in err


# The test sessions' signer (`shopflow_token`), the same signing.


def test_a_sessions_signer_uses_the_local_key_and_publishes_its_public_half(
    infra: Path, key: SigningKey, tmp_path_factory: pytest.TempPathFactory
) -> None:
    settings = Settings(infra_dir=infra, auth_issuer=ISSUER, auth_audience=AUDIENCE)

    signer = session_signer(settings, tmp_path_factory.mktemp("signer"))

    assert signer.public_key_file.read_bytes() == key.public_pem()
    assert verified(key, signer(user=3, scopes=[SCOPE_READ])) == Caller(3, frozenset({SCOPE_READ}))
    app_settings = signer.settings_for(settings.model_copy(update={"auth_jwks_url": "x"}))
    assert (app_settings.auth_jwks_url, app_settings.auth_public_key_file) == (
        None,
        signer.public_key_file,
    )


def test_without_a_local_key_a_sessions_signer_makes_one(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    settings = Settings(infra_dir=tmp_path, auth_issuer=ISSUER, auth_audience=AUDIENCE)

    signer = session_signer(settings, tmp_path_factory.mktemp("signer"))
    keys = keys_from_pem(signer.public_key_file.read_bytes(), "its public half")
    verifier = TokenVerifier(
        TokenKeys.fixed(*(k.public_key for k in keys.values())), issuer=ISSUER, audience=AUDIENCE
    )

    assert verifier.verify(signer(user=4)) == Caller(4, frozenset())


def test_serve_refuses_in_one_line_when_its_token_keys_cannot_be_read(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    env = {
        "SHOPFLOW_AUTH_PUBLIC_KEY_FILE": str(missing),
        # Credentials of its own: nothing here may depend on a local credentials file.
        "SHOPFLOW_INFRA_DIR": str(tmp_path),
        "SHOPFLOW_KAFKA_USERNAME": "shopflow",
        "SHOPFLOW_KAFKA_PASSWORD": "unit-test",
    }

    result = CliRunner().invoke(app, ["serve"], env=env)

    assert result.exit_code == 1, result.output
    assert result.stderr == (
        "shopflow refuses to start: no token key could be loaded: "
        f"cannot read {missing}: No such file or directory\n"
    )
