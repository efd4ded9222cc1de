"""The composition root builds without a running event loop, as `shopflow serve` does it
(uvicorn starts the loop only after the app exists); nothing connects before start. A
process's garbage collector is tuned as configured."""

import functools
import gc

from fastapi import FastAPI

from shopflow.app import create_app
from shopflow.cli.processes import _tune_garbage_collector
from shopflow.runtime import build_broker
from shopflow.settings import Settings


def test_the_http_app_with_its_consumers_builds_before_the_loop_runs() -> None:
    app = create_app(Settings(), consume=True)

    assert isinstance(app, FastAPI)
    assert any(getattr(route, "path", None) == "/products/top" for route in app.routes)


def test_a_process_collects_young_objects_as_configured_with_what_it_holds_frozen() -> None:
    before = gc.get_threshold()
    try:
        _tune_garbage_collector(Settings(gc_threshold=12_345))
        assert gc.get_threshold() == (12_345, before[1], before[2])
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
        gc.set_threshold(*before)


def test_the_consumers_bootstrap_from_every_broker_listed() -> None:
    # FastStream takes a string as one server: "a:1,b:2" would be a host named "a:1,b".
    settings = Settings(kafka_bootstrap="127.0.0.1:29092, 127.0.0.1:29094,127.0.0.1:29096")
    builder = build_broker(settings).config.broker_config.builder

    assert isinstance(builder, functools.partial)
    assert builder.keywords["bootstrap_servers"] == [
        "127.0.0.1:29092",
        "127.0.0.1:29094",
        "127.0.0.1:29096",
    ]
