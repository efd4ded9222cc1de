"""A storefront that speaks only HTTP to shopflow: it charges a customer's points (as the
payments service), fills the cart, orders from it and cancels the order, each a command
over HTTP with an `Idempotency-Key`, answered with its result event.

    PAYMENTS_TOKEN=$(.venv/bin/shopflow token --scope shopflow:points:charge) \\
    CUSTOMER_TOKEN=$(.venv/bin/shopflow token --user 1) \\
    .venv/bin/python -m examples.storefront_http --user 1 --product 3

Run it again with the same `--session` and every answer comes back the same, with the
same event ids: the keys make each request safe to repeat.
"""

import argparse
import asyncio
import json
import os
import uuid
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class Storefront:
    http: httpx.AsyncClient
    customer_token: str
    payments_token: str
    session: str  # the keys' prefix: one shopping session, repeatable

    async def _write(
        self, method: str, path: str, key: str, token: str, body: Any = None
    ) -> dict[str, Any]:
        answer = await self.http.request(
            method,
            path,
            json=body,
            headers={
                "Authorization": f"Bearer {token}",
                "Idempotency-Key": f"{self.session}-{key}",
                "Prefer": "wait=10",
            },
        )
        document: dict[str, Any] = answer.json()
        if answer.status_code >= 300:
            raise RuntimeError(f"{method} {path}: {answer.status_code} {document}")
        return document

    async def shop(self, user_id: int, product_id: int) -> list[dict[str, Any]]:
        """Charge 10,000 points, put two of the product in the cart, order the cart,
        cancel the order; the four result events."""
        charged = await self._write(
            "POST",
            f"/users/{user_id}/points/charges",
            "charge",
            self.payments_token,
            {"amount": 10_000},
        )
        added = await self._write(
            "POST",
            f"/users/{user_id}/cart/items",
            "add",
            self.customer_token,
            {"product_id": product_id, "quantity": 2},
        )
        placed = await self._write(
            "POST", f"/users/{user_id}/orders", "order", self.customer_token, {"from_cart": True}
        )
        cancelled = await self._write(
            "POST",
            f"/users/{user_id}/orders/{placed['order_id']}/cancel",
            "cancel",
            self.customer_token,
        )
        return [charged, added, placed, cancelled]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", default="http://127.0.0.1:8000")
    parser.add_argument("--user", type=int, required=True)
    parser.add_argument("--product", type=int, required=True)
    parser.add_argument("--session", default=f"storefront-{uuid.uuid4().hex[:12]}")
    args = parser.parse_args()
    async with httpx.AsyncClient(base_url=args.base_url, timeout=30) as http:
        storefront = Storefront(
            http, os.environ["CUSTOMER_TOKEN"], os.environ["PAYMENTS_TOKEN"], args.session
        )
        for event in await storefront.shop(args.user, args.product):
            print(json.dumps(event))


if __name__ == "__main__":
    asyncio.run(main())
