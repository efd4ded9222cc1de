"""The loyalty programme against a real shopflow: its commands applied, its result events
received, its balances read back over HTTP.

shopflow runs for the session on a fresh database and topic prefix (the plugin's
`shopflow_service`), on the secured servers the SHOPFLOW_* settings name. Each test makes
its own users, so none depends on another.
"""

import secrets
import uuid

import httpx
import pytest

from examples.downstream.loyalty import LoyaltyProgram, RewardRefused
from shopflow.contracts.commands import RegisterUser
from shopflow.contracts.events import PointsCharged, RejectionReason, UserRegistered
from shopflow.producers.client import ShopflowClient

# shopflow's fixtures live in the session's event loop, so the tests run in it too.
pytestmark = pytest.mark.asyncio(loop_scope="session")


async def _new_user(shopflow: ShopflowClient) -> int:
    user_id = secrets.randbelow(2**62) + 1
    event = await shopflow.send_and_wait(
        RegisterUser(command_id=f"reg-{uuid.uuid4().hex}", user_id=user_id, name="Loyal")
    )
    assert isinstance(event, UserRegistered)
    return user_id


async def test_a_purchase_is_rewarded_with_points(
    loyalty: LoyaltyProgram, shopflow_client: ShopflowClient
) -> None:
    user_id = await _new_user(shopflow_client)
    purchase = uuid.uuid4().hex

    reward = await loyalty.reward_purchase(purchase, user_id, total=12_345)

    assert (reward.points, reward.balance) == (123, 123)
    [event] = shopflow_client.results(LoyaltyProgram.command_id(purchase))
    assert isinstance(event, PointsCharged)
    assert (event.user_id, event.amount, event.balance) == (user_id, 123, 123)
    assert event.event_id == reward.event_id
    assert await loyalty.balance(user_id) == 123


async def test_rewards_add_up(loyalty: LoyaltyProgram, shopflow_client: ShopflowClient) -> None:
    user_id = await _new_user(shopflow_client)

    first = await loyalty.reward_purchase(uuid.uuid4().hex, user_id, total=1_000)
    second = await loyalty.reward_purchase(uuid.uuid4().hex, user_id, total=2_599)

    assert (first.balance, second.points, second.balance) == (10, 25, 35)
    assert await loyalty.balance(user_id) == 35


async def test_a_purchase_rewarded_twice_is_charged_once(
    loyalty: LoyaltyProgram, shopflow_client: ShopflowClient
) -> None:
    user_id = await _new_user(shopflow_client)
    purchase = uuid.uuid4().hex

    await loyalty.reward_purchase(purchase, user_id, total=5_000)
    await loyalty.reward_purchase(purchase, user_id, total=5_000)

    # shopflow answers the second time too, from its ledger: the same event, no new charge.
    answers = await shopflow_client.wait_for_results(
        LoyaltyProgram.command_id(purchase), count=2, timeout=20
    )
    assert len({a.event_id for a in answers}) == 1
    assert await loyalty.balance(user_id) == 50


async def test_a_reward_for_an_unknown_user_is_refused(
    loyalty: LoyaltyProgram, shopflow_http: httpx.AsyncClient
) -> None:
    stranger = secrets.randbelow(2**62) + 1

    with pytest.raises(RewardRefused) as refused:
        await loyalty.reward_purchase(uuid.uuid4().hex, stranger, total=10_000)

    assert refused.value.reason is RejectionReason.UNKNOWN_USER
    answer = await shopflow_http.get(f"/users/{stranger}/points")
    assert answer.status_code == 404
    assert answer.json()["error"] == "unknown_user"
