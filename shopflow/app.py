"""The service process: consumers and the HTTP read side in one asyncio loop.

`shopflow serve` runs both; `shopflow worker` runs the consumers alone, and
`shopflow serve --no-consume` the HTTP side alone, for scaling them apart.
"""

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI
from opentelemetry.trace import TracerProvider

from persistence.migrate import migrate
from queries.http import AsyncApiPages, create_http_app
from queries.read_model import ReadModel
from queries.top_products import TopProducts
from shopflow.asyncapi import asyncapi_html, asyncapi_json
from shopflow.kafka_admin import check_session_timeout, ensure_topics
from shopflow.runtime import Runtime
from shopflow.settings import Settings

log = logging.getLogger(__name__)


async def prepare(settings: Settings) -> None:
    """Create missing topics and migrate the schema (both idempotent, safe concurrently);
    refuse (`StartRefused`) a set-up the service cannot run on."""
    await check_session_timeout(settings)
    created = await ensure_topics(settings)
    if created:
        log.info("created topics: %s", ", ".join(created))
    await migrate(settings.migration_database_url, settings.database_url)


def create_app(
    settings: Settings,
    *,
    consume: bool = True,
    prepare_first: bool = True,
    tracer_provider: TracerProvider | None = None,
) -> FastAPI:
    runtime = Runtime.build(settings, consume=consume, tracer_provider=tracer_provider)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        rebuild: asyncio.Task[bool] | None = None
        if prepare_first:
            await prepare(settings)
        await runtime.start()
        if not await runtime.sales_view.is_built():
            # A fresh or flushed Redis: rebuild the top-products view right away rather
            # than on the first request (which would find it missing and start it too).
            rebuild = asyncio.create_task(runtime.rebuild_sales_view())
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
            await runtime.stop()

    read_model = ReadModel(runtime.engine)
    return create_http_app(
        read_model,
        {
            "postgresql": runtime.database_ready,
            "redis": runtime.redis_ready,
            "kafka": runtime.kafka_ready,
        },
        lifespan=lifespan,
        clock=runtime.clock,
        top_products=TopProducts(
            runtime.sales_view, read_model, runtime.rebuild_sales_view, runtime.clock
        ),
        # The document `shopflow asyncapi` writes to docs/asyncapi.json, the same code.
        asyncapi=AsyncApiPages(asyncapi_json, asyncapi_html),
        tracer_provider=tracer_provider,
    )
