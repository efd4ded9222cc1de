"""The Redis clients the settings make (shopflow.redis_connection): one server, or the
primary the Sentinels name, with the nodes' and the Sentinels' credentials each where
they belong. Nothing connects: the clients are only built."""

import json
from pathlib import Path
from typing import Any

import pytest
from limits.aio.storage import RedisSentinelStorage, RedisStorage
from redis.asyncio.sentinel import SentinelConnectionPool

from shopflow.redis_connection import (
    SENTINEL_TIMEOUT_S,
    RedisTarget,
    rate_limit_storage,
    redis_client,
    sentinel_addresses,
)
from shopflow.settings import Settings

SENTINELS = "127.0.0.1:26381, 127.0.0.1:26382,[::1]:26383"


@pytest.fixture
def infra_dir(tmp_path: Path) -> Path:
    """A local credentials file as scripts/infra.sh writes it for the Sentinel set."""
    (tmp_path / "credentials.json").write_text(
        json.dumps(
            {
                "redis": {"shopflow": "node-secret", "admin": "admin-secret"},
                "sentinel": {"shopflow": "sentinel-secret", "admin": "x"},
            }
        )
    )
    return tmp_path


def _settings(infra_dir: Path, **values: Any) -> Settings:
    defaults: dict[str, Any] = {
        "infra_dir": infra_dir,
        "redis_url": "redis://shopflow@127.0.0.1:6379/2",
        "redis_sentinels": None,
    }
    return Settings(**(defaults | values))


def test_sentinel_addresses_are_host_port_pairs() -> None:
    assert sentinel_addresses(SENTINELS) == [
        ("127.0.0.1", 26381),
        ("127.0.0.1", 26382),
        ("::1", 26383),
    ]


@pytest.mark.parametrize("value", ["127.0.0.1", "127.0.0.1:", ":26379", "h:70000", "h:x", " , "])
def test_a_sentinel_without_a_port_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="Sentinel"):
        sentinel_addresses(value)


def test_the_sentinels_password_comes_from_the_local_credentials(infra_dir: Path) -> None:
    settings = _settings(infra_dir, redis_sentinels=SENTINELS)
    assert settings.redis_sentinel_password is not None
    assert settings.redis_sentinel_password.get_secret_value() == "sentinel-secret"
    assert "sentinel-secret" not in repr(settings)


def test_a_configured_sentinel_password_wins(infra_dir: Path) -> None:
    settings = _settings(infra_dir, redis_sentinels=SENTINELS, redis_sentinel_password="mine")
    assert settings.redis_sentinel_password is not None
    assert settings.redis_sentinel_password.get_secret_value() == "mine"


def test_no_sentinel_user_no_sentinel_password(infra_dir: Path) -> None:
    settings = _settings(infra_dir, redis_sentinels=SENTINELS, redis_sentinel_username="")
    target = RedisTarget.of(settings)
    assert settings.redis_sentinel_password is None
    assert (target.sentinel_username, target.sentinel_password) == (None, None)


def test_the_environment_names_the_sentinels(
    infra_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SHOPFLOW_REDIS_SENTINELS", SENTINELS)
    monkeypatch.setenv("SHOPFLOW_REDIS_SENTINEL_SERVICE", "shop-primary")
    settings = Settings(infra_dir=infra_dir)
    assert settings.redis_sentinels == SENTINELS
    assert settings.redis_sentinel_service == "shop-primary"


async def test_one_server_without_sentinels(infra_dir: Path) -> None:
    client = redis_client(_settings(infra_dir))
    try:
        kwargs = client.connection_pool.connection_kwargs
        assert not isinstance(client.connection_pool, SentinelConnectionPool)
        assert (kwargs["host"], kwargs["port"], kwargs["db"]) == ("127.0.0.1", 6379, 2)
        assert (kwargs["username"], kwargs["password"]) == ("shopflow", "node-secret")
    finally:
        await client.aclose()


async def test_with_sentinels_the_client_follows_the_primary_they_name(infra_dir: Path) -> None:
    settings = _settings(infra_dir, redis_sentinels=SENTINELS, redis_sentinel_service="shop")
    client = redis_client(settings)
    try:
        pool = client.connection_pool
        assert isinstance(pool, SentinelConnectionPool)
        assert pool.service_name == "shop"
        assert pool.is_master
        # The nodes: the URL's user, password and database; not its host and port.
        kwargs = pool.connection_kwargs
        assert (kwargs["username"], kwargs["password"], kwargs["db"]) == (
            "shopflow",
            "node-secret",
            2,
        )
        assert "host" not in kwargs
        assert kwargs["retry"] is not None
        # The Sentinels: their own user and password, and a short timeout each.
        sentinels = pool.sentinel_manager.sentinels
        assert [
            (
                s.connection_pool.connection_kwargs["host"],
                s.connection_pool.connection_kwargs["port"],
            )
            for s in sentinels
        ] == sentinel_addresses(SENTINELS)
        for sentinel in sentinels:
            sentinel_kwargs = sentinel.connection_pool.connection_kwargs
            assert (sentinel_kwargs["username"], sentinel_kwargs["password"]) == (
                "shopflow",
                "sentinel-secret",
            )
            assert sentinel_kwargs["socket_connect_timeout"] == SENTINEL_TIMEOUT_S
            assert sentinel_kwargs["retry"].get_retries() == 0  # the next one, at once
    finally:
        await client.aclose()


def test_the_rate_limits_count_on_one_server_without_sentinels(infra_dir: Path) -> None:
    storage = rate_limit_storage(_settings(infra_dir), key_prefix="shopflow:ratelimit")
    assert type(storage) is RedisStorage
    kwargs = storage.bridge.storage.connection_pool.connection_kwargs  # type: ignore[attr-defined]
    assert (kwargs["host"], kwargs["port"], kwargs["password"]) == (
        "127.0.0.1",
        6379,
        "node-secret",
    )


def test_with_sentinels_the_rate_limits_count_on_the_primary_only(infra_dir: Path) -> None:
    settings = _settings(infra_dir, redis_sentinels=SENTINELS)
    storage = rate_limit_storage(settings, key_prefix="shopflow:ratelimit")
    assert isinstance(storage, RedisSentinelStorage)
    assert storage.use_replicas is False
    bridge = storage.bridge
    primary = bridge.connection_getter(True)  # type: ignore[attr-defined]
    assert primary is bridge.storage  # type: ignore[attr-defined]
    pool = primary.connection_pool
    assert isinstance(pool, SentinelConnectionPool)
    assert pool.service_name == "shopflow"
    assert (pool.connection_kwargs["username"], pool.connection_kwargs["password"]) == (
        "shopflow",
        "node-secret",
    )
    for sentinel in pool.sentinel_manager.sentinels:
        assert sentinel.connection_pool.connection_kwargs["password"] == "sentinel-secret"
