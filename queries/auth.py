"""Bearer tokens on the read side (CONTRACT.md, Access): who calls (`Caller`), what they
may do (the `may_*` rules), and the FastAPI pieces that refuse the rest.

PyJWT checks each token: signature, `exp`, `iss` and `aud` (all required), with the
header's algorithm only if it is one of a fixed asymmetric list (`token_keys.ALGORITHMS`)
and the key's, the key being the one its `kid` names (key-pointing header members are
ignored); clocks may disagree by LEEWAY_S. A verified token is cached by its text until
its `exp` (CACHE_SIZE, cleared when the keys change), since the signature check is most
of a check's cost (docs/measurements.md#token-check). 401 and 403 carry RFC 6750's
`WWW-Authenticate` (docs/access.md).
"""

import base64
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

import jwt
from fastapi import FastAPI, Request, Security
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from shopflow.contracts.limits import decimal_entity_id
from shopflow.contracts.topics import COMMAND_ROUTES
from shopflow.queries.token_keys import ALGORITHMS, TokenKeys

# The scopes, the only place they are spelled.
SCOPE_READ = "shopflow:read"  # read any user
SCOPE_WRITE = "shopflow:write"  # send any user's cart, order and cancel commands over HTTP
SCOPE_POINTS_CHARGE = "shopflow:points:charge"  # charge points over HTTP
SCOPE_METRICS = "shopflow:metrics"  # GET /metrics of `shopflow serve`
SCOPES = frozenset({SCOPE_READ, SCOPE_WRITE, SCOPE_POINTS_CHARGE, SCOPE_METRICS})

REALM = "shopflow"
REQUIRED_CLAIMS = ["exp", "iss", "aud"]
LEEWAY_S = 30
CACHE_SIZE = 10_000
MAX_TOKEN_CHARS = 8192

_KEY_FIELD_OF_TYPE = {route.type_name: route.key_field for route in COMMAND_ROUTES}


@dataclass(frozen=True)
class Caller:
    """Who a valid token speaks for: a user (a customer's token), scopes, or both."""

    user_id: int | None
    scopes: frozenset[str]
    # The token's `sub` as it is (a customer's user id, a service's name): whose
    # Idempotency-Keys a write's key is among (`contracts.http_writes.http_command_id`).
    # Not part of equality: what a caller may do is its user and its scopes.
    subject: str = field(default="", compare=False)


def may_read_user(caller: Caller, user_id: int) -> bool:
    return caller.user_id == user_id or SCOPE_READ in caller.scopes


def may_act_for_user(caller: Caller, user_id: int) -> bool:
    """Cart, order and cancel commands of `user_id`."""
    return caller.user_id == user_id or SCOPE_WRITE in caller.scopes


def may_charge_points(caller: Caller) -> bool:
    """Points are bought elsewhere (payments): a customer's own token may not charge."""
    return SCOPE_POINTS_CHARGE in caller.scopes


def may_see_command(caller: Caller, command_type: str, entity_key: str) -> bool:
    """A command's result is visible to whoever may see its entity: a user's commands to
    that user and to readers of any user; a product's to any caller (products are
    public). Anything else is answered as if the command were unknown."""
    key_field = _KEY_FIELD_OF_TYPE.get(command_type)
    if key_field == "user_id":
        return may_read_user(caller, int(entity_key))
    return key_field == "product_id"


def may_read_metrics(caller: Caller) -> bool:
    return SCOPE_METRICS in caller.scopes


class Unauthenticated(Exception):
    """401: no token, or (`invalid_token`) one that is refused; `detail` says which."""

    def __init__(self, detail: str, *, invalid_token: bool = True) -> None:
        super().__init__(detail)
        self.detail = detail
        self.invalid_token = invalid_token


class Forbidden(Exception):
    """403: a valid token that may not do this; `scope` is one that would do."""

    def __init__(self, detail: str, *, scope: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.scope = scope


def caller_of(claims: Mapping[str, Any]) -> Caller:
    """The caller of verified claims; Unauthenticated if its scopes are malformed."""
    sub = claims.get("sub")
    user_id = decimal_entity_id(sub) if isinstance(sub, str) else None
    scopes: set[str] = set()
    scope = claims.get("scope")
    if scope is not None:
        if not isinstance(scope, str):
            raise Unauthenticated("the token's scope claim is not a string")
        scopes.update(scope.split())
    scp = claims.get("scp")
    if isinstance(scp, str):
        scopes.update(scp.split())
    elif isinstance(scp, list) and all(isinstance(s, str) for s in scp):
        scopes.update(scp)
    elif scp is not None:
        raise Unauthenticated("the token's scp claim is not a list of strings")
    return Caller(user_id, frozenset(scopes), sub if isinstance(sub, str) else "")


@dataclass(frozen=True)
class _Verified:
    caller: Caller
    expires: float


class TokenVerifier:
    """Checks tokens against `keys` on the request path: CPU only, no I/O."""

    def __init__(
        self,
        keys: TokenKeys,
        *,
        issuer: str,
        audience: str,
        leeway_s: float = LEEWAY_S,
        cache_size: int = CACHE_SIZE,
    ) -> None:
        self.keys = keys
        self.issuer = issuer
        self.audience = audience
        self.leeway_s = leeway_s
        self.cache_size = cache_size
        self._verified: dict[str, _Verified] = {}
        self._keys_version = keys.version

    def verify(self, token: str) -> Caller:
        """The token's caller; Unauthenticated (invalid_token) if it is refused."""
        if self._keys_version != self.keys.version:
            self._verified.clear()
            self._keys_version = self.keys.version
        now = time.time()
        known = self._verified.get(token)
        if known is not None:
            if now < known.expires:
                return known.caller
            del self._verified[token]
        caller, expires = self._check(token)
        if now < expires and self.cache_size > 0:
            if len(self._verified) >= self.cache_size:
                del self._verified[next(iter(self._verified))]  # the oldest
            self._verified[token] = _Verified(caller, expires)
        return caller

    def _check(self, token: str) -> tuple[Caller, float]:
        if len(token) > MAX_TOKEN_CHARS:
            raise Unauthenticated("the token is too long")
        header = _header(token)
        algorithm, kid = header.get("alg"), header.get("kid")
        if not isinstance(algorithm, str) or algorithm not in ALGORITHMS:
            raise Unauthenticated("the token's algorithm is not accepted")
        if kid is not None and not isinstance(kid, str):
            raise Unauthenticated("the token is malformed")
        key = self.keys.find(kid)
        if key is None:
            self.keys.refresh_soon()  # perhaps a key the provider added since
            raise Unauthenticated("the token's signing key is unknown")
        if algorithm not in key.algorithms:
            raise Unauthenticated("the token's algorithm is not its key's")
        try:
            claims = jwt.decode(
                token,
                key.public_key,
                algorithms=[algorithm],
                issuer=self.issuer,
                audience=self.audience,
                leeway=self.leeway_s,
                options={"require": REQUIRED_CLAIMS},
            )
        except jwt.PyJWTError as error:
            raise Unauthenticated(_refusal(error)) from None
        return caller_of(claims), float(claims["exp"])


def _header(token: str) -> dict[str, Any]:
    """The token's header, to choose the key by. Not PyJWT's `get_unverified_header`,
    which decodes the whole token and cost a third of a full check (this, a tenth of
    that); `jwt.decode` then reads the header again, strictly, and refuses a token whose
    algorithm is not the one chosen here."""
    segment, dots = token.partition(".")[0], token.count(".")
    try:
        header = json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    except ValueError:  # binascii.Error and UnicodeDecodeError among them
        header = None
    if dots != 2 or not isinstance(header, dict):
        raise Unauthenticated("the token is malformed")
    return header


def _refusal(error: jwt.PyJWTError) -> str:
    """A fixed sentence per refusal: it goes into a header, so nothing of the token."""
    if isinstance(error, jwt.ExpiredSignatureError):
        return "the token has expired"
    if isinstance(error, jwt.InvalidSignatureError):
        return "the token's signature does not verify"
    if isinstance(error, jwt.InvalidIssuerError):
        return "the token's issuer is not accepted"
    if isinstance(error, jwt.InvalidAudienceError):
        return "the token's audience is not accepted"
    if isinstance(error, jwt.MissingRequiredClaimError):
        return f"the token has no {error.claim} claim"
    if isinstance(error, jwt.ImmatureSignatureError):
        return "the token is not valid yet"
    if isinstance(error, jwt.DecodeError):
        return "the token is malformed"
    return "the token is refused"


BEARER = HTTPBearer(
    scheme_name="bearer",
    bearerFormat="JWT",
    description="A JWT of the identity provider (locally: `shopflow token --user N` or "
    '`shopflow token --scope "shopflow:read"`).',
    auto_error=False,  # a missing token is answered as the others, by Unauthenticated
)

Bearer = Annotated[HTTPAuthorizationCredentials | None, Security(BEARER)]


class Authenticator:
    """What `create_http_app` is given: the keys (start and stop their refresher in the
    app's lifespan), their verifier, and `caller`, the FastAPI dependency."""

    def __init__(self, keys: TokenKeys, *, issuer: str, audience: str) -> None:
        self.keys = keys
        self.verifier = TokenVerifier(keys, issuer=issuer, audience=audience)

    async def start(self) -> None:
        await self.keys.start()

    async def stop(self) -> None:
        await self.keys.stop()

    async def caller(self, credentials: Bearer) -> Caller:
        """The dependency: the request's caller, or 401."""
        if credentials is None:
            raise Unauthenticated(
                "a bearer token is required (Authorization: Bearer <token>)", invalid_token=False
            )
        return self.verifier.verify(credentials.credentials)


def _quoted(value: str) -> str:
    # RFC 6750, 3: error_description and scope use %x20-21 / %x23-5B / %x5D-7E only.
    return "".join(c for c in value if " " <= c <= "~" and c not in '"\\')


def _answer(status: int, error: str, detail: str, challenge: str) -> Response:
    """The contract's error shape, with the RFC 6750 challenge."""
    return JSONResponse(
        {"error": error, "detail": detail},
        status_code=status,
        headers={"WWW-Authenticate": f'Bearer realm="{REALM}"{challenge}'},
    )


async def _unauthenticated(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, Unauthenticated)
    challenge = ""
    if exc.invalid_token:
        challenge = f', error="invalid_token", error_description="{_quoted(exc.detail)}"'
    return _answer(401, "unauthenticated", exc.detail, challenge)


async def _forbidden(_: Request, exc: Exception) -> Response:
    assert isinstance(exc, Forbidden)
    challenge = ', error="insufficient_scope"'
    if exc.scope:
        challenge += f', scope="{_quoted(exc.scope)}"'
    return _answer(403, "forbidden", exc.detail, challenge)


def answer_auth_errors(app: FastAPI) -> None:
    """Answer Unauthenticated with 401 and Forbidden with 403 on `app`."""
    app.add_exception_handler(Unauthenticated, _unauthenticated)
    app.add_exception_handler(Forbidden, _forbidden)
