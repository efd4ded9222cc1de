"""The service process: consumers and the HTTP read side in one asyncio loop.

`shopflow serve` runs both; `shopflow worker` runs the consumers alone, and
`shopflow serve --no-consume` the HTTP side alone, for scaling them apart.
"""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

import asyncpg
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from opentelemetry.trace import TracerProvider
from redis.exceptions import RedisError
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError

from shopflow.asyncapi import asyncapi_html, asyncapi_json
from shopflow.consumers.failures import is_transient
from shopflow.contracts.events import RejectionReason
from shopflow.contracts.topics import Topics
from shopflow.gateway import RETRY_AFTER_S, CommandGateway, answer_bad_writes, command_routes
from shopflow.kafka_access import SERVICE, gateway_connection, kafka_connection
from shopflow.kafka_admin import StartRefused, check_session_timeout, check_topics
from shopflow.local_credentials import TOKEN_PUBLIC_KEY_FILE
from shopflow.ops.access import missing_rights
from shopflow.persistence.bare_pool import BarePool
from shopflow.persistence.database import create_engine, on_primary
from shopflow.persistence.migrate import migrate
from shopflow.producers.client import ShopflowClient
from shopflow.queries.auth import Authenticator
from shopflow.queries.command_results import CommandResults, ResultUnavailable
from shopflow.queries.http import AsyncApiPages, create_http_app
from shopflow.queries.read_model import ReadModel
from shopflow.queries.token_keys import (
    JwksUrl,
    KeyFile,
    KeySource,
    KeySourceError,
    NoTokenKeys,
    TokenKeys,
)
from shopflow.queries.top_products import TopProducts
from shopflow.runtime import Runtime
from shopflow.settings import Settings
from shopflow.write_limits import WriteLimits

log = logging.getLogger(__name__)


class RightsMissing(StartRefused):
    """The service's Kafka principal lacks a right of its row of the Access table."""


async def prepare(settings: Settings) -> None:
    """Check the topics and migrate the schema (idempotent, safe concurrently); refuse
    (`StartRefused`) a set-up the service cannot run on. The topics are made beforehand
    by provisioning (`shopflow topics create`, as an admin principal): the service's
    principal may not create them."""
    kafka = kafka_connection(settings, SERVICE)
    # First: it fails at once (aiokafka) on credentials Kafka refuses, and confluent-kafka's
    # client of `missing_rights` would retry them until its timeout.
    await check_session_timeout(settings, kafka)
    await check_topics(settings, kafka)
    missing = await missing_rights(settings, kafka)
    if missing:
        raise RightsMissing(
            f"principal {kafka.principal} may not do what the service needs "
            f"(CONTRACT.md, Access): {', '.join(missing)}; an admin grants it with "
            "`shopflow topics create`"
        )
    await migrate(
        settings.migration_database_url, settings.database_url, settings.query_database_url
    )


class NoTokenKeysConfigured(StartRefused):
    """Nothing says which keys sign the HTTP side's tokens."""


def token_key_source(settings: Settings) -> KeySource:
    """The identity provider's JWKS URL, else the key file, else the local servers' public
    key; with none of them there is no checking a token, and `serve` refuses to start
    rather than serve the users' data to anybody."""
    if settings.auth_jwks_url:
        try:
            return JwksUrl(settings.auth_jwks_url)
        except KeySourceError as error:
            raise NoTokenKeysConfigured(str(error)) from None
    if settings.auth_public_key_file is not None:
        return KeyFile(settings.auth_public_key_file)
    local = settings.infra_dir / TOKEN_PUBLIC_KEY_FILE
    if local.is_file():
        return KeyFile(local)
    raise NoTokenKeysConfigured(
        "no token keys: set SHOPFLOW_AUTH_JWKS_URL or SHOPFLOW_AUTH_PUBLIC_KEY_FILE "
        f"(locally, `scripts/infra.sh up` makes {local})"
    )


def token_keys(settings: Settings) -> TokenKeys:
    return TokenKeys(token_key_source(settings), refresh_s=settings.auth_keys_refresh_s)


async def check_token_keys(settings: Settings) -> None:
    """Load the token keys once, as the app's start will (the same `TokenKeys.start`):
    `serve` does so before uvicorn starts, so that keys configured but not to be had (an
    unreadable file, a JWKS URL that does not answer) are a one-line refusal rather than
    a lifespan stack trace."""
    keys = token_keys(settings)
    try:
        await keys.start()
    except NoTokenKeys as error:
        raise NoTokenKeysConfigured(str(error)) from None
    await keys.stop()


def create_authenticator(settings: Settings) -> Authenticator:
    """Its keys are loaded by `start()` (the app's lifespan), not here."""
    return Authenticator(
        token_keys(settings), issuer=settings.auth_issuer, audience=settings.auth_audience
    )


async def _rebuild_if_missing(runtime: Runtime) -> None:
    """A fresh or flushed Redis: the top-products view is rebuilt at start rather than on
    the first request (which would find it missing and start the rebuild itself). In the
    background, and a Redis away is only logged: the service starts without Redis, as it
    runs without it (top products come from PostgreSQL meanwhile)."""
    try:
        if not await runtime.sales_view.is_built():
            await runtime.rebuild_sales_view()
    except (RedisError, SQLAlchemyError, OSError) as exc:
        log.warning(
            "the top-products view was not checked at start (%r); the first request that "
            "finds it missing rebuilds it",
            exc,
        )


def create_app(
    settings: Settings,
    *,
    consume: bool = True,
    prepare_first: bool = True,
    tracer_provider: TracerProvider | None = None,
) -> FastAPI:
    authenticator = create_authenticator(settings)
    runtime = Runtime.build(settings, consume=consume, tracer_provider=tracer_provider)
    # The queries read as the read-only role (SHOPFLOW_QUERY_DATABASE_URL), so that a bug
    # on the read side cannot write; the consumers and the top-products rebuild use the
    # runtime's engine, as the service's role.
    # With a replicated PostgreSQL they may read a standby (target_session_attrs=
    # prefer-standby in the URL).
    query_engine = create_engine(
        settings.query_database_url,
        pool_size=settings.db_pool_size,
        connect_timeout_s=settings.db_connect_timeout_s,
    )
    # A product and a balance, the hottest reads, on a bare asyncpg pool of the same role
    # and URL (`persistence.bare_pool`).
    hot_reads = BarePool(
        settings.query_database_url,
        size=settings.db_pool_size,
        connect_timeout_s=settings.db_connect_timeout_s,
    )
    # GET /commands/...: the ledger read as the read-only role, and its announcements
    # heard on one connection of that role (LISTEN needs no privilege), on the primary
    # (a standby may lag behind an announcement, and cannot LISTEN).
    command_results = CommandResults(
        on_primary(settings.query_database_url),
        pool_size=settings.db_pool_size,
        transient=is_transient,
        connect_timeout_s=settings.db_connect_timeout_s,
    )
    # Commands over HTTP: sent as shopflow-gateway (its client made at start, when the
    # credentials are read), answered from the ledger.
    gateway = CommandGateway(command_results, limits=WriteLimits(settings))

    @contextlib.asynccontextmanager
    async def running(_: FastAPI) -> AsyncIterator[None]:
        rebuild: asyncio.Task[None] | None = None
        if prepare_first:
            await prepare(settings)
        await runtime.start()
        await command_results.start()
        command_sender = ShopflowClient(
            gateway_connection(settings),
            topics=Topics(settings.topic_prefix),
            watch_results=False,
            tracer_provider=tracer_provider,
        )
        await command_sender.start()
        gateway.attach(command_sender)
        rebuild = asyncio.create_task(_rebuild_if_missing(runtime))
        log.info(
            "shopflow consuming from %s (topic prefix %r); queries on http://%s:%d",
            settings.kafka_bootstrap,
            settings.topic_prefix,
            settings.http_host,
            settings.http_port,
        )
        try:
            yield
        finally:
            log.info("shopflow stopping: finishing in-flight batches")
            if rebuild is not None and not rebuild.done():
                rebuild.cancel()
            await command_sender.stop()
            await command_results.stop()
            await runtime.stop()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The token keys first: without one no request about a user can be answered, so
        # the start fails (NoTokenKeys) before anything connects. Refreshed until the end.
        await authenticator.start()
        try:
            async with running(app):
                yield
        finally:
            await authenticator.stop()
            await read_model.close()
            await query_engine.dispose()

    async def query_database_ready() -> None:
        async with query_engine.connect() as connection:
            await connection.execute(text("SELECT 1"))

    read_model = ReadModel(query_engine, hot_reads)
    app = create_http_app(
        read_model,
        {
            "postgresql": query_database_ready,
            "redis": runtime.redis_ready,
            "kafka": runtime.kafka_ready,
        },
        authenticator=authenticator,
        lifespan=lifespan,
        clock=runtime.clock,
        top_products=TopProducts(
            runtime.sales_view,
            read_model,
            runtime.rebuild_sales_view,
            runtime.clock,
            cache_ms=settings.top_cache_ms,
        ),
        # The document `shopflow asyncapi` writes to docs/asyncapi.json, the same code.
        asyncapi=AsyncApiPages(asyncapi_json, asyncapi_html),
        tracer_provider=tracer_provider,
        command_results=command_results,
        command_routes=command_routes(gateway, authenticator.caller),
    )
    answer_bad_writes(app)
    answer_outages(app)
    return app


# What a request may find away: the database (SQLAlchemy's errors, asyncpg's own, a
# refused connection), or the ledger until the end of a wait.
_OUTAGES = (
    SQLAlchemyError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    # TargetServerAttributeNotMatched (no primary yet), or a pooled connection the
    # server dropped while it was idle ("another operation is in progress").
    asyncpg.InternalClientError,
    OSError,
)


def answer_outages(app: FastAPI) -> None:
    """A request that finds the database away is 503 `temporarily_unavailable` with
    `Retry-After`, not a 500: by the consumers' rule of what is transient (a lost or
    refused connection, a server shutting down, a pool with no connection in time). Any
    other error of those kinds is a bug, and stays a 500."""

    async def outage(_: Request, exc: Exception) -> Response:
        if not isinstance(exc, ResultUnavailable) and not is_transient(exc):
            raise exc
        log.warning("a request found the database away: %r", exc)
        return JSONResponse(
            {
                "error": RejectionReason.TEMPORARILY_UNAVAILABLE.value,
                "detail": "the database cannot be reached; try again",
            },
            status_code=503,
            headers={"Retry-After": str(RETRY_AFTER_S)},
        )

    for kind in (*_OUTAGES, ResultUnavailable):
        app.add_exception_handler(kind, outage)
