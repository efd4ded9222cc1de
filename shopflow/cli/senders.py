"""The commands that send commands: `send TOPIC JSON`, and one typed sender for each
route of the contract (`contracts.topics.COMMAND_ROUTES`), made from its command
model, so that a new command gets its sender without a line here.

A typed sender takes the model's fields (pydantic's `model_fields`: name, type,
default, description) in the model's order:
- a required int or str field is an argument (`charge USER_ID AMOUNT`);
- an int or str field with a default is an option (`--stock-added N`);
- `Literal[True] | None` (true, or left out) is a flag (`--from-cart`);
- a list of models of int and str fields is a repeatable option named for one element,
  its value the element's fields joined by ':' (`--item PRODUCT_ID:QUANTITY`);
and, as every sender, --command-id, --wait/--no-wait and --timeout. A field of any other
kind has no form yet: importing the CLI fails, naming it, until it is given one here.
`SHAPES` holds what a model cannot say. All of them send, wait and exit through
`shopflow.cli.sending`.
"""

import inspect
import re
import types
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, Final, Literal, Union, cast, get_args, get_origin
from uuid import uuid4

import typer
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo

from shopflow.cli.sending import contract_checked, deliver, validation_message
from shopflow.contracts.commands import (
    AddCartItem,
    ChargePoints,
    Command,
    PlaceOrder,
    RemoveCartItem,
    UpsertProduct,
)
from shopflow.contracts.common import WireModel
from shopflow.contracts.routes import CommandRoute
from shopflow.contracts.topics import COMMAND_ROUTES, ROUTES_BY_TOPIC
from shopflow.ops.output import fail

app = typer.Typer()  # merged into `shopflow` (shopflow/cli/__init__.py)

Wait = Annotated[bool, typer.Option(help="Wait for the result event and print it.")]
Timeout = Annotated[float, typer.Option(help="Seconds to wait for the result.")]
CommandIdOption = Annotated[
    str | None,
    typer.Option(help="The idempotency key; reuse it to resend.", show_default="cli-<random hex>"),
]


@app.command()
def send(
    topic: Annotated[str, typer.Argument(help="Command topic, e.g. shop.points.charge.")],
    payload: Annotated[str, typer.Argument(help="The command as JSON.")],
    wait: Wait = True,
    timeout: Timeout = 30.0,
) -> None:
    """Send one command as raw JSON (keyed by its entity id) and print its result event."""
    route = ROUTES_BY_TOPIC.get(topic)
    if route is None:
        raise typer.BadParameter(f"not a command topic; one of: {', '.join(ROUTES_BY_TOPIC)}")
    with contract_checked():
        command = cast(Command, route.command_type.model_validate_json(payload))
    deliver(command, wait=wait, timeout=timeout)


# --- The typed senders ----------------------------------------------------------------


@dataclass(frozen=True)
class SenderShape:
    """What a command's sender takes from outside its model."""

    # Its name; by default its command type in kebab-case (CancelOrder: cancel-order).
    name: str | None = None
    # Fields the contract requires that the sender makes options, with these defaults.
    defaults: Mapping[str, object] = field(default_factory=dict)
    # Fields (flags, repeatable or optional options) exactly one of which must be given:
    # refused in the sender's own terms, its options, before the contract's validator
    # refuses it in the fields'.
    one_of: tuple[str, ...] = ()


# The first six senders were written by hand; these keep their names and forms.
SHAPES: Final[Mapping[type[WireModel], SenderShape]] = {
    UpsertProduct: SenderShape(defaults={"stock_added": 0}),
    ChargePoints: SenderShape(name="charge"),
    AddCartItem: SenderShape(name="add-to-cart"),
    RemoveCartItem: SenderShape(name="remove-from-cart"),
    PlaceOrder: SenderShape(one_of=("items", "from_cart")),
}

# Every sender's own parameters, after the model's fields: (name, annotation, default).
_COMMON: Final = (
    ("command_id", CommandIdOption, None),
    ("wait", Wait, True),
    ("timeout", Timeout, 30.0),
)


@dataclass(frozen=True)
class FieldParameter:
    """One field of a command model as its sender takes it."""

    field: str
    parameter: inspect.Parameter  # what Typer reads: name, type, default, argument or option
    form: str  # how help and errors name it: `PRICE`, `--item PRODUCT_ID:QUANTITY (repeatable)`
    value: Callable[[Any], Any]  # from what Typer parsed to the field's value (None: left out)

    def given(self, parsed: Any) -> bool:
        """Whether it was given at all, judged before its value is made (which may fail):
        an option left out is None, a flag False, a repeatable option empty."""
        return parsed is not None and parsed is not False and parsed != []


def _parameter(
    name: str, annotation: object, default: object = inspect.Parameter.empty
) -> inspect.Parameter:
    # Keyword-only: Typer calls with keywords, and required and defaulted parameters may
    # then come in the model's order.
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default
    )


def _as_is(parsed: Any) -> Any:
    return parsed


def _flag(parsed: Any) -> Literal[True] | None:
    return True if parsed else None


def _optional(annotation: Any) -> Any:
    """X for `X | None`, else None."""
    if get_origin(annotation) in (Union, types.UnionType):
        members = [a for a in get_args(annotation) if a is not type(None)]
        if len(members) == 1 and len(get_args(annotation)) == 2:
            return members[0]
    return None


def _scalar(name: str, info: FieldInfo, shape: SenderShape) -> FieldParameter | None:
    optional = _optional(info.annotation)
    kind = info.annotation if info.annotation in (int, str) else optional
    if kind not in (int, str):
        return None
    if name in shape.defaults or not info.is_required():
        option = "--" + name.replace("_", "-")
        default = shape.defaults.get(name, info.default)
        typed = kind if optional is None else kind | None
        as_option: object = Annotated[typed, typer.Option(option, help=info.description)]
        return FieldParameter(name, _parameter(name, as_option, default), option, _as_is)
    as_argument: object = Annotated[kind, typer.Argument(help=info.description)]
    return FieldParameter(name, _parameter(name, as_argument), name.upper(), _as_is)


def _flag_field(name: str, info: FieldInfo) -> FieldParameter | None:
    if get_args(_optional(info.annotation)) != (True,) or info.default is not None:
        return None  # not `Literal[True] | None = None`
    option = "--" + name.replace("_", "-")
    annotation = Annotated[bool, typer.Option(option, help=info.description)]
    return FieldParameter(name, _parameter(name, annotation, False), option, _flag)


def _list_field(model: type[BaseModel], name: str, info: FieldInfo) -> FieldParameter | None:
    listed = _optional(info.annotation) or info.annotation
    [element] = get_args(listed) or [None]
    if get_origin(listed) is not list or not (
        isinstance(element, type) and issubclass(element, BaseModel)
    ):
        return None
    parts = element.model_fields
    if any(part.annotation not in (int, str) for part in parts.values()):
        raise TypeError(
            f"{model.__name__}.{name}: the fields of {element.__name__} are not all int or str"
        )
    option = "--" + name.removesuffix("s").replace("_", "-")  # named for one element
    metavar = ":".join(part.upper() for part in parts)
    examples = [part.examples[0] for part in parts.values() if part.examples]
    example = f", e.g. {':'.join(map(str, examples))}" if len(examples) == len(parts) else ""

    kinds: dict[str, Callable[[str], object]] = {
        part: int if part_info.annotation is int else str for part, part_info in parts.items()
    }

    def one(item: str) -> BaseModel:
        values = item.split(":")
        try:
            if len(values) != len(kinds):
                raise ValueError(item)
            return element(
                **{
                    part: kind(value)
                    for (part, kind), value in zip(kinds.items(), values, strict=True)
                }
            )
        except ValidationError as error:  # a ValueError too: caught first
            raise fail(f"{option} {item}: {validation_message(error)}") from None
        except ValueError:
            raise fail(f"{option} {item!r}: expected {metavar}{example}") from None

    def lines(parsed: list[str] | None) -> list[BaseModel] | None:
        return [one(item) for item in parsed] if parsed else None

    element_doc = inspect.cleandoc(element.__doc__ or "").rstrip(".")
    help_text = " ".join(filter(None, [f"{element_doc}; repeat for more.", info.description]))
    annotation = Annotated[list[str] | None, typer.Option(option, metavar=metavar, help=help_text)]
    return FieldParameter(
        name, _parameter(name, annotation, None), f"{option} {metavar} (repeatable)", lines
    )


def field_parameters(model: type[WireModel], shape: SenderShape) -> list[FieldParameter]:
    """The sender's form of each field of `model` but command_id, in the model's order."""
    made = []
    for name, info in model.model_fields.items():
        if name == "command_id":
            continue
        if name in {common for common, _, _ in _COMMON}:
            raise TypeError(f"{model.__name__}.{name} clashes with every sender's --{name}")
        found = (
            _scalar(name, info, shape) or _flag_field(name, info) or _list_field(model, name, info)
        )
        if found is None:
            raise TypeError(
                f"{model.__name__}.{name}: no command-line form for {info.annotation!r} "
                "(give it one in shopflow/cli/senders.py)"
            )
        made.append(found)
    return made


def sender_name(route: CommandRoute) -> str:
    shape = SHAPES.get(route.command_type, SenderShape())
    return shape.name or re.sub(r"(?<!^)(?=[A-Z])", "-", route.type_name).lower()


def _help(route: CommandRoute) -> str:
    doc = " ".join(inspect.cleandoc(route.command_type.__doc__ or "").split())
    return (
        f"{route.type_name}: {doc[:1].lower()}{doc[1:]}\n\n"
        f"Sent to {route.topic}, keyed by {route.key_field}; answered on {route.result_topic}."
    )


def typed_sender(route: CommandRoute) -> Callable[..., None]:
    """The typed sender of `route`'s command: a function whose `__signature__` Typer
    reads (the fields' parameters, then --command-id, --wait and --timeout)."""
    model = route.command_type
    shape = SHAPES.get(model, SenderShape())
    fields = field_parameters(model, shape)
    by_field = {f.field: f for f in fields}
    unknown = (set(shape.one_of) | set(shape.defaults)) - set(by_field)
    if unknown:
        raise TypeError(f"the sender shape of {route.type_name} names no field {sorted(unknown)}")
    exclusive = [by_field[name] for name in shape.one_of]

    def send_typed(*, command_id: str | None, wait: bool, timeout: float, **parsed: Any) -> None:
        if exclusive and sum(f.given(parsed[f.field]) for f in exclusive) != 1:
            raise fail(f"give either {' or '.join(f.form for f in exclusive)}")
        values = {f.field: f.value(parsed[f.field]) for f in fields}
        with contract_checked():
            command = model.model_validate(
                {"command_id": command_id or f"cli-{uuid4().hex}", **values}
            )
        deliver(cast(Command, command), wait=wait, timeout=timeout)

    send_typed.__name__ = send_typed.__qualname__ = sender_name(route).replace("-", "_")
    send_typed.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [f.parameter for f in fields] + [_parameter(*common) for common in _COMMON]
    )
    return send_typed


for _route in COMMAND_ROUTES:
    app.command(sender_name(_route), help=_help(_route))(typed_sender(_route))
