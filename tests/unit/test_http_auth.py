"""Bearer tokens on the HTTP side (CONTRACT.md, Access, "HTTP."), with no servers: the
app of `queries.http` over a fake read model, keys made in the test. Each refusal is
checked for its status, its body and its `WWW-Authenticate` challenge (RFC 6750)."""

import asyncio
import hashlib
import hmac
import json
import re
import threading
import time
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
from fastapi import Depends, FastAPI

from shopflow.domain.top_products import TOP_LIMIT
from shopflow.queries.answers import CartAnswer, ProductAnswer, TopProductAnswer
from shopflow.queries.auth import (
    SCOPE_METRICS,
    SCOPE_POINTS_CHARGE,
    SCOPE_READ,
    SCOPE_WRITE,
    Authenticator,
    Caller,
)
from shopflow.queries.http import AsyncApiPages, _refuse_unguarded, create_http_app
from shopflow.queries.read_model import ReadModel
from shopflow.queries.token_keys import JwksUrl, KeyFile, TokenKeys, public_jwk
from tests.support.signing_keys import (
    AUDIENCE,
    ISSUER,
    SigningKey,
    b64url,
    by_hand,
    claims,
    ec_key,
    ed25519_key,
    rsa_key,
    signing_input,
    write_keys,
)

CHALLENGE = 'Bearer realm="shopflow"'


class FakeReadModel(ReadModel):
    """Users 7 and 8, with 700 and 800 points and empty carts; no products."""

    def __init__(self) -> None:  # no engine: nothing connects
        self.balances = {7: 700, 8: 800}

    async def balance(self, user_id: int) -> int | None:
        return self.balances.get(user_id)

    async def cart(self, user_id: int) -> CartAnswer | None:
        if user_id not in self.balances:
            return None
        return CartAnswer(user_id=user_id, items=[], total=0)

    async def product(self, product_id: int) -> ProductAnswer | None:
        return None

    async def top_products(self, now: datetime, limit: int = TOP_LIMIT) -> list[TopProductAnswer]:
        return []


@pytest.fixture(scope="module")
def key() -> SigningKey:
    return rsa_key()


@pytest.fixture(scope="module")
def stranger() -> SigningKey:
    """A key nobody configured."""
    return rsa_key()


def authenticator(keys: TokenKeys) -> Authenticator:
    return Authenticator(keys, issuer=ISSUER, audience=AUDIENCE)


@pytest.fixture
async def http(key: SigningKey) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(authenticator(TokenKeys.fixed(key.public))) as client:
        yield client


def client_of(auth: Authenticator) -> httpx.AsyncClient:
    app = create_http_app(
        FakeReadModel(),
        {},
        authenticator=auth,
        asyncapi=AsyncApiPages(lambda: "{}", lambda: "<html></html>"),
    )
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://shopflow")


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_refused(answer: httpx.Response, description: str) -> None:
    """401 for a token sent and refused, saying why in the body and the challenge."""
    assert answer.status_code == 401
    assert answer.json() == {"error": "unauthenticated", "detail": description}
    assert answer.headers["WWW-Authenticate"] == (
        f'{CHALLENGE}, error="invalid_token", error_description="{description}"'
    )


# No token, or one that is refused: 401.


async def test_a_request_about_a_user_without_a_token_is_401_with_a_bearer_challenge(
    http: httpx.AsyncClient,
) -> None:
    for path in ("/users/7/points", "/users/7/cart"):
        answer = await http.get(path)

        assert answer.status_code == 401
        assert answer.json() == {
            "error": "unauthenticated",
            "detail": "a bearer token is required (Authorization: Bearer <token>)",
        }
        assert answer.headers["WWW-Authenticate"] == CHALLENGE


async def test_another_authorization_scheme_counts_as_no_token(http: httpx.AsyncClient) -> None:
    answer = await http.get("/users/7/points", headers={"Authorization": "Basic dXNlcjpwdw=="})

    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"] == CHALLENGE


@pytest.mark.parametrize(
    "token", ["not-a-token", "a.b.c", "e30.e30", "e30.e30.e30.e30", "!!.e30.e30"]
)
async def test_a_malformed_token_is_401_invalid_token(http: httpx.AsyncClient, token: str) -> None:
    answer = await http.get("/users/7/points", headers=bearer(token))

    assert_refused(answer, "the token is malformed")


async def test_an_expired_token_is_401(http: httpx.AsyncClient, key: SigningKey) -> None:
    token = key.token(iat=1_000, exp=1_600)

    assert_refused(
        await http.get("/users/7/points", headers=bearer(token)), "the token has expired"
    )


async def test_a_token_expired_less_than_the_leeway_ago_is_still_accepted(
    http: httpx.AsyncClient, key: SigningKey
) -> None:
    token = key.token(exp=int(time.time()) - 10)  # 30 s of leeway

    assert (await http.get("/users/7/points", headers=bearer(token))).status_code == 200


async def test_a_token_signed_by_another_key_under_the_known_kid_is_401(
    http: httpx.AsyncClient, key: SigningKey, stranger: SigningKey
) -> None:
    token = stranger.token(kid=key.kid)

    answer = await http.get("/users/7/points", headers=bearer(token))

    assert_refused(answer, "the token's signature does not verify")


async def test_a_token_with_a_tampered_payload_is_401(
    http: httpx.AsyncClient, key: SigningKey
) -> None:
    header, _, signature = key.token().split(".")
    forged = f"{header}.{b64url(json.dumps(claims(sub='8')).encode())}.{signature}"

    answer = await http.get("/users/8/points", headers=bearer(forged))

    assert_refused(answer, "the token's signature does not verify")


@pytest.mark.parametrize("kid", ["known", None])
async def test_an_unsigned_alg_none_token_is_401(
    http: httpx.AsyncClient, key: SigningKey, kid: str | None
) -> None:
    header = {"alg": "none", "typ": "JWT"} | ({"kid": key.kid} if kid else {})
    token = by_hand(header, claims(scope=SCOPE_READ))

    answer = await http.get("/users/8/points", headers=bearer(token))

    assert_refused(answer, "the token's algorithm is not accepted")


async def test_an_hs256_token_with_the_public_key_pem_as_its_secret_is_401(
    http: httpx.AsyncClient, key: SigningKey
) -> None:
    # The classic confusion: a verifier that lets the token choose HMAC would take the
    # public key's PEM text, which anybody has, for the secret.
    unsigned = by_hand({"alg": "HS256", "kid": key.kid}, claims(scope=SCOPE_READ))
    mac = hmac.new(key.public_pem(), signing_input(unsigned), hashlib.sha256).digest()
    token = f"{unsigned.rsplit('.', 1)[0]}.{b64url(mac)}"

    answer = await http.get("/users/8/points", headers=bearer(token))

    assert_refused(answer, "the token's algorithm is not accepted")


async def test_a_token_of_another_issuer_is_401(http: httpx.AsyncClient, key: SigningKey) -> None:
    token = key.token(iss="https://someone-else.example.test")

    answer = await http.get("/users/7/points", headers=bearer(token))

    assert_refused(answer, "the token's issuer is not accepted")


async def test_a_token_for_another_audience_is_401(
    http: httpx.AsyncClient, key: SigningKey
) -> None:
    token = key.token(aud="another-service")

    answer = await http.get("/users/7/points", headers=bearer(token))

    assert_refused(answer, "the token's audience is not accepted")


@pytest.mark.parametrize("claim", ["exp", "iss", "aud"])
async def test_a_token_without_exp_iss_or_aud_is_401(
    http: httpx.AsyncClient, key: SigningKey, claim: str
) -> None:
    left_out: dict[str, Any] = {claim: None}
    token = key.token(**left_out)

    answer = await http.get("/users/7/points", headers=bearer(token))

    assert_refused(answer, f"the token has no {claim} claim")


async def test_a_token_of_an_unknown_kid_is_401(
    http: httpx.AsyncClient, stranger: SigningKey
) -> None:
    answer = await http.get("/users/7/points", headers=bearer(stranger.token()))

    assert_refused(answer, "the token's signing key is unknown")


async def test_a_token_whose_algorithm_is_not_its_keys_is_401(
    http: httpx.AsyncClient, key: SigningKey
) -> None:
    other = ec_key()
    token = other.token(kid=key.kid)  # ES256 under the RSA key's name

    answer = await http.get("/users/7/points", headers=bearer(token))

    assert_refused(answer, "the token's algorithm is not its key's")


async def test_a_malformed_scope_claim_is_401(http: httpx.AsyncClient, key: SigningKey) -> None:
    answer = await http.get("/users/8/points", headers=bearer(key.token(scope=[SCOPE_READ])))

    assert_refused(answer, "the token's scope claim is not a string")


# A valid token: what it may see.


async def test_a_customer_reads_its_own_points_and_cart(
    http: httpx.AsyncClient, key: SigningKey
) -> None:
    headers = bearer(key.token(sub="7"))

    points = await http.get("/users/7/points", headers=headers)
    cart = await http.get("/users/7/cart", headers=headers)

    assert (points.status_code, points.json()) == (200, {"user_id": 7, "balance": 700})
    assert (cart.status_code, cart.json()) == (200, {"user_id": 7, "items": [], "total": 0})


async def test_a_customer_reading_another_user_is_403(
    http: httpx.AsyncClient, key: SigningKey
) -> None:
    for path in ("/users/8/points", "/users/8/cart"):
        answer = await http.get(path, headers=bearer(key.token(sub="7")))

        assert answer.status_code == 403
        assert answer.json() == {"error": "forbidden", "detail": "this token may not read user 8"}
        assert answer.headers["WWW-Authenticate"] == (
            f'{CHALLENGE}, error="insufficient_scope", scope="{SCOPE_READ}"'
        )


async def test_the_read_scope_reads_any_user(http: httpx.AsyncClient, key: SigningKey) -> None:
    headers = bearer(key.token(sub="shopflow-token", scope=f"{SCOPE_METRICS} {SCOPE_READ}"))

    answer = await http.get("/users/8/points", headers=headers)

    assert (answer.status_code, answer.json()) == (200, {"user_id": 8, "balance": 800})


async def test_the_read_scope_may_come_as_an_scp_list(
    http: httpx.AsyncClient, key: SigningKey
) -> None:
    answer = await http.get("/users/8/cart", headers=bearer(key.token(sub=None, scp=[SCOPE_READ])))

    assert answer.status_code == 200


@pytest.mark.parametrize("scope", [SCOPE_POINTS_CHARGE, SCOPE_WRITE, SCOPE_METRICS])
async def test_no_other_scope_grants_reading_a_user(
    http: httpx.AsyncClient, key: SigningKey, scope: str
) -> None:
    answer = await http.get("/users/8/points", headers=bearer(key.token(sub=None, scope=scope)))

    assert answer.status_code == 403
    assert answer.json()["error"] == "forbidden"


async def test_a_sub_that_is_not_a_decimal_user_id_is_no_users(
    http: httpx.AsyncClient, key: SigningKey
) -> None:
    for sub in ("07", "+7", "7.0", " 7", "\u0667", "service-7"):  # U+0667: an Arabic-Indic 7
        answer = await http.get("/users/7/points", headers=bearer(key.token(sub=sub)))

        assert answer.status_code == 403, sub


async def test_an_unknown_user_is_404_to_its_own_token(
    http: httpx.AsyncClient, key: SigningKey
) -> None:
    answer = await http.get("/users/99/points", headers=bearer(key.token(sub="99")))

    assert answer.status_code == 404
    assert answer.json()["error"] == "unknown_user"


async def test_a_bad_user_id_is_401_without_a_token_and_422_with_one(
    http: httpx.AsyncClient, key: SigningKey
) -> None:
    without = await http.get("/users/abc/points")
    with_token = await http.get("/users/abc/points", headers=bearer(key.token(scope=SCOPE_READ)))

    assert without.status_code == 401
    assert with_token.status_code == 422
    assert with_token.json()["error"] == "invalid_request"
    assert len(with_token.json()["detail"]) == 1  # `user_id` once, not once per dependency


# The metrics of `serve`: the scope shopflow:metrics.


async def test_metrics_need_the_metrics_scope(http: httpx.AsyncClient, key: SigningKey) -> None:
    without = await http.get("/metrics")
    customer = await http.get("/metrics", headers=bearer(key.token(sub="7")))
    reader = await http.get("/metrics", headers=bearer(key.token(scope=SCOPE_READ)))
    scraper = await http.get("/metrics", headers=bearer(key.token(sub=None, scope=SCOPE_METRICS)))

    assert without.status_code == 401
    assert without.headers["WWW-Authenticate"] == CHALLENGE
    assert customer.status_code == reader.status_code == 403
    assert reader.json() == {"error": "forbidden", "detail": "this token may not read the metrics"}
    assert reader.headers["WWW-Authenticate"] == (
        f'{CHALLENGE}, error="insufficient_scope", scope="{SCOPE_METRICS}"'
    )
    assert scraper.status_code == 200
    assert "python_gc_objects_collected_total" in scraper.text


# What stays public.


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/products/top", 200),
        ("/products/5", 404),
        ("/health/live", 200),
        ("/health/ready", 200),
        ("/openapi.json", 200),
        ("/docs", 200),
        ("/asyncapi.json", 200),
        ("/asyncapi", 200),
    ],
)
async def test_products_health_and_documents_need_no_token(
    http: httpx.AsyncClient, path: str, status: int
) -> None:
    answer = await http.get(path)

    assert answer.status_code == status
    assert "WWW-Authenticate" not in answer.headers


async def test_the_openapi_document_declares_the_bearer_scheme_where_it_is_needed(
    http: httpx.AsyncClient,
) -> None:
    document = (await http.get("/openapi.json")).json()
    paths = document["paths"]

    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    for path in ("/users/{user_id}/points", "/users/{user_id}/cart", "/metrics"):
        assert paths[path]["get"]["security"] == [{"bearer": []}], path
        assert {"401", "403"} <= set(paths[path]["get"]["responses"]), path
    for path in ("/products/top", "/products/{product_id}", "/health/live"):
        assert "security" not in paths[path]["get"], path
        assert "401" not in paths[path]["get"]["responses"], path
    assert paths["/users/{user_id}/points"]["get"]["parameters"][0]["name"] == "user_id"


def test_a_route_about_users_without_the_token_dependency_refuses_to_build(
    key: SigningKey,
) -> None:
    auth = authenticator(TokenKeys.fixed(key.public))
    app = FastAPI()

    @app.get("/users/{user_id}/orders")
    async def orders(user_id: int) -> None: ...

    with pytest.raises(RuntimeError, match=re.escape("/users/{user_id}/orders must depend")):
        _refuse_unguarded(app, auth)

    guarded = FastAPI()

    @guarded.get("/users/{user_id}/orders")
    async def guarded_orders(user_id: int, caller: Caller = Depends(auth.caller)) -> None: ...

    _refuse_unguarded(guarded, auth)


# Other key types.


@pytest.mark.parametrize("make", [ec_key, ed25519_key], ids=["ES256", "EdDSA"])
async def test_ec_and_ed25519_keys_sign_accepted_tokens(make: Any) -> None:
    signer: SigningKey = make()
    async with client_of(authenticator(TokenKeys.fixed(signer.public))) as http:
        answer = await http.get("/users/7/points", headers=bearer(signer.token(kid=None)))

    assert answer.status_code == 200


async def test_without_a_kid_the_only_key_is_used_but_among_several_none_is(
    key: SigningKey, stranger: SigningKey
) -> None:
    token = key.token(kid=None)
    async with client_of(authenticator(TokenKeys.fixed(key.public))) as one:
        alone = await one.get("/users/7/points", headers=bearer(token))
    async with client_of(authenticator(TokenKeys.fixed(key.public, stranger.public))) as two:
        among = await two.get("/users/7/points", headers=bearer(token))

    assert alone.status_code == 200
    assert_refused(among, "the token's signing key is unknown")


# Keys that change: the key file, rotated; a JWKS URL.


async def eventually(http: httpx.AsyncClient, token: str, status: int) -> httpx.Response:
    """GET /users/7/points with `token` until it answers `status` (a refresh is due)."""
    async with asyncio.timeout(5):
        while True:
            answer = await http.get("/users/7/points", headers=bearer(token))
            if answer.status_code == status:
                return answer
            await asyncio.sleep(0.02)


async def test_a_rotated_key_file_is_read_again_the_new_key_accepted_the_old_one_dropped(
    tmp_path: Path, key: SigningKey, stranger: SigningKey
) -> None:
    path = tmp_path / "keys.pem"
    write_keys(path, key)
    keys = TokenKeys(KeyFile(path), refresh_s=0.05)
    auth = authenticator(keys)
    old, new = key.token(), stranger.token()
    await auth.start()
    try:
        async with client_of(auth) as http:
            assert (await http.get("/users/7/points", headers=bearer(old))).status_code == 200
            assert (await http.get("/users/7/points", headers=bearer(new))).status_code == 401

            write_keys(path, key, stranger)  # the new key published beside the old
            await eventually(http, new, 200)
            assert (await http.get("/users/7/points", headers=bearer(old))).status_code == 200

            write_keys(path, stranger)  # the old one withdrawn (its tokens were cached)
            refused = await eventually(http, old, 401)
    finally:
        await auth.stop()

    assert_refused(refused, "the token's signing key is unknown")


async def test_a_key_file_broken_on_a_refresh_keeps_the_keys_there_were(
    tmp_path: Path, key: SigningKey
) -> None:
    path = tmp_path / "keys.pem"
    write_keys(path, key)
    keys = TokenKeys(KeyFile(path), refresh_s=3600)
    await keys.start()
    try:
        path.write_bytes(b"-----BEGIN PUBLIC KEY-----\nbroken\n-----END PUBLIC KEY-----\n")

        changed = await keys.refresh()
    finally:
        await keys.stop()

    assert not changed
    assert list(keys.keys) == [key.kid]


async def test_an_unknown_kid_wakes_the_refresher_early_and_the_answer_does_not_wait(
    tmp_path: Path, key: SigningKey, stranger: SigningKey
) -> None:
    path = tmp_path / "keys.pem"
    write_keys(path, key)
    auth = authenticator(TokenKeys(KeyFile(path), refresh_s=3600))  # no timely refresh
    await auth.start()
    try:
        write_keys(path, key, stranger)
        async with client_of(auth) as http:
            first = await http.get("/users/7/points", headers=bearer(stranger.token()))
            accepted = await eventually(http, stranger.token(), 200)
    finally:
        await auth.stop()

    assert_refused(first, "the token's signing key is unknown")
    assert accepted.json() == {"user_id": 7, "balance": 700}


class _Jwks(BaseHTTPRequestHandler):
    document: ClassVar[dict[str, Any]] = {}

    def do_GET(self) -> None:
        body = json.dumps(self.document).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def jwks_server() -> Iterator[tuple[str, type[_Jwks]]]:
    """An identity provider's JWKS endpoint on loopback; set `handler.document`."""
    handler = type("Jwks", (_Jwks,), {"document": {"keys": []}})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/jwks.json", handler
    finally:
        server.shutdown()
        server.server_close()


def jwk(signer: SigningKey, **members: Any) -> dict[str, Any]:
    return public_jwk(signer.public) | members


async def test_keys_of_a_jwks_url_check_tokens_by_their_kid_and_are_refreshed(
    jwks_server: tuple[str, type[_Jwks]], key: SigningKey, stranger: SigningKey
) -> None:
    url, handler = jwks_server
    ed = ed25519_key()
    handler.document = {
        "keys": [
            jwk(key, kid="rsa-1", use="sig", alg="RS256"),
            jwk(ed, kid="ed-1"),
            {"kty": "oct", "kid": "hmac-1", "k": b64url(key.public_pem())},  # never a key
            jwk(stranger, kid="enc-1", use="enc"),  # for encryption: never a key here
        ]
    }
    auth = authenticator(TokenKeys(JwksUrl(url), refresh_s=0.05))
    await auth.start()
    try:
        assert set(auth.keys.keys) == {"rsa-1", "ed-1"}
        async with client_of(auth) as http:
            rsa_ok = await http.get("/users/7/points", headers=bearer(key.token(kid="rsa-1")))
            ed_ok = await http.get("/users/7/points", headers=bearer(ed.token(kid="ed-1")))
            ps256 = await http.get(
                "/users/7/points", headers=bearer(key.token(kid="rsa-1", algorithm="PS256"))
            )
            hs256 = by_hand({"alg": "HS256", "kid": "hmac-1"}, claims())
            hmac_refused = await http.get("/users/7/points", headers=bearer(hs256))

            handler.document = {"keys": [jwk(stranger, kid="rsa-2")]}  # rotated at the provider
            await eventually(http, stranger.token(kid="rsa-2"), 200)
            dropped = await http.get("/users/7/points", headers=bearer(key.token(kid="rsa-1")))
    finally:
        await auth.stop()

    assert rsa_ok.status_code == ed_ok.status_code == 200
    assert_refused(ps256, "the token's algorithm is not its key's")  # the JWK says RS256
    assert_refused(hmac_refused, "the token's algorithm is not accepted")
    assert_refused(dropped, "the token's signing key is unknown")
