"""The neighbouring team's code under test: a loyalty programme that rewards purchases
with shopflow points.

It charges points with a `ChargePoints` command through shopflow's typed client, waits
for the result event, and reads balances through shopflow's HTTP queries.
"""

from dataclasses import dataclass
from uuid import UUID

import httpx

from shopflow.contracts.commands import ChargePoints
from shopflow.contracts.events import PointsCharged, PointsChargeRejected, RejectionReason
from shopflow.producers.client import ShopflowClient

SPEND_PER_POINT = 100  # one point per 100 spent


class RewardRefused(Exception):
    def __init__(self, reason: RejectionReason) -> None:
        super().__init__(f"shopflow refused the reward: {reason}")
        self.reason = reason


@dataclass(frozen=True)
class Reward:
    points: int
    balance: int  # the user's balance once the points were added
    event_id: UUID  # of shopflow's PointsCharged: the same on every answer to this purchase


class LoyaltyProgram:
    def __init__(self, shopflow: ShopflowClient, queries: httpx.AsyncClient) -> None:
        self._shopflow = shopflow
        self._queries = queries

    @staticmethod
    def command_id(purchase_id: str) -> str:
        """The purchase names its command, so rewarding a purchase again (a retry, an
        order event delivered twice) is answered from shopflow's ledger, not charged."""
        return f"loyalty-{purchase_id}"

    async def reward_purchase(self, purchase_id: str, user_id: int, total: int) -> Reward:
        points = total // SPEND_PER_POINT
        if points < 1:
            raise ValueError(f"a purchase of {total} earns no points")
        command = ChargePoints(
            command_id=self.command_id(purchase_id), user_id=user_id, amount=points
        )
        event = await self._shopflow.send_and_wait(command, timeout=20)
        if isinstance(event, PointsChargeRejected):
            raise RewardRefused(event.reason)
        if not isinstance(event, PointsCharged):
            raise TypeError(f"unexpected answer to ChargePoints: {event.type}")
        return Reward(points=event.amount, balance=event.balance, event_id=event.event_id)

    async def balance(self, user_id: int) -> int:
        answer = await self._queries.get(f"/users/{user_id}/points")
        answer.raise_for_status()
        return int(answer.json()["balance"])
