"""Configuration from SHOPFLOW_* environment variables.

docs/configuration.md is made from `Settings` when the docs site is built
(docs/hooks/settings_reference.py): each field's description is its documentation, so it
says what the setting does; a default chosen by measurement links docs/measurements.md,
where the figures are.
"""

from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shopflow.local_credentials import LocalCredentials, with_password, without_password


class FaultInjection(StrEnum):
    """Test-only: crash points for the recovery tests. Never set in production."""

    NONE = "none"
    EXIT_BEFORE_DB_COMMIT = "exit-before-db-commit"  # the batch applied, not committed
    EXIT_AFTER_DB_COMMIT = "exit-after-db-commit"  # committed, nothing published
    EXIT_AFTER_PUBLISH = "exit-after-publish"  # results delivered, offsets not committed


class LogFormat(StrEnum):
    """How log lines are written (shopflow.logs)."""

    AUTO = "auto"  # console on a terminal, JSON otherwise
    JSON = "json"
    CONSOLE = "console"


class TracingMode(StrEnum):
    """Whether a process exports traces (shopflow.tracing)."""

    AUTO = "auto"  # on when OTEL_EXPORTER_OTLP_ENDPOINT (or ..._TRACES_ENDPOINT) is set
    ON = "on"
    OFF = "off"


class KafkaSecurityProtocol(StrEnum):
    """How Kafka clients connect (CONTRACT.md, Access): SASL over plain TCP on loopback,
    SASL over TLS elsewhere. PLAINTEXT exists for a broker of someone else's that checks
    nobody; shopflow's own servers refuse it."""

    SASL_PLAINTEXT = "SASL_PLAINTEXT"
    SASL_SSL = "SASL_SSL"
    PLAINTEXT = "PLAINTEXT"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="SHOPFLOW_", extra="ignore")

    kafka_bootstrap: str = Field(
        default="127.0.0.1:9092",
        description="host:port of one broker or more, comma-separated.",
    )
    kafka_security_protocol: KafkaSecurityProtocol = Field(
        default=KafkaSecurityProtocol.SASL_PLAINTEXT,
        description="SASL_PLAINTEXT on loopback, SASL_SSL elsewhere (with "
        "SHOPFLOW_KAFKA_SSL_CAFILE when the brokers' certificates are not signed by a CA "
        "the system trusts).",
    )
    kafka_username: str | None = Field(
        default=None,
        description="The Kafka principal this process authenticates as (SCRAM-SHA-512). "
        "Unset: the principal of its role (the service `shopflow`, the CLI `shopflow-ops`, "
        "provisioning `admin`), with its password from the local servers' credentials "
        "file (SHOPFLOW_INFRA_DIR/credentials.json).",
    )
    kafka_password: SecretStr | None = Field(
        default=None,
        description="The password of SHOPFLOW_KAFKA_USERNAME (required with it). Masked "
        "wherever the settings are shown.",
    )
    gateway_kafka_username: str | None = Field(
        default=None,
        description="The Kafka principal the HTTP entry of `shopflow serve` sends commands "
        "as (CONTRACT.md, Access: it may write the command topics that can be sent over "
        "HTTP). Unset: `shopflow-gateway`, with its password from the local servers' "
        "credentials file.",
    )
    gateway_kafka_password: SecretStr | None = Field(
        default=None,
        description="The password of SHOPFLOW_GATEWAY_KAFKA_USERNAME (required with it).",
    )
    kafka_ssl_cafile: Path | None = Field(
        default=None,
        description="PEM file of the CA that signed the brokers' certificates (SASL_SSL). "
        "The local servers' CA is SHOPFLOW_INFRA_DIR/kafka-ca.pem.",
    )
    infra_dir: Path = Field(
        default=Path(".infra"),
        description="The local servers' state, where scripts/infra.sh keeps it (it reads "
        "the same variable): credentials.json (mode 0600) and the token signing key are "
        "read from it for whatever credential is not configured.",
    )
    database_url: str = Field(
        default="postgresql+asyncpg://shopflow@127.0.0.1:5432/shopflow",
        description="What the service connects as: a role that may read and write the "
        "tables, and nothing more (it cannot create, alter or drop them). Without a "
        "password in it, the role's password comes from the local credentials file.",
    )
    query_database_url: str = Field(
        default="postgresql+asyncpg://shopflow_reader@127.0.0.1:5432/shopflow",
        description="What the HTTP queries connect as: a role that may only read, so that "
        "a bug on the read side cannot write.",
    )
    migration_database_url: str = Field(
        default="postgresql+asyncpg://shopflow_owner@127.0.0.1:5432/shopflow",
        description="What migrations run as: the owner of the schema. After migrating, it "
        "grants the service's role (the user of SHOPFLOW_DATABASE_URL) and the read-only "
        "one (SHOPFLOW_QUERY_DATABASE_URL's) what they need. The same role in both is "
        "allowed (no grants then), but gives the service every right.",
    )
    redis_url: str = Field(
        default="redis://shopflow@127.0.0.1:6379/0",
        description="Redis, as an ACL user limited to shopflow's keys. Without a password "
        "in it, the user's password comes from the local credentials file. With "
        "SHOPFLOW_REDIS_SENTINELS set, only its user, password and database are used: the "
        "Sentinels say where the server is.",
    )
    redis_sentinels: str | None = Field(
        default=None,
        description="host:port of Redis Sentinels, comma-separated (`scripts/infra.sh`'s "
        "with SHOPFLOW_REDIS_SENTINEL=1: 127.0.0.1:6381,127.0.0.1:6382,127.0.0.1:6383). Set, "
        "every shopflow process asks them where the primary of "
        "SHOPFLOW_REDIS_SENTINEL_SERVICE is, and asks again after losing it, so it follows "
        "a failover: Redis is away while the Sentinels notice the death and promote the "
        "replica (about 3 s with the local set's timings: docs/operating.md#redis-with-"
        "sentinel), and a top-products view built on the old primary is rebuilt. Unset: "
        "the one server of SHOPFLOW_REDIS_URL.",
    )
    redis_sentinel_service: str = Field(
        default="shopflow",
        description="The name the Sentinels monitor the primary under.",
    )
    redis_sentinel_username: str | None = Field(
        default="shopflow",
        description="The Sentinels' user shopflow authenticates to them as (a user that may "
        "ask where the primary is); unset (empty), none: Sentinels that check no user.",
    )
    redis_sentinel_password: SecretStr | None = Field(
        default=None,
        description="The password of SHOPFLOW_REDIS_SENTINEL_USERNAME. Unset: from the "
        "local credentials file (its `sentinel` section), or none if that has none.",
    )

    auth_jwks_url: str | None = Field(
        default=None,
        description="Where the identity provider publishes its token keys (JWKS). Fetched "
        "at start and every SHOPFLOW_AUTH_KEYS_REFRESH_S, never on a request's path.",
    )
    auth_public_key_file: Path | None = Field(
        default=None,
        description="A PEM file of the public keys that sign tokens (one or more; reread "
        "when it changes). Neither this nor a JWKS URL: the local servers' key, "
        "SHOPFLOW_INFRA_DIR/token-signing-key.pub.pem; none of the three: `serve` "
        "refuses to start.",
    )
    auth_issuer: str = Field(default="shopflow-local", description="The tokens' `iss`.")
    auth_audience: str = Field(default="shopflow", description="The tokens' `aud`.")
    auth_keys_refresh_s: float = Field(
        default=300.0,
        gt=0,
        description="How often the token keys are fetched again (JWKS) or the key file's "
        "modification time looked at.",
    )
    http_host: str = Field(
        default="127.0.0.1",
        description="The address `shopflow serve` listens on, and a worker's metrics and "
        "health port too.",
    )
    http_port: int = Field(
        default=8000,
        description="The port of `shopflow serve`: its queries, health and metrics. Several "
        "serve processes on one machine may listen on it together (SO_REUSEPORT; only "
        "processes of the same user can), the kernel spreading connections across them.",
    )
    http_process_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="A port of this `shopflow serve` process alone, beside SHOPFLOW_HTTP_PORT "
        "(the same app, on SHOPFLOW_HTTP_HOST): with several processes sharing "
        "SHOPFLOW_HTTP_PORT, a GET /metrics there reaches whichever process the kernel "
        "picks, so each is scraped, and its health asked, on a port of its own. 0: none.",
    )
    http_keep_alive_s: int = Field(
        default=75,
        ge=1,
        description="How long an idle keep-alive connection to `shopflow serve` (and a "
        "worker's HTTP port) stays open. Longer than any client's or load balancer's idle "
        "expiry (httpx: 5 s, nginx: 60 s, AWS ALB: 60 s): if the server closes first, a "
        "request sent on the closing connection is lost with no answer.",
    )
    http_write_rate_limit: str = Field(
        default="20/second;600/minute",
        description="How many commands over HTTP one caller (a token's `sub`) may send, "
        "in the `limits` library's notation, several separated by `;`, each applying; "
        "counted in Redis, so shared by every `shopflow serve` process. Over it: 429 "
        "`rate_limited` with `Retry-After`.",
    )
    worker_http_port: int = Field(
        default=8081,
        ge=0,
        le=65535,
        description="Where `shopflow worker` serves GET /metrics, /health/live and "
        "/health/ready (on SHOPFLOW_HTTP_HOST). Several workers on one machine each need "
        "a port of their own: a worker whose port is taken refuses to start. 0 takes a "
        "free port, logged at start (the tests' and benchmarks' workers do).",
    )

    topic_prefix: str = Field(
        default="", description="Put in front of every topic name (isolated test runs)."
    )
    consumer_group: str = Field(
        default="shopflow",
        description="Consumer groups are `<this>.<command topic>`, and `<this>.top-products` "
        "for the sales aggregator.",
    )
    command_partitions: int = Field(
        default=12,
        ge=1,
        description="Partitions of each command topic `shopflow topics create` makes. At "
        "start the service refuses a topic with fewer; more is fine. The partitions bound "
        "how many consumers share a topic's work.",
    )
    event_partitions: int = Field(
        default=12,
        ge=1,
        description="Partitions of each result topic `shopflow topics create` makes; "
        "checked at start as the command topics are.",
    )
    dead_letter_partitions: int = Field(
        default=3,
        ge=1,
        description="Partitions of the dead-letter topic `shopflow topics create` makes; "
        "checked at start as the command topics are.",
    )
    replication_factor: int = Field(
        default=1,
        ge=1,
        description="Replicas of each topic shopflow creates. With 3 or more the topics get "
        "min.insync.replicas=2 (with 2, 1): the producers write with acks=all, so an "
        "acknowledged command or result is on 2 brokers, and one broker may be down. "
        "Tested: docs/measurements.md#chaos (cluster-leader-kill).",
    )

    producer_max_request_size: int = Field(
        default=1024 * 1024,
        ge=400_000,
        description="The producer's max_request_size; dead letters are sized to fit it.",
    )
    dead_letter_topic_max_message_bytes: int = Field(
        default=1024 * 1024 + 12,
        ge=400_000,
        description="max.message.bytes of the dead-letter topic when shopflow creates it "
        "(the broker's default); dead letters are sized to what the topic really has.",
    )

    batch_max_records: int = Field(
        default=500,
        ge=1,
        description="The most records a consumer takes in one batch. A batch is one "
        "PostgreSQL transaction.",
    )
    consumers_per_topic: int = Field(
        default=1,
        ge=1,
        description="Kafka consumers per command topic in one worker process, in one group: "
        "each takes its share of the partitions, so one's batch is applied while another's "
        "results are being acknowledged (per-partition order holds: a partition has one "
        "consumer). More than one makes each start slower: every consumer that joins its "
        "group makes the group rebalance. Measured: docs/measurements.md#consumers-per-topic.",
    )
    batch_timeout_ms: int = Field(
        default=100,
        ge=1,
        description="How long a consumer's fetch waits for records when none have arrived "
        "(FastStream's batch_timeout_ms).",
    )
    batch_linger_ms: int = Field(
        default=2,
        ge=0,
        description="How long a batch that is not full waits for the records the broker "
        "got meanwhile before it is applied. Consuming a batch's records sets off the next "
        "fetch: without the wait, the records it brings would wait for the whole next "
        "batch. 0 turns it off. Chosen by measurement: docs/measurements.md#batch-linger.",
    )
    session_timeout_ms: int = Field(
        default=1_500,
        ge=1000,
        description="How long a consumer's group waits without a heartbeat before it hands "
        "the consumer's partitions to the others: a killed worker's commands wait this and "
        "some more, and a worker whose event loop pauses longer loses its partitions (a "
        "rebalance; nothing lost or applied twice). The brokers' "
        "group.min.session.timeout.ms must allow it (scripts/infra.sh and "
        "docker-compose.kafka.yml set it low enough; a stock Kafka does not): a worker "
        "refuses to start when they do not. Chosen by measurement for a failover within "
        "3 s: docs/measurements.md#failover.",
    )
    heartbeat_interval_ms: int = Field(
        default=500,
        ge=100,
        description="How often each consumer heartbeats; a rebalance (a consumer joining or "
        "leaving) completes within about one interval.",
    )
    graceful_timeout_s: float = Field(
        default=30.0,
        description="How long a stop (Ctrl-C, SIGTERM) waits for a batch in flight before "
        "FastStream cancels it; the cancelled batch is redelivered to the next owner. A "
        "worker whose stop outlasts it by 5 s logs, at ERROR, where each task still waits.",
    )
    gc_threshold: int = Field(
        default=50_000,
        ge=0,
        description="Objects a worker or server process allocates between two collections "
        "of Python's youngest generation (0 keeps Python's default). What the process "
        "holds once started is frozen out of collections too. Each batch allocates many "
        "short-lived objects, which Python's default would collect over and over. Chosen "
        "by measurement: docs/measurements.md#gc-threshold.",
    )
    db_pool_size: int = Field(
        default=32,
        ge=1,
        description="PostgreSQL connections kept per process, for the service's role and "
        "again for the queries' role (as many again may be opened under load).",
    )
    db_connect_timeout_s: float = Field(
        default=5.0,
        gt=0,
        description="How long opening a PostgreSQL connection may take on one host; a "
        "multi-host URL's hosts each get this long in turn. Hosts that are down refuse at "
        "once; this bounds one that does not answer at all (cut off by a partition), "
        "after which the next host is tried.",
    )
    db_outage_wait_s: float = Field(
        default=30.0,
        ge=0,
        description="How long a batch whose transaction fails for the database's sake (a "
        "lost connection, a restart, no writable primary while a replicated PostgreSQL "
        "fails over, a node that became a standby) is tried again, pausing up to 0.5 s "
        "between tries, before its commands are answered `temporarily_unavailable`. "
        "Chosen above the longest outage measured: a failover under Patroni takes 6-9 s "
        "by hand, a restart 2-4 s (docs/measurements.md#postgres-failover).",
    )

    redis_key_prefix: str = Field(
        default="shopflow:top", description="Namespace of the top-products view in Redis."
    )
    top_cache_ms: int = Field(
        default=500,
        ge=0,
        le=1000,
        description="How long each serve process holds a computed top-5 answer, from when "
        "its computation began (one computation at a time). At most 1 s: the contract "
        "promises a placed order in the answer within 2 s, and the answer tells caches "
        "they may keep it a second more (Cache-Control: max-age=1).",
    )

    ledger_retention_days: int = Field(
        default=7,
        ge=7,
        description="How long a spent command_id is remembered: `shopflow purge-ledger` "
        "forgets older ones (run it daily). The contract promises at least 7 days.",
    )
    log_format: LogFormat = Field(
        default=LogFormat.AUTO,
        description="How every shopflow process writes its log to stderr: `json` (one "
        "object a line: timestamp, level, logger, event, the event's fields, any "
        "exception as a string), `console` (structlog's readable lines), or `auto`: "
        "console when stderr is a terminal, JSON when it is not (a supervisor, a pipe).",
    )
    tracing: TracingMode = Field(
        default=TracingMode.AUTO,
        description="OpenTelemetry traces of `shopflow serve` and `shopflow worker`, "
        "exported over OTLP (HTTP/protobuf) to where the standard OTEL_EXPORTER_OTLP_* "
        "variables say (OTEL_SERVICE_NAME, OTEL_TRACES_SAMPLER and the others apply too): "
        "`on`, `off`, or `auto`: on when OTEL_EXPORTER_OTLP_ENDPOINT or "
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT is set. Off, nothing of it runs: no tracer "
        "provider, no tracing middleware, no span made anywhere.",
    )
    fault_injection: FaultInjection = Field(
        default=FaultInjection.NONE,
        description="Test-only: a worker exits abruptly the first time a batch reaches "
        "this point (before its database commit, after it, or after its results were "
        "delivered and before its offsets were committed), for the crash-recovery tests and "
        "`make chaos`. Never set it in production.",
    )

    @model_validator(mode="after")
    def _local_passwords(self) -> "Settings":
        """The URLs that name a user and no password get the local servers' password for
        it (CONTRACT.md, Configuration); a URL with a password is left as it is."""
        credentials = self.local_credentials()
        for name in ("database_url", "query_database_url", "migration_database_url"):
            # Into __dict__: a password filled in here does not make the setting one that
            # was set (`shopflow config` reports where each setting came from).
            self.__dict__[name] = with_password(getattr(self, name), credentials, "postgres")
        self.__dict__["redis_url"] = with_password(self.redis_url, credentials, "redis")
        if self.redis_sentinel_password is None and self.redis_sentinel_username:
            password = credentials.get("sentinel", self.redis_sentinel_username)
            if password is not None:
                self.__dict__["redis_sentinel_password"] = SecretStr(password)
        return self

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        # The URLs' passwords are not shown (a test failure prints the settings, a log
        # line may); SHOPFLOW_KAFKA_PASSWORD is a SecretStr, masked by pydantic itself.
        for name, value in super().__repr_args__():
            yield name, without_password(value) if isinstance(value, str) else value

    def local_credentials(self) -> LocalCredentials:
        return LocalCredentials.load(self.infra_dir)

    def command_group(self, topic: str) -> str:
        """The consumer group of a command topic (its deployed name): one group per
        topic, so a rebalance of one topic does not pause the others."""
        return f"{self.consumer_group}.{topic}"

    @property
    def sales_aggregator_group(self) -> str:
        return f"{self.consumer_group}.top-products"


def env_name(setting: str) -> str:
    """The environment variable of a setting: `env_name("command_partitions")` is
    SHOPFLOW_COMMAND_PARTITIONS."""
    return f"{Settings.model_config.get('env_prefix', '')}{setting}".upper()
