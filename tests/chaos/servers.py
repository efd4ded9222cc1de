"""The servers of the chaos runs: an instance of scripts/infra.sh of their own (a state
dir under .infra/chaos and ports of their own), so that failing them never disturbs the
servers of `make up` and the other tests. Each fault starts, stops or kills one of them
through the script, as an operator would.

Access control is on, as on every server set of scripts/infra.sh: the passwords are those
the script made at the instance's first start, in its own state dir (credentials.json),
which the settings of a run point at (`infra_dir`) and its workers are given
(SHOPFLOW_INFRA_DIR)."""

import asyncio
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import make_url

from shopflow.local_credentials import LocalCredentials
from shopflow.settings import KafkaSecurityProtocol, Settings

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "scripts" / "infra.sh"


@dataclass(frozen=True)
class ChaosServers:
    state_dir: Path = REPO / ".infra" / "chaos"
    kafka_port: int = 19092
    kafka_controller_port: int = 19093
    pg_port: int = 15432
    redis_port: int = 16379
    brokers: int = 1
    pg_nodes: int = 1  # more: a Patroni cluster, node I on pg_port + I-1
    # Redis as a primary, a replica and three Sentinels (on redis_port .. + 4), which the
    # run's settings and processes find the primary through (redis-sentinel-failover).
    redis_sentinel: bool = False
    log: list[str] = field(default_factory=list, compare=False)

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{self.kafka_port + 2 * i}" for i in range(self.brokers))

    @property
    def sentinels(self) -> str | None:
        """The Sentinels' addresses (scripts/infra/redis-sentinel.sh: the redis port + 2,
        + 3 and + 4), or None for one Redis server."""
        if not self.redis_sentinel:
            return None
        return ",".join(f"127.0.0.1:{self.redis_port + i}" for i in (2, 3, 4))

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "SHOPFLOW_INFRA_DIR": str(self.state_dir),
            "SHOPFLOW_KAFKA_PORT": str(self.kafka_port),
            "SHOPFLOW_KAFKA_CONTROLLER_PORT": str(self.kafka_controller_port),
            # The SASL_SSL listener's (the script's default, pinned: an inherited
            # SHOPFLOW_KAFKA_SSL_PORT would be the main servers').
            "SHOPFLOW_KAFKA_SSL_PORT": str(self.kafka_port + 200),
            "SHOPFLOW_PG_PORT": str(self.pg_port),
            "SHOPFLOW_REDIS_PORT": str(self.redis_port),
            "SHOPFLOW_KAFKA_BROKERS": str(self.brokers),
            "SHOPFLOW_PG_NODES": str(self.pg_nodes),
            "SHOPFLOW_REDIS_SENTINEL": "1" if self.redis_sentinel else "0",
        }

    def _url(self, setting: str, port: int) -> str:
        """The default of a URL setting (its user, no password), on `port` of loopback."""
        default = make_url(Settings.model_fields[setting].default)
        return default.set(host="127.0.0.1", port=port).render_as_string(hide_password=False)

    @property
    def pg_ports(self) -> list[int]:
        return [self.pg_port + i for i in range(self.pg_nodes)]

    def _pg_url(self, setting: str, target_session_attrs: str) -> str:
        """A PostgreSQL URL setting's default (its user, no password) on these servers:
        one node's port, or every node of the cluster with the session to pick."""
        if self.pg_nodes == 1:
            return self._url(setting, self.pg_port)
        default = make_url(Settings.model_fields[setting].default)
        hosts = tuple(f"127.0.0.1:{port}" for port in self.pg_ports)
        return (
            default.set(host=None, port=None)
            .update_query_dict({"host": hosts, "target_session_attrs": target_session_attrs})
            .render_as_string(hide_password=False)
        )

    def settings(self, label: str, **overrides: object) -> Settings:
        """Default settings pointed at these servers, behind a fresh topic prefix,
        consumer group (within the service's group prefix, `shopflow`) and Redis namespace
        (within the service's keys, `shopflow:`). The URLs name the default roles and
        users; their passwords, and the Kafka principals', come from this instance's
        credentials file (`infra_dir`), so call it once the servers are up."""
        values: dict[str, Any] = {
            "infra_dir": self.state_dir,
            "kafka_bootstrap": self.bootstrap,
            "kafka_security_protocol": KafkaSecurityProtocol.SASL_PLAINTEXT,
            "kafka_username": None,
            "kafka_password": None,
            "kafka_ssl_cafile": None,
            # Commands and migrations on the primary; the queries on a standby if one is up.
            "database_url": self._pg_url("database_url", "read-write"),
            "query_database_url": self._pg_url("query_database_url", "prefer-standby"),
            "migration_database_url": self._pg_url("migration_database_url", "read-write"),
            "redis_url": self._url("redis_url", self.redis_port),
            "topic_prefix": f"{label}.",
            "consumer_group": f"shopflow-{label}",
            "redis_key_prefix": f"shopflow:{label}:top",
            "replication_factor": min(self.brokers, 3),
            "redis_sentinels": self.sentinels,
        }
        return Settings(**values | overrides)

    def admin_redis_url(self) -> str:
        """Redis as its user `admin` (FLUSHALL and the like; the service's user may not)."""
        password = self.credentials().require("redis", "admin", configure="")
        return f"redis://admin:{password}@127.0.0.1:{self.redis_port}/0"

    def credentials(self) -> LocalCredentials:
        return LocalCredentials.load(self.state_dir)

    async def infra(self, *args: str) -> str:
        """Run scripts/infra.sh with these servers' environment; its output."""
        process = await asyncio.create_subprocess_exec(
            "bash",
            str(INFRA),
            *args,
            env=self.env(),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        out, _ = await process.communicate()
        text = out.decode(errors="replace")
        self.log.append(f"$ infra.sh {' '.join(args)}\n{text}")
        if process.returncode != 0:
            raise RuntimeError(f"scripts/infra.sh {' '.join(args)} failed:\n{text}")
        return text

    async def up(self, *servers: str) -> None:
        await self.infra("up", *servers)

    async def down(self, *servers: str) -> None:
        await self.infra("down", *servers)

    async def kill(self, server: str) -> None:
        await self.infra("kill", server)
