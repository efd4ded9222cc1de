"""The composition root builds without a running event loop, as `shopflow serve` does it
(uvicorn starts the loop only after the app exists); nothing connects before start. A
process's garbage collector is tuned as configured."""

import functools
import gc
from pathlib import Path

import pytest
from fastapi import FastAPI
from faststream.kafka.subscriber.usecase import LogicSubscriber

from shopflow.app import create_app
from shopflow.cli.processes import tune_garbage_collector
from shopflow.contracts.topics import COMMAND_ROUTES, ORDERS_EVENTS
from shopflow.kafka_access import kafka_connection
from shopflow.queries.hot_reads import HotReads
from shopflow.queries.http import ReadSideApp
from shopflow.runtime import Consumers, Runtime, build_broker
from shopflow.settings import Settings
from tests.support.fakes import unit_settings
from tests.support.signing_keys import public_key_file


def test_the_http_app_with_its_consumers_builds_before_the_loop_runs(tmp_path: Path) -> None:
    app = create_app(unit_settings(auth_public_key_file=public_key_file(tmp_path)), consume=True)

    assert isinstance(app, FastAPI)
    assert any(getattr(route, "path", None) == "/products/top" for route in app.routes)
    # Untraced, the hottest GETs are answered in front of the middleware.
    assert isinstance(app, ReadSideApp)
    assert isinstance(app.build_middleware_stack(), HotReads)


def test_a_process_collects_young_objects_as_configured_with_what_it_holds_frozen() -> None:
    before = gc.get_threshold()
    try:
        tune_garbage_collector(Settings(gc_threshold=12_345))
        assert gc.get_threshold() == (12_345, before[1], before[2])
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_the_consumers_bootstrap_from_every_broker_listed_with_their_credentials() -> None:
    # FastStream takes a string as one server: "a:1,b:2" would be a host named "a:1,b".
    settings = Settings(
        kafka_bootstrap="127.0.0.1:29092, 127.0.0.1:29094,127.0.0.1:29096",
        kafka_username="shopflow-prod",
        kafka_password="s3cret",
    )
    builder = build_broker(settings, kafka_connection(settings)).config.broker_config.builder

    assert isinstance(builder, functools.partial)
    assert builder.keywords["bootstrap_servers"] == [
        "127.0.0.1:29092",
        "127.0.0.1:29094",
        "127.0.0.1:29096",
    ]
    assert builder.keywords["security_protocol"] == "SASL_PLAINTEXT"
    assert builder.keywords["sasl_mechanism"] == "SCRAM-SHA-512"
    assert builder.keywords["sasl_plain_username"] == "shopflow-prod"
    assert builder.keywords["sasl_plain_password"] == "s3cret"


@pytest.mark.parametrize(
    ("consumers", "command_topics", "sales"),
    [
        (Consumers.ALL, True, True),
        (Consumers.COMMANDS, True, False),
        (Consumers.SALES, False, True),
    ],
)
def test_a_worker_runs_the_consumers_it_is_given(
    consumers: Consumers, command_topics: bool, sales: bool
) -> None:
    runtime = Runtime.build(unit_settings(), consumers=consumers)
    subscribers = [s for s in runtime.broker.subscribers if isinstance(s, LogicSubscriber)]
    assert len(subscribers) == len(runtime.broker.subscribers)
    topics = {t for s in subscribers for t in s.topic_names}
    commands = {runtime.topics.name(route.topic) for route in COMMAND_ROUTES}
    assert (commands <= topics) is command_topics
    assert bool(commands & topics) is command_topics
    assert (runtime.topics.name(ORDERS_EVENTS) in topics) is sales
    # The results' producer only where commands are applied.
    assert (runtime.sink is not None) is command_topics


def test_a_process_that_does_not_consume_runs_no_consumer() -> None:
    runtime = Runtime.build(unit_settings(), consume=False, consumers=Consumers.ALL)
    assert list(runtime.broker.subscribers) == []
    assert runtime.sink is None
