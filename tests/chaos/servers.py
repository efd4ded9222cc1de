"""The servers of the chaos runs: an instance of scripts/infra.sh of their own (a state
dir under .infra/chaos and ports of their own), so that failing them never disturbs the
servers of `make up` and the other tests. Each fault starts, stops or kills one of them
through the script, as an operator would."""

import asyncio
import os
from dataclasses import dataclass, field
from pathlib import Path

from shopflow.settings import Settings

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
    log: list[str] = field(default_factory=list, compare=False)

    @property
    def bootstrap(self) -> str:
        return ",".join(f"127.0.0.1:{self.kafka_port + 2 * i}" for i in range(self.brokers))

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "SHOPFLOW_INFRA_DIR": str(self.state_dir),
            "SHOPFLOW_KAFKA_PORT": str(self.kafka_port),
            "SHOPFLOW_KAFKA_CONTROLLER_PORT": str(self.kafka_controller_port),
            "SHOPFLOW_PG_PORT": str(self.pg_port),
            "SHOPFLOW_REDIS_PORT": str(self.redis_port),
            "SHOPFLOW_KAFKA_BROKERS": str(self.brokers),
        }

    def settings(self, label: str, **overrides: object) -> Settings:
        """Default settings pointed at these servers, behind a fresh topic prefix,
        consumer group and Redis namespace."""
        base = Settings()
        database = f"@127.0.0.1:{self.pg_port}/"
        return base.model_copy(
            update={
                "kafka_bootstrap": self.bootstrap,
                "database_url": base.database_url.replace("@127.0.0.1:5432/", database),
                "migration_database_url": base.migration_database_url.replace(
                    "@127.0.0.1:5432/", database
                ),
                "redis_url": f"redis://127.0.0.1:{self.redis_port}/0",
                "topic_prefix": f"{label}.",
                "consumer_group": label,
                "redis_key_prefix": f"{label}:top",
                "replication_factor": min(self.brokers, 3),
                **overrides,
            }
        )

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
