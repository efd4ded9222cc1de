"""AddCartItem and RemoveCartItem end to end, every rule and rejection."""

from sqlalchemy.ext.asyncio import AsyncEngine

from shopflow.contracts.commands import AddCartItem, RemoveCartItem
from shopflow.contracts.events import (
    CartItemAdded,
    CartItemRejected,
    CartItemRemoved,
    RejectionReason,
)
from shopflow.producers.client import ShopflowClient
from tests.support.database import cart_of
from tests.support.ids import new_command_id, new_entity_id
from tests.support.service import new_product, registered_user


def _add(user_id: int, product_id: int, quantity: int) -> AddCartItem:
    return AddCartItem(
        command_id=new_command_id("add"), user_id=user_id, product_id=product_id, quantity=quantity
    )


def _remove(user_id: int, product_id: int, quantity: int) -> RemoveCartItem:
    return RemoveCartItem(
        command_id=new_command_id("rm"), user_id=user_id, product_id=product_id, quantity=quantity
    )


async def test_adding_to_cart_accumulates_the_line(
    client: ShopflowClient, engine: AsyncEngine
) -> None:
    user_id = await registered_user(client)
    product_id = await new_product(client, price=100, stock=10)

    first = await client.send_and_wait(_add(user_id, product_id, 3))
    second = await client.send_and_wait(_add(user_id, product_id, 4))

    assert isinstance(first, CartItemAdded)
    assert isinstance(second, CartItemAdded)
    assert (second.quantity, second.cart_quantity) == (4, 7)
    assert await cart_of(engine, user_id) == {product_id: 7}


async def test_cart_line_exceeding_stock_is_rejected_out_of_stock_and_changes_nothing(
    client: ShopflowClient, engine: AsyncEngine
) -> None:
    user_id = await registered_user(client)
    product_id = await new_product(client, price=100, stock=5)
    await client.send_and_wait(_add(user_id, product_id, 4))

    event = await client.send_and_wait(_add(user_id, product_id, 2))

    assert isinstance(event, CartItemRejected)
    assert event.reason is RejectionReason.OUT_OF_STOCK
    assert event.product_id == product_id
    assert await cart_of(engine, user_id) == {product_id: 4}


async def test_adding_for_an_unknown_user_is_rejected_unknown_user(
    client: ShopflowClient,
) -> None:
    product_id = await new_product(client, price=100, stock=5)

    event = await client.send_and_wait(_add(new_entity_id(), product_id, 1))

    assert isinstance(event, CartItemRejected)
    assert event.reason is RejectionReason.UNKNOWN_USER


async def test_adding_an_unknown_product_is_rejected_unknown_product(
    client: ShopflowClient, engine: AsyncEngine
) -> None:
    user_id = await registered_user(client)
    product_id = new_entity_id()

    event = await client.send_and_wait(_add(user_id, product_id, 1))

    assert isinstance(event, CartItemRejected)
    assert event.reason is RejectionReason.UNKNOWN_PRODUCT
    assert event.product_id == product_id
    assert await cart_of(engine, user_id) == {}


async def test_removing_decrements_and_a_line_reaching_zero_disappears(
    client: ShopflowClient, engine: AsyncEngine
) -> None:
    user_id = await registered_user(client)
    product_id = await new_product(client, price=100, stock=10)
    await client.send_and_wait(_add(user_id, product_id, 5))

    partly = await client.send_and_wait(_remove(user_id, product_id, 2))
    assert isinstance(partly, CartItemRemoved)
    assert partly.cart_quantity == 3
    assert await cart_of(engine, user_id) == {product_id: 3}

    emptied = await client.send_and_wait(_remove(user_id, product_id, 3))
    assert isinstance(emptied, CartItemRemoved)
    assert emptied.cart_quantity == 0
    assert await cart_of(engine, user_id) == {}


async def test_removing_more_than_the_cart_holds_is_rejected_and_changes_nothing(
    client: ShopflowClient, engine: AsyncEngine
) -> None:
    user_id = await registered_user(client)
    product_id = await new_product(client, price=100, stock=10)
    await client.send_and_wait(_add(user_id, product_id, 2))

    event = await client.send_and_wait(_remove(user_id, product_id, 3))

    assert isinstance(event, CartItemRejected)
    assert event.reason is RejectionReason.INSUFFICIENT_CART_QUANTITY
    assert event.product_id == product_id
    assert await cart_of(engine, user_id) == {product_id: 2}


async def test_removing_for_unknown_user_or_product_is_rejected(client: ShopflowClient) -> None:
    user_id = await registered_user(client)
    product_id = await new_product(client, price=100, stock=10)

    no_user = await client.send_and_wait(_remove(new_entity_id(), product_id, 1))
    no_product = await client.send_and_wait(_remove(user_id, new_entity_id(), 1))

    assert isinstance(no_user, CartItemRejected)
    assert no_user.reason is RejectionReason.UNKNOWN_USER
    assert isinstance(no_product, CartItemRejected)
    assert no_product.reason is RejectionReason.UNKNOWN_PRODUCT


async def test_one_users_cart_commands_apply_in_offset_order(
    client: ShopflowClient, engine: AsyncEngine
) -> None:
    user_id = await registered_user(client)
    product_id = await new_product(client, price=100, stock=1_000)
    # Offset order holds per topic (one key, one partition). Across topics (add-item vs
    # remove-item vs orders) Kafka defines no order: a sender that needs one waits for
    # each result before sending the next command (README, "Ordering").
    commands = [_add(user_id, product_id, i) for i in range(1, 31)]
    for command in commands:
        await client.send(command)
    results = [await client.wait_for_result(c.command_id) for c in commands]

    assert all(isinstance(r, CartItemAdded) for r in results)
    assert [r.cart_quantity for r in results if isinstance(r, CartItemAdded)] == [
        sum(range(1, i + 1)) for i in range(1, 31)
    ]
    assert await cart_of(engine, user_id) == {product_id: sum(range(1, 31))}
