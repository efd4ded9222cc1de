"""The typed senders are made from the command registry: one per route, whose arguments
and options are its model's fields, in the forms the hand-written senders had (their
names, order, types, defaults). Nothing here connects: what sending does is
tests/integration/test_cli.py's."""

from typing import Any

import pytest
import typer
import typer.main
from pydantic import Field
from typer.testing import CliRunner

from shopflow.cli import app
from shopflow.cli.senders import sender_name, typed_sender
from shopflow.contracts.common import CommandId, ProductId, UserId, WireModel
from shopflow.contracts.events import OrderPlaced, OrderRejected
from shopflow.contracts.routes import CommandRoute
from shopflow.contracts.topics import COMMAND_ROUTES, ORDERS_EVENTS

# (kind, option strings or argument name, type, required, default, repeatable, metavar)
Param = tuple[str, tuple[str, ...], str, bool, Any, bool, str | None]

COMMON: list[Param] = [
    ("option", ("--command-id",), "str", False, None, False, None),
    ("option", ("--wait", "--no-wait"), "bool", False, True, False, None),
    ("option", ("--timeout",), "float", False, 30.0, False, None),
]


def argument(name: str, kind: str = "int") -> Param:
    return ("argument", (name,), kind, True, None, False, None)


EXPECTED: dict[str, list[Param]] = {
    "register-user": [argument("user_id"), argument("name", "str"), *COMMON],
    "upsert-product": [
        argument("product_id"),
        argument("name", "str"),
        argument("price"),
        ("option", ("--stock-added",), "int", False, 0, False, None),
        *COMMON,
    ],
    "charge": [argument("user_id"), argument("amount"), *COMMON],
    "add-to-cart": [argument("user_id"), argument("product_id"), argument("quantity"), *COMMON],
    "remove-from-cart": [
        argument("user_id"),
        argument("product_id"),
        argument("quantity"),
        *COMMON,
    ],
    "place-order": [
        argument("user_id"),
        ("option", ("--item",), "list[str]", False, None, True, "PRODUCT_ID:QUANTITY"),
        ("option", ("--from-cart",), "bool", False, False, False, None),
        *COMMON,
    ],
    "cancel-order": [argument("user_id"), argument("order_id"), *COMMON],
    "ship-order": [argument("user_id"), argument("order_id"), *COMMON],
}


def _params(cli: typer.Typer, command: str) -> list[Param]:
    group = typer.main.get_command(cli)
    assert isinstance(group, typer.core.TyperGroup)
    described: list[Param] = []
    for param in group.commands[command].params:
        assert isinstance(param, typer.core.TyperArgument | typer.core.TyperOption)
        described.append(
            (
                param.param_type_name,
                (*param.opts, *param.secondary_opts),
                param.bare_type(),
                param.required,
                param.default,
                param.multiple,
                param.metavar,
            )
        )
    return described


def test_every_route_has_a_typed_sender_under_its_old_name() -> None:
    assert [sender_name(route) for route in COMMAND_ROUTES] == list(EXPECTED)


@pytest.mark.parametrize("command", EXPECTED)
def test_each_sender_takes_its_models_fields_in_the_forms_it_had(command: str) -> None:
    assert _params(app, command) == EXPECTED[command]


def test_the_help_of_a_sender_shows_its_fields_and_its_route() -> None:
    result = CliRunner().invoke(app, ["place-order", "--help"], env={"COLUMNS": "200"})

    assert result.exit_code == 0
    assert "PlaceOrder: order explicit `items`" in result.stdout
    assert "Sent to shop.orders.place, keyed by user_id; answered on" in result.stdout
    assert "--item" in result.stdout
    assert "PRODUCT_ID:QUANTITY" in result.stdout
    assert "One product and how many units of it; repeat for more." in result.stdout
    assert "--from-cart" in result.stdout


def test_items_and_from_cart_together_are_refused_in_the_senders_terms() -> None:
    result = CliRunner().invoke(app, ["place-order", "1", "--item", "7:2", "--from-cart"])

    assert result.exit_code == 2
    assert result.stderr == "give either --item PRODUCT_ID:QUANTITY (repeatable) or --from-cart\n"


@pytest.mark.parametrize(
    ("item", "error"),
    [
        ("7", "--item '7': expected PRODUCT_ID:QUANTITY, e.g. 7:2\n"),
        ("7:x", "--item '7:x': expected PRODUCT_ID:QUANTITY, e.g. 7:2\n"),
        ("7:0", "--item 7:0: invalid OrderLine: quantity: Input should be greater than or "),
    ],
)
def test_an_item_that_is_not_an_order_line_is_refused_before_anything_is_sent(
    item: str, error: str
) -> None:
    result = CliRunner().invoke(app, ["place-order", "1", "--item", item])

    assert result.exit_code == 2
    assert result.stderr.startswith(error)


class CancelOrder(WireModel):
    """Cancel an order that is not shipped yet."""

    command_id: CommandId
    user_id: UserId
    order_id: int = Field(description="The order to cancel.")
    reason: str | None = Field(default=None, description="Why, for the record.")


class CancelAndRestock(CancelOrder):
    restock: list[ProductId] | None = None  # a list of plain ids: no command-line form yet


def _route(model: type[WireModel]) -> CommandRoute:
    return CommandRoute(
        topic="shop.orders.cancel",
        command_type=model,
        key_field="user_id",
        result_topic=ORDERS_EVENTS,
        accepted_type=OrderPlaced,
        rejected_type=OrderRejected,
        writer="shop-storefront",
    )


def test_a_new_command_gets_a_sender_named_for_its_type_with_its_fields() -> None:
    route = _route(CancelOrder)
    cli = typer.Typer()
    cli.command(sender_name(route))(typed_sender(route))
    cli.command("unused")(lambda: None)  # two commands, so that the sender keeps its name

    assert sender_name(route) == "cancel-order"
    assert _params(cli, "cancel-order") == [
        argument("user_id"),
        argument("order_id"),
        ("option", ("--reason",), "str", False, None, False, None),
        *COMMON,
    ]


def test_a_field_without_a_command_line_form_fails_when_the_sender_is_made() -> None:
    with pytest.raises(TypeError, match=r"CancelAndRestock\.restock: no command-line form"):
        typed_sender(_route(CancelAndRestock))
