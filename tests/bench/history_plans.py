"""The query plans of a user's orders and points statement pages, on the database of the
local servers (`make up`), for the user with the most orders: each page must be one
backward range scan of its (user_id, id) index, however many rows the tables hold.

    .venv/bin/python -m tests.bench.history_plans
"""

import asyncio

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from shopflow.contracts.limits import MAX_ENTITY_ID
from shopflow.queries.history import ORDERS_PAGE, PAGE_DEFAULT, STATEMENT_PAGE
from shopflow.settings import Settings


async def main() -> None:
    engine = create_async_engine(Settings().database_url)
    try:
        async with engine.connect() as connection:
            user = (
                await connection.execute(
                    text(
                        "SELECT user_id FROM orders GROUP BY user_id ORDER BY count(*) DESC LIMIT 1"
                    )
                )
            ).scalar_one()
            orders = (await connection.execute(text("SELECT count(*) FROM orders"))).scalar_one()
            moves = (
                await connection.execute(text("SELECT count(*) FROM point_transactions"))
            ).scalar_one()
            print(f"{orders} orders, {moves} point transactions; user {user}")
            for name, statement in (("orders", ORDERS_PAGE), ("statement", STATEMENT_PAGE)):
                explain = "EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF, SUMMARY ON) " + statement.text
                parameters = {"user_id": user, "before": MAX_ENTITY_ID, "fetch": PAGE_DEFAULT + 1}
                plan = (await connection.execute(text(explain), parameters)).scalars().all()
                print(f"--- {name}", *plan, sep="\n")
    finally:
        await engine.dispose()


if __name__ == "__main__":
    asyncio.run(main())
