"""Where shopflow's Redis clients are made from the settings: the service's client (the
top-products view, readiness) and the write rate limits' store (`limits`).

One server (SHOPFLOW_REDIS_URL), or, with SHOPFLOW_REDIS_SENTINELS, the primary the
Sentinels name (redis-py's `redis.asyncio.sentinel.Sentinel`; `limits`'
`async+redis+sentinel` storage, on the same client library): each new connection asks a
Sentinel where the primary of SHOPFLOW_REDIS_SENTINEL_SERVICE is, and the connections to
an old primary are closed when the answer changes, so a failover costs the commands sent
while the Sentinels promote the replica, not a restart. The URL's user, password and
database are the nodes' in both cases; the Sentinels have users of their own
(SHOPFLOW_REDIS_SENTINEL_USERNAME and _PASSWORD).
"""

from dataclasses import dataclass
from typing import Any

from limits.aio.storage import RedisSentinelStorage, RedisStorage
from redis.asyncio import Redis
from redis.asyncio.connection import parse_url
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialBackoff, NoBackoff

from shopflow.settings import Settings

# A Sentinel that does not answer within this is skipped for the next, at once (not tried
# again: redis-py's default retries a command 10 times, up to 1 s apart). A dead one
# refuses at once; this bounds a hung host. Not less: on a loaded 2-core machine an event
# loop late by a second made 0.5 s time out against all three live Sentinels.
SENTINEL_TIMEOUT_S = 2.0


def default_retry() -> Retry:
    """A command on a connection Redis closed (a restart, a failover) is tried again on a
    new one, twice at most, 50 ms then 100 ms later: without it, the first command on each
    pooled connection after a restart failed (tests/integration/test_redis_outage.py).
    With Sentinels, the new connection asks them for the primary again."""
    return Retry(ExponentialBackoff(cap=0.5, base=0.05), 2)


def sentinel_addresses(value: str) -> list[tuple[str, int]]:
    """`host:port,host:port` as (host, port) pairs; a bracketed IPv6 host ("[::1]:26379")
    loses its brackets. Raises ValueError for an entry without a port."""
    addresses = []
    for entry in value.split(","):
        entry = entry.strip()
        if not entry:
            continue
        host, sep, port = entry.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"a Redis Sentinel must be host:port, got {entry!r}")
        addresses.append((host.removeprefix("[").removesuffix("]"), int(port)))
    if not addresses:
        raise ValueError("no Redis Sentinel in SHOPFLOW_REDIS_SENTINELS")
    return addresses


@dataclass(frozen=True)
class RedisTarget:
    """What the settings say of Redis, parsed: the nodes' user, password and database,
    and either one server or the Sentinels (with their own user and password)."""

    username: str | None
    password: str | None
    db: int
    host: str | None  # one server; None with Sentinels
    port: int | None
    sentinels: list[tuple[str, int]] | None
    service: str
    sentinel_username: str | None
    sentinel_password: str | None

    @classmethod
    def of(cls, settings: Settings) -> "RedisTarget":
        parsed: dict[str, Any] = dict(parse_url(settings.redis_url))
        sentinels = (
            sentinel_addresses(settings.redis_sentinels) if settings.redis_sentinels else None
        )
        secret = settings.redis_sentinel_password
        return cls(
            username=parsed.get("username"),
            password=parsed.get("password"),
            db=int(parsed.get("db", 0)),
            host=None if sentinels else parsed.get("host", "localhost"),
            port=None if sentinels else int(parsed.get("port", 6379)),
            sentinels=sentinels,
            service=settings.redis_sentinel_service,
            sentinel_username=settings.redis_sentinel_username or None,
            sentinel_password=None if secret is None else secret.get_secret_value(),
        )

    def node_kwargs(self) -> dict[str, Any]:
        return {"username": self.username, "password": self.password, "db": self.db}

    def sentinel_kwargs(self) -> dict[str, Any]:
        return {
            "username": self.sentinel_username,
            "password": self.sentinel_password,
            "socket_timeout": SENTINEL_TIMEOUT_S,
            "socket_connect_timeout": SENTINEL_TIMEOUT_S,
            "retry": Retry(NoBackoff(), 0),
        }


def redis_client(settings: Settings, *, retry: Retry | None = None) -> Redis:
    """The service's client: to SHOPFLOW_REDIS_URL's server, or to the primary the
    Sentinels name. `retry`: `default_retry()` if None."""
    target = RedisTarget.of(settings)
    retry = retry or default_retry()
    if target.sentinels is None:
        return Redis.from_url(settings.redis_url, retry=retry)
    sentinel = Sentinel(target.sentinels, sentinel_kwargs=target.sentinel_kwargs())
    client: Redis = sentinel.master_for(target.service, retry=retry, **target.node_kwargs())
    return client


def rate_limit_storage(settings: Settings, *, key_prefix: str) -> RedisStorage:
    """The `limits` store of the write rate limits, on the same Redis as `redis_client`
    (redis-py underneath, exceptions wrapped as `limits.errors.StorageError`). With
    Sentinels, every count goes to the primary (never to the replica, which may lag)."""
    target = RedisTarget.of(settings)
    if target.sentinels is None:
        url = settings.redis_url
        return RedisStorage(
            "async+" + url if not url.startswith("async+") else url,
            implementation="redispy",
            key_prefix=key_prefix,
            wrap_exceptions=True,
        )
    locations = ",".join(
        f"[{host}]:{port}" if ":" in host else f"{host}:{port}" for host, port in target.sentinels
    )
    node: dict[str, Any] = target.node_kwargs()
    return RedisSentinelStorage(
        f"async+redis+sentinel://{locations}",
        implementation="redispy",
        key_prefix=key_prefix,
        wrap_exceptions=True,
        service_name=target.service,
        use_replicas=False,
        sentinel_kwargs=target.sentinel_kwargs(),
        **node,
    )
