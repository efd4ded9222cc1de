"""How long the HTTP queries kept answering while a fault struck: GET /products/{id} of
the run's serve (a product of the run's catalog), one request every `EVERY_S` from the
start of the stream until the fault is over. An answer under 500 counts (the query read
PostgreSQL: a replicated one's standby, with the chaos cluster's URLs); a 5xx, or no
answer within `TIMEOUT_S`, does not. The report gives both counts and the longest time
without an answer."""

import asyncio
import contextlib
import time
from dataclasses import dataclass, field

import httpx

EVERY_S = 0.1
TIMEOUT_S = 2.0


@dataclass
class QueryProbe:
    url: str
    product_id: int
    answered: int = 0
    failed: int = 0
    longest_gap_s: float = 0.0
    _last_answer: float = field(default_factory=time.monotonic)
    _task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        async with httpx.AsyncClient(base_url=self.url, timeout=TIMEOUT_S) as http:
            while True:
                try:
                    ok = (await http.get(f"/products/{self.product_id}")).status_code < 500
                except httpx.HTTPError:
                    ok = False
                now = time.monotonic()
                if ok:
                    self.answered += 1
                    self._last_answer = now
                else:
                    self.failed += 1
                self.longest_gap_s = max(self.longest_gap_s, now - self._last_answer)
                await asyncio.sleep(EVERY_S)

    def start(self) -> None:
        self._last_answer = time.monotonic()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    def describe(self) -> str:
        return (
            f"GET /products/{{id}} from the stream's start to the fault's end: "
            f"{self.answered} answered, {self.failed} not; longest without an answer "
            f"{self.longest_gap_s:.1f} s"
        )
