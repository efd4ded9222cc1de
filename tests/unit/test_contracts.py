"""The contract's bounds, enforced by the models (CONTRACT.md, "Commands")."""

import pytest
from pydantic import ValidationError

from shopflow.contracts.commands import (
    ChargePoints,
    OrderLine,
    PlaceOrder,
    RegisterUser,
    UpsertProduct,
)
from shopflow.contracts.events import EVENT_TYPES, PointsCharged, parse_event
from shopflow.contracts.topics import COMMAND_ROUTES, Topics


def test_command_id_allows_the_documented_alphabet() -> None:
    ChargePoints.model_validate({"command_id": "aZ0._:-" * 9 + "x", "user_id": 1, "amount": 1})


@pytest.mark.parametrize("command_id", ["", "a" * 65, "has space", "ünïcode", "semi;colon"])
def test_command_id_outside_the_alphabet_or_length_is_refused(command_id: str) -> None:
    with pytest.raises(ValidationError):
        ChargePoints.model_validate({"command_id": command_id, "user_id": 1, "amount": 1})


@pytest.mark.parametrize("amount", [0, -1, 10**9 + 1, "5", 5.0, True, None])
def test_charge_amount_must_be_a_json_integer_within_bounds(amount: object) -> None:
    with pytest.raises(ValidationError):
        ChargePoints.model_validate({"command_id": "c", "user_id": 1, "amount": amount})


@pytest.mark.parametrize("user_id", [0, -5, 2**63, "1"])
def test_ids_are_positive_63_bit_integers(user_id: object) -> None:
    with pytest.raises(ValidationError):
        ChargePoints.model_validate({"command_id": "c", "user_id": user_id, "amount": 1})


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(ValidationError, match="Extra inputs"):
        RegisterUser.model_validate({"command_id": "c", "user_id": 1, "name": "A", "nmae": "B"})


@pytest.mark.parametrize("name", ["", "x" * 101])
def test_names_are_1_to_100_characters(name: str) -> None:
    with pytest.raises(ValidationError):
        RegisterUser.model_validate({"command_id": "c", "user_id": 1, "name": name})


@pytest.mark.parametrize(
    ("price", "stock_added"), [(0, 1), (10**9 + 1, 1), (1, -1), (1, 10**6 + 1)]
)
def test_product_price_and_stock_bounds(price: int, stock_added: int) -> None:
    with pytest.raises(ValidationError):
        UpsertProduct.model_validate(
            {
                "command_id": "c",
                "product_id": 1,
                "name": "n",
                "price": price,
                "stock_added": stock_added,
            }
        )


def test_order_takes_items_or_the_cart_but_not_both_nor_neither() -> None:
    line = OrderLine(product_id=1, quantity=1)
    PlaceOrder(command_id="c", user_id=1, items=[line])
    PlaceOrder(command_id="c", user_id=1, from_cart=True)
    with pytest.raises(ValidationError):
        PlaceOrder(command_id="c", user_id=1, items=[line], from_cart=True)
    with pytest.raises(ValidationError):
        PlaceOrder(command_id="c", user_id=1)


def test_order_lines_need_distinct_products_and_at_most_100() -> None:
    with pytest.raises(ValidationError, match="distinct"):
        PlaceOrder.model_validate(
            {"command_id": "c", "user_id": 1, "items": [{"product_id": 1, "quantity": 1}] * 2}
        )
    many = [{"product_id": i, "quantity": 1} for i in range(1, 102)]
    with pytest.raises(ValidationError):
        PlaceOrder.model_validate({"command_id": "c", "user_id": 1, "items": many})


def test_events_serialize_occurred_at_as_rfc3339_utc_and_parse_back() -> None:
    event = PointsCharged.model_validate_json(
        '{"event_id": "8f0e0d6c-1b7e-4c55-9a43-3e8e7f1d2c11", "command_id": "c",'
        ' "occurred_at": "2026-11-29T12:00:00+09:00", "user_id": 1, "amount": 5,'
        ' "balance": 5, "transaction_id": 1}'
    )

    wire = event.model_dump_json()

    assert '"occurred_at":"2026-11-29T03:00:00.000000Z"' in wire
    assert '"type":"PointsCharged"' in wire
    assert parse_event(wire) == event


def test_every_result_type_is_registered_for_parsing() -> None:
    rejected_types = {route.rejected_type for route in COMMAND_ROUTES}
    assert rejected_types <= set(EVENT_TYPES.values())


def test_topic_prefix_applies_to_every_topic() -> None:
    names = Topics("t1.").all()
    assert all(name.startswith("t1.shop.") for name in names)
    assert len(names) == len(set(names)) == 14
