"""The composition root builds without a running event loop, as `shopflow serve` does it
(uvicorn starts the loop only after the app exists); nothing connects before start."""

from fastapi import FastAPI

from shopflow.app import create_app
from shopflow.settings import Settings


def test_the_http_app_with_its_consumers_builds_before_the_loop_runs() -> None:
    app = create_app(Settings(), consume=True)

    assert isinstance(app, FastAPI)
    assert any(getattr(route, "path", None) == "/products/top" for route in app.routes)
