"""Maintenance of the stores: `rebuild-top`, `purge-ledger` and `check`."""

import asyncio
from typing import Annotated

import typer

from shopflow.cli.logs import LogLevel
from shopflow.logs import configure_logging
from shopflow.persistence.database import create_engine
from shopflow.persistence.ledger import Ledger
from shopflow.persistence.reconciliation import describe, find_violations
from shopflow.runtime import Runtime
from shopflow.settings import Settings

app = typer.Typer()  # merged into `shopflow` (shopflow/cli/__init__.py)


@app.command("rebuild-top")
def rebuild_top(log_level: LogLevel = "info") -> None:
    """Rebuild the Redis top-products view from PostgreSQL's order lines."""
    settings = Settings()
    configure_logging(log_level, settings.log_format)

    async def main() -> bool:
        runtime = Runtime.build(settings, consume=False)
        try:
            return await runtime.rebuild_sales_view()
        finally:
            await runtime.redis.aclose()
            await runtime.engine.dispose()

    if not asyncio.run(main()):
        typer.echo("another rebuild is running; try again when it is done", err=True)
        raise typer.Exit(1)
    typer.echo("the top-products view is rebuilt")


@app.command("purge-ledger")
def purge_ledger(log_level: LogLevel = "info") -> None:
    """Forget command_ids older than SHOPFLOW_LEDGER_RETENTION_DAYS (at least 7)."""
    settings = Settings()
    configure_logging(log_level, settings.log_format)

    async def main() -> int:
        engine = create_engine(settings.database_url, pool_size=1)
        try:
            async with engine.begin() as connection:
                return await Ledger(connection).purge_older_than_days(
                    settings.ledger_retention_days
                )
        finally:
            await engine.dispose()

    removed = asyncio.run(main())
    typer.echo(f"forgot {removed} command ids older than {settings.ledger_retention_days} days")


@app.command()
def check(
    limit: Annotated[int, typer.Option(help="At most this many violations per rule.")] = 20,
) -> None:
    """Check the database's invariants (balances, stock, carts, orders); exit 1 if any fails."""
    settings = Settings()

    async def main() -> str | None:
        engine = create_engine(settings.database_url, pool_size=1)
        try:
            violations = await find_violations(engine, limit_per_rule=limit)
        finally:
            await engine.dispose()
        return describe(violations) if violations else None

    report = asyncio.run(main())
    if report is not None:
        typer.echo(report)
        raise typer.Exit(1)
    typer.echo("all invariants hold")
