"""The command registry is complete: every route of the contract is bound once on the
consumer side, to a handler that takes its command model, and its result events and
topic are ones the contract knows."""

import inspect
from typing import Any, get_args, get_origin, get_type_hints

import pytest

from shopflow.consumers.bindings import Answer, Binding, CommandBatch, bind
from shopflow.consumers.handlers import BINDINGS
from shopflow.consumers.locking import LockedRows, LockRule
from shopflow.consumers.ports import UnitOfWork
from shopflow.contracts.commands import ChargePoints, Command, PlaceOrder
from shopflow.contracts.common import CommandId, WireModel
from shopflow.contracts.events import EVENT_TYPES
from shopflow.contracts.topics import COMMAND_ROUTES, DEAD_LETTERS, EVENT_TOPICS, REJECTION_TYPES


def test_every_route_of_the_contract_has_exactly_one_binding() -> None:
    # `bind` has checked it when consumers.handlers was imported; this says what it means.
    assert set(BINDINGS) == {route.command_type for route in COMMAND_ROUTES}


def test_bind_refuses_a_missing_binding_a_second_one_and_one_without_a_route() -> None:
    others = [b for b in BINDINGS.values() if b.command_type is not PlaceOrder]

    class Unrouted(WireModel):
        command_id: CommandId

    async def handle(
        uow: UnitOfWork, batch: CommandBatch[Unrouted], locked: LockedRows
    ) -> list[Answer]:
        raise NotImplementedError

    with pytest.raises(TypeError, match="routes without a handler: PlaceOrder"):
        bind(*others)
    with pytest.raises(TypeError, match="ChargePoints is bound twice"):
        bind(*BINDINGS.values(), BINDINGS[ChargePoints])
    with pytest.raises(TypeError, match="Unrouted has no route in the contract"):
        bind(*BINDINGS.values(), Binding(Unrouted, handle, LockRule()))


@pytest.mark.parametrize("binding", BINDINGS.values(), ids=lambda b: b.command_type.__name__)
def test_each_handler_takes_the_commands_it_is_bound_to(binding: Binding[Any]) -> None:
    # mypy checks the same statically (Binding[C]); this holds it without mypy.
    uow, batch, locked = inspect.signature(binding.handler).parameters
    hints = get_type_hints(binding.handler)
    assert get_origin(hints[batch]) is CommandBatch
    [model] = get_args(hints[batch])
    assert binding.command_type in (get_args(model) or (model,))  # a model, or a union of some
    assert (hints[uow], hints[locked]) == (UnitOfWork, LockedRows)


def test_the_command_union_is_the_routed_models() -> None:
    assert set(get_args(Command)) == {route.command_type for route in COMMAND_ROUTES}


@pytest.mark.parametrize("route", COMMAND_ROUTES, ids=lambda r: r.type_name)
def test_each_routes_events_can_be_parsed_by_their_type(route: Any) -> None:
    for event in (route.accepted_type, route.rejected_type):
        assert EVENT_TYPES[event.model_fields["type"].default] is event


def test_topics_and_command_types_are_routed_once() -> None:
    topics = [route.topic for route in COMMAND_ROUTES]
    assert len(set(topics)) == len(topics)
    assert not set(topics) & {*EVENT_TOPICS, DEAD_LETTERS}
    assert len({route.command_type for route in COMMAND_ROUTES}) == len(COMMAND_ROUTES)


def test_a_rejection_is_told_by_its_routes_type_not_its_name() -> None:
    accepted = {route.accepted_type for route in COMMAND_ROUTES}
    rejected = {route.rejected_type for route in COMMAND_ROUTES}

    assert rejected == REJECTION_TYPES
    assert not accepted & rejected
    assert all("reason" in t.model_fields for t in REJECTION_TYPES)
