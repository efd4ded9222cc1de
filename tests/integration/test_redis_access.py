"""Redis's users (CONTRACT.md, Access): the default user is off, so nothing is answered
without AUTH, and the service's user reaches only shopflow's keys and the commands the
top-products view uses."""

import pytest
from redis.asyncio import Redis
from redis.exceptions import AuthenticationError, NoPermissionError, ResponseError
from sqlalchemy import make_url

from shopflow.settings import Settings


def _without_credentials(url: str) -> str:
    parsed = make_url(url)
    return f"redis://{parsed.host}:{parsed.port}/{parsed.database}"


async def test_redis_answers_nothing_without_auth(test_settings: Settings) -> None:
    anonymous = Redis.from_url(_without_credentials(test_settings.redis_url))
    try:
        # NOAUTH: the default user is off.
        with pytest.raises((AuthenticationError, ResponseError), match=r"(?i)auth"):
            await anonymous.ping()
    finally:
        await anonymous.aclose()


async def test_redis_refuses_a_wrong_password(test_settings: Settings) -> None:
    url = make_url(test_settings.redis_url).set(password="not-the-password")
    guessing = Redis.from_url(url.render_as_string(hide_password=False))
    try:
        with pytest.raises(AuthenticationError):
            await guessing.ping()
    finally:
        await guessing.aclose()


@pytest.mark.parametrize(
    "command",
    [
        ("SET", "elsewhere:key", "1"),  # a key outside shopflow's prefix
        ("GET", "sessions:42"),
        ("FLUSHDB",),  # a command the service does not use
        ("CONFIG", "GET", "requirepass"),
        ("KEYS", "*"),
    ],
)
async def test_the_service_user_is_limited_to_its_keys_and_commands(
    test_settings: Settings, command: tuple[str, ...]
) -> None:
    service = Redis.from_url(test_settings.redis_url)
    try:
        assert await service.ping()
        with pytest.raises(NoPermissionError):
            await service.execute_command(*command)  # type: ignore[no-untyped-call]
    finally:
        await service.aclose()
