"""The read side's baselines: what a bare app does on this machine, started by the
benchmark in the same run as `shopflow serve`, under the same uvicorn settings, so that
shopflow's figures read as ratios of them.

- `db` (B-db): `GET /products/{id}` reads the product's row through a bare asyncpg pool
  (shopflow's own `SELECT` of the product: its id, name, price and stock) and answers it
  as JSON, 404 for none. What shopflow's product and balance reads could cost.
- `const` (B-const): `GET /products/top` answers a constant JSON body, the bytes of a
  top-products answer given on the command line. What an answer held in memory costs.

    .venv/bin/python -m tests.bench.baseline_apps db --port 8101
    .venv/bin/python -m tests.bench.baseline_apps const --port 8102 --body '{"window_hours":72,...}'

`db` reads as the query role, from SHOPFLOW_QUERY_DATABASE_URL (the settings' way, with
the local credentials), with a pool of SHOPFLOW_DB_POOL_SIZE connections, as serve's.
"""

import argparse
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from shopflow.persistence.database import asyncpg_connect_args
from shopflow.settings import Settings

PRODUCT = "SELECT product_id, name, price, stock FROM products WHERE product_id = $1"
NOT_FOUND = json.dumps({"error": "unknown_product", "detail": None}).encode()


def db_app(settings: Settings) -> Starlette:
    pool: asyncpg.Pool | None = None

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        nonlocal pool
        options = asyncpg_connect_args(settings.query_database_url)
        size = settings.db_pool_size
        pool = await asyncpg.create_pool(**options, min_size=size, max_size=size)
        try:
            yield
        finally:
            await pool.close()

    async def product(request: Request) -> Response:
        assert pool is not None
        try:
            product_id = int(request.path_params["product_id"])
        except ValueError:
            return Response(NOT_FOUND, status_code=404, media_type="application/json")
        row = await pool.fetchrow(PRODUCT, product_id)
        if row is None:
            return Response(NOT_FOUND, status_code=404, media_type="application/json")
        return JSONResponse(dict(row))

    return Starlette(routes=[Route("/products/{product_id}", product)], lifespan=lifespan)


def const_app(body: bytes) -> Starlette:
    async def top(_: Request) -> Response:
        return Response(body, media_type="application/json")

    return Starlette(routes=[Route("/products/top", top)])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("kind", choices=["db", "const"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--body", default="", help="const: the answer's JSON")
    args = parser.parse_args()
    settings = Settings()
    app: Any
    if args.kind == "db":
        app = db_app(settings)
    else:
        json.loads(args.body)  # a JSON document, or refuse to start
        app = const_app(args.body.encode())
    # serve's uvicorn settings (shopflow.cli.processes.serve): the same loop and HTTP
    # parser (uvicorn's auto: uvloop, httptools), keep-alive and logging.
    uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=args.port,
            log_level="warning",
            lifespan="on",
            timeout_keep_alive=settings.http_keep_alive_s,
            log_config=None,
        )
    ).run()


if __name__ == "__main__":
    main()
