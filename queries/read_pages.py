"""The answers of the read side's hottest GETs (top products, a product, a user's
balance), each made here once for both ways a request reaches it: its FastAPI route
(`queries.http`, which documents it and answers every refusal) and the front that
answers the plain case before FastAPI's stack (`queries.hot_reads`)."""

from fastapi.responses import JSONResponse
from starlette.requests import Request
from starlette.responses import Response

from shopflow.domain.clock import Clock
from shopflow.domain.top_products import TOP_LIMIT
from shopflow.queries.answers import PointsAnswer
from shopflow.queries.http_caching import (
    PRIVATE,
    PRODUCT_CACHE_CONTROL,
    TOP_CACHE_CONTROL,
    cacheable,
    tagged,
)
from shopflow.queries.read_model import ReadModel
from shopflow.queries.top_products import TopAnswer, TopProducts


class NotFound(Exception):
    """404 in the contract's shape: `reason` is its `error`."""

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail


def not_found_answer(exc: NotFound) -> Response:
    return JSONResponse({"error": exc.reason, "detail": exc.detail}, status_code=404)


class ReadPages:
    def __init__(
        self, read_model: ReadModel, top_products: TopProducts | None, clock: Clock
    ) -> None:
        """Without `top_products` (the Redis view with its fallback), top products are
        computed from PostgreSQL on every request."""
        self._read_model = read_model
        self._top_products = top_products
        self._clock = clock

    async def top(self, request: Request) -> Response:
        # Its JSON made once per computation (`TopAnswer`), not per request.
        if self._top_products is not None:
            answer = await self._top_products.answer()
        else:
            ranked = await self._read_model.top_products(self._clock(), limit=TOP_LIMIT)
            answer = TopAnswer.of(ranked, "postgresql")
        return cacheable(request, answer.body, answer.etag, TOP_CACHE_CONTROL)

    async def product(self, request: Request, product_id: int) -> Response:
        answer = await self._read_model.product(product_id)
        if answer is None:
            raise NotFound("unknown_product", f"product {product_id} does not exist")
        return tagged(request, answer, PRODUCT_CACHE_CONTROL)

    async def points(self, request: Request, user_id: int) -> Response:
        """The balance of `user_id`, whom the caller has been let read."""
        balance = await self._read_model.balance(user_id)
        if balance is None:
            raise NotFound("unknown_user", f"user {user_id} is not registered")
        return tagged(request, PointsAnswer(user_id=user_id, balance=balance), PRIVATE)
