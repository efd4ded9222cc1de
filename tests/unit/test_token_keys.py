"""The pieces under the HTTP side's bearer tokens, with no servers: key ids (RFC 7638),
the key file's parsing and rereading, the refresher's start and early wake-ups, the
verified-token cache, the callers and their rules, and where `serve` takes its keys."""

import asyncio
import datetime
import time
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from cryptography.x509.oid import NameOID
from jwt.algorithms import RSAAlgorithm

from shopflow.app import NoTokenKeysConfigured, create_authenticator, token_key_source
from shopflow.kafka_admin import StartRefused
from shopflow.local_credentials import TOKEN_PUBLIC_KEY_FILE
from shopflow.queries.auth import (
    SCOPE_METRICS,
    SCOPE_POINTS_CHARGE,
    SCOPE_READ,
    SCOPE_WRITE,
    Caller,
    TokenVerifier,
    Unauthenticated,
    caller_of,
    may_act_for_user,
    may_charge_points,
    may_read_metrics,
    may_read_user,
)
from shopflow.queries.token_keys import (
    KeyFile,
    KeySourceError,
    NoTokenKeys,
    TokenKeys,
    VerificationKey,
    jwk_thumbprint,
    keys_from_pem,
)
from shopflow.settings import Settings
from tests.support.signing_keys import AUDIENCE, ISSUER, SigningKey, ec_key, ed25519_key, rsa_key

# RFC 7638, 3.1: the example key and its thumbprint.
RFC_7638_KEY = {
    "kty": "RSA",
    "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tS"
    "oc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0"
    "_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4"
    "vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
    "e": "AQAB",
    "alg": "RS256",
    "kid": "2011-04-29",
}


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return rsa_key()


def test_a_key_id_is_the_rfc_7638_thumbprint() -> None:
    public = RSAAlgorithm.from_jwk(RFC_7638_KEY)

    assert isinstance(public, rsa.RSAPublicKey)
    assert jwk_thumbprint(public) == "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs"


def test_ec_and_ed25519_thumbprints_differ_per_key_and_have_no_padding() -> None:
    thumbprints = {jwk_thumbprint(k.public) for k in (ec_key(), ec_key(), ed25519_key())}

    assert len(thumbprints) == 3
    assert all(len(t) == 43 and "=" not in t for t in thumbprints)


# The key file.


def test_a_pem_file_gives_every_public_key_and_certificate_by_thumbprint(key: SigningKey) -> None:
    other = ec_key()
    certificate = _self_signed(other)

    keys = keys_from_pem(key.public_pem() + b"\n" + certificate, "keys.pem")

    assert set(keys) == {key.kid, other.kid}
    assert keys[key.kid].algorithms >= {"RS256", "PS512"}
    assert keys[other.kid].algorithms == {"ES256"}


def test_a_private_key_in_the_key_file_is_refused(key: SigningKey) -> None:
    with pytest.raises(KeySourceError, match="PEM block 2: a PRIVATE KEY block"):
        keys_from_pem(key.public_pem() + key.private_pem(), "keys.pem")


@pytest.mark.parametrize(
    ("public", "reason"),
    [
        (rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key(), "1024 bits"),
        (ec.generate_private_key(ec.SECP521R1()).public_key(), "secp521r1"),
    ],
)
def test_weak_rsa_keys_and_other_curves_are_refused(public: object, reason: str) -> None:
    assert isinstance(public, rsa.RSAPublicKey | ec.EllipticCurvePublicKey)
    pem = public.public_bytes(Encoding.PEM, PublicFormat.SubjectPublicKeyInfo)

    with pytest.raises(KeySourceError, match=reason):
        keys_from_pem(pem, "keys.pem")


def test_a_file_without_a_key_is_refused() -> None:
    with pytest.raises(KeySourceError, match="holds no PEM public key"):
        keys_from_pem(b"nothing here", "keys.pem")


def test_an_unchanged_key_file_is_not_read_again(tmp_path: Path, key: SigningKey) -> None:
    path = tmp_path / "keys.pem"
    path.write_bytes(key.public_pem())
    source = KeyFile(path)

    first, second = source.load(), source.load()

    assert first is not None
    assert list(first) == [key.kid]
    assert second is None


async def test_the_start_fails_loudly_without_a_key(tmp_path: Path) -> None:
    missing = TokenKeys(KeyFile(tmp_path / "missing.pem"), refresh_s=1)
    (tmp_path / "empty.pem").write_bytes(b"")
    empty = TokenKeys(KeyFile(tmp_path / "empty.pem"), refresh_s=1)

    with pytest.raises(NoTokenKeys, match=r"missing\.pem"):
        await missing.start()
    with pytest.raises(NoTokenKeys, match="holds no PEM public key"):
        await empty.start()


class _CountingSource:
    def __init__(self, key: SigningKey) -> None:
        self.loads = 0
        self.key = key

    def describe(self) -> str:
        return "counted"

    def load(self) -> dict[str, VerificationKey]:
        self.loads += 1
        return keys_from_pem(self.key.public_pem(), "counted")


async def test_unknown_kids_wake_the_refresher_at_most_once_per_interval(key: SigningKey) -> None:
    source = _CountingSource(key)
    keys = TokenKeys(source, refresh_s=3600)
    await keys.start()
    try:
        for _ in range(50):
            keys.refresh_soon()
            await asyncio.sleep(0)
        async with asyncio.timeout(5):
            while source.loads < 2:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)
    finally:
        await keys.stop()

    assert source.loads == 2  # the start, and one early refresh


# The verifier's cache.


def test_a_cached_token_is_checked_again_once_past_its_exp(key: SigningKey) -> None:
    verifier = TokenVerifier(
        TokenKeys.fixed(key.public), issuer=ISSUER, audience=AUDIENCE, leeway_s=0
    )
    exp = int(time.time()) + 1
    token = key.token(exp=exp)
    assert verifier.verify(token) == Caller(7, frozenset())

    time.sleep(exp + 0.05 - time.time())

    with pytest.raises(Unauthenticated, match="the token has expired"):
        verifier.verify(token)


def test_the_cache_holds_at_most_its_size_forgetting_the_oldest(key: SigningKey) -> None:
    verifier = TokenVerifier(
        TokenKeys.fixed(key.public), issuer=ISSUER, audience=AUDIENCE, cache_size=2
    )
    tokens = [key.token(sub=str(user)) for user in (1, 2, 3)]

    callers = [verifier.verify(token).user_id for token in tokens]

    assert callers == [1, 2, 3]
    assert list(verifier._verified) == tokens[1:]


# Callers and their rules.


def test_a_caller_is_its_decimal_sub_and_its_scopes() -> None:
    assert caller_of({"sub": "42"}) == Caller(42, frozenset())
    assert caller_of({"sub": "svc", "scope": f"{SCOPE_READ}  {SCOPE_METRICS}"}) == Caller(
        None, frozenset({SCOPE_READ, SCOPE_METRICS})
    )
    assert caller_of({"scp": [SCOPE_WRITE], "scope": SCOPE_READ}).scopes == {
        SCOPE_READ,
        SCOPE_WRITE,
    }
    assert caller_of({"sub": str(2**63)}).user_id is None  # beyond any entity id
    with pytest.raises(Unauthenticated, match="scp"):
        caller_of({"scp": [1, 2]})


@pytest.mark.parametrize(
    ("caller", "reads_7", "acts_for_7", "charges", "metrics"),
    [
        (Caller(7, frozenset()), True, True, False, False),
        (Caller(8, frozenset()), False, False, False, False),
        (Caller(None, frozenset({SCOPE_READ})), True, False, False, False),
        (Caller(None, frozenset({SCOPE_WRITE})), False, True, False, False),
        (Caller(7, frozenset({SCOPE_POINTS_CHARGE})), True, True, True, False),
        (Caller(None, frozenset({SCOPE_METRICS})), False, False, False, True),
    ],
)
def test_who_may_do_what(
    caller: Caller, reads_7: bool, acts_for_7: bool, charges: bool, metrics: bool
) -> None:
    assert may_read_user(caller, 7) is reads_7
    assert may_act_for_user(caller, 7) is acts_for_7
    assert may_charge_points(caller) is charges
    assert may_read_metrics(caller) is metrics


# Where `serve` takes its keys.


def test_serve_takes_the_jwks_url_else_the_key_file_else_the_local_key(tmp_path: Path) -> None:
    local = tmp_path / TOKEN_PUBLIC_KEY_FILE
    local.write_bytes(b"")
    given = tmp_path / "given.pem"

    jwks = token_key_source(
        Settings(
            infra_dir=tmp_path,
            auth_jwks_url="https://id.example.test/jwks.json",
            auth_public_key_file=given,
        )
    )
    file = token_key_source(Settings(infra_dir=tmp_path, auth_public_key_file=given))
    fallback = token_key_source(Settings(infra_dir=tmp_path))

    assert jwks.describe() == "https://id.example.test/jwks.json"
    assert file.describe() == str(given)
    assert fallback.describe() == str(local)


async def test_the_authenticator_of_serve_checks_tokens_with_its_settings(
    tmp_path: Path, key: SigningKey
) -> None:
    (tmp_path / TOKEN_PUBLIC_KEY_FILE).write_bytes(key.public_pem())
    settings = Settings(infra_dir=tmp_path, auth_issuer=ISSUER, auth_audience=AUDIENCE)
    authenticator = create_authenticator(settings)

    await authenticator.start()
    try:
        caller = authenticator.verifier.verify(key.token(sub="12"))
        with pytest.raises(Unauthenticated, match="issuer"):
            authenticator.verifier.verify(key.token(iss="shopflow-local"))
    finally:
        await authenticator.stop()

    assert caller == Caller(12, frozenset())


@pytest.mark.parametrize(
    "url", ["http://id.example.test/jwks.json", "ftp://id.example.test/jwks.json"]
)
def test_serve_refuses_a_jwks_url_that_is_not_https_off_loopback(tmp_path: Path, url: str) -> None:
    with pytest.raises(NoTokenKeysConfigured, match="is not https"):
        token_key_source(Settings(infra_dir=tmp_path, auth_jwks_url=url))

    assert token_key_source(
        Settings(infra_dir=tmp_path, auth_jwks_url="http://127.0.0.1:8080/jwks.json")
    )


def test_serve_refuses_to_start_without_any_token_keys(tmp_path: Path) -> None:
    with pytest.raises(NoTokenKeysConfigured) as refused:
        token_key_source(Settings(infra_dir=tmp_path))

    assert isinstance(refused.value, StartRefused)  # one line, by `shopflow serve`
    assert str(refused.value).startswith(
        "no token keys: set SHOPFLOW_AUTH_JWKS_URL or SHOPFLOW_AUTH_PUBLIC_KEY_FILE"
    )


def _self_signed(signer: SigningKey) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "tokens")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(signer.public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(signer.private, hashes.SHA256())
    )
    return certificate.public_bytes(Encoding.PEM)
