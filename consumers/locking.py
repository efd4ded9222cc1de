"""Which rows a batch locks up front (see persistence.locks for why, and in what order)."""

from collections.abc import Iterable
from dataclasses import dataclass, field

from consumers.decoding import DecodedCommand
from contracts.commands import (
    AddCartItem,
    ChargePoints,
    PlaceOrder,
    RemoveCartItem,
    UpsertProduct,
)


@dataclass
class LockPlan:
    user_ids: set[int] = field(default_factory=set)
    product_ids: set[int] = field(default_factory=set)
    carts_of: set[int] = field(default_factory=set)


def plan_locks(commands: Iterable[DecodedCommand]) -> LockPlan:
    plan = LockPlan()
    for decoded in commands:
        match decoded.command:
            case (
                ChargePoints(user_id=user_id)
                | AddCartItem(user_id=user_id)
                | RemoveCartItem(user_id=user_id)
            ):
                plan.user_ids.add(user_id)
            case PlaceOrder(user_id=user_id, items=items):
                plan.user_ids.add(user_id)
                if items is None:
                    plan.carts_of.add(user_id)
                else:
                    plan.product_ids.update(line.product_id for line in items)
            case UpsertProduct(product_id=product_id):
                plan.product_ids.add(product_id)
    return plan
