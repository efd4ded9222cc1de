"""How a Kafka client of shopflow connects: the brokers, and who it is to them.

Every aiokafka client in the code (the FastStream broker, the result producer, the admin,
lag and offsets clients, the client library, the CLI, the tests, the benchmarks and the
chaos driver) is made from a `KafkaConnection`, so the security settings are in one
place. The composition root makes it from the settings (`shopflow.kafka_access`); a
neighbouring team makes its own with its principal.
"""

import ssl
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from faststream.security import BaseSecurity, SASLScram512

SCRAM_SHA_512 = "SCRAM-SHA-512"
SASL_PROTOCOLS = frozenset({"SASL_PLAINTEXT", "SASL_SSL"})
TLS_PROTOCOLS = frozenset({"SASL_SSL", "SSL"})


@dataclass(frozen=True)
class KafkaConnection:
    """Bootstrap servers and credentials. `principal` is None only on PLAINTEXT, for a
    broker of someone else's that checks nobody."""

    bootstrap_servers: tuple[str, ...]
    security_protocol: str = "SASL_PLAINTEXT"
    principal: str | None = None
    password: str | None = field(default=None, repr=False)
    ssl_cafile: str | None = None

    def __post_init__(self) -> None:
        if not self.bootstrap_servers:
            raise ValueError("no Kafka bootstrap servers")
        if self.security_protocol in SASL_PROTOCOLS and (
            self.principal is None or self.password is None
        ):
            raise ValueError(f"{self.security_protocol} needs a principal and its password")

    @classmethod
    def parse(cls, bootstrap: str, **security: Any) -> "KafkaConnection":
        """From a comma-separated `host:port,...` string."""
        servers = tuple(s.strip() for s in bootstrap.split(",") if s.strip())
        return cls(servers, **security)

    @property
    def bootstrap(self) -> str:
        return ",".join(self.bootstrap_servers)

    def as_principal(self, principal: str, password: str) -> "KafkaConnection":
        """The same brokers, as another principal."""
        return KafkaConnection(
            self.bootstrap_servers, self.security_protocol, principal, password, self.ssl_cafile
        )

    def ssl_context(self) -> ssl.SSLContext | None:
        if self.security_protocol not in TLS_PROTOCOLS:
            return None
        # The system's CAs, or only the configured one; hostnames checked either way.
        return ssl.create_default_context(cafile=self.ssl_cafile)

    def options(self) -> dict[str, Any]:
        """aiokafka's keyword arguments for these servers and this identity."""
        options: dict[str, Any] = {
            "bootstrap_servers": list(self.bootstrap_servers),
            "security_protocol": self.security_protocol,
        }
        if self.security_protocol in SASL_PROTOCOLS:
            options.update(
                sasl_mechanism=SCRAM_SHA_512,
                sasl_plain_username=self.principal,
                sasl_plain_password=self.password,
            )
        context = self.ssl_context()
        if context is not None:
            options["ssl_context"] = context
        return options

    def producer(self, **options: Any) -> AIOKafkaProducer:
        return AIOKafkaProducer(**self.options(), **options)

    def consumer(self, *topics: str, **options: Any) -> AIOKafkaConsumer:
        return AIOKafkaConsumer(*topics, **self.options(), **options)

    def admin(self, **options: Any) -> AIOKafkaAdminClient:
        return AIOKafkaAdminClient(**self.options(), **options)

    def faststream_security(self) -> BaseSecurity | None:
        """The same identity for FastStream's KafkaBroker (`security=`)."""
        if self.security_protocol in SASL_PROTOCOLS:
            assert self.principal is not None
            assert self.password is not None
            return SASLScram512(
                self.principal,
                self.password,
                ssl_context=self.ssl_context(),
                use_ssl=self.security_protocol == "SASL_SSL",
            )
        context = self.ssl_context()
        return None if context is None else BaseSecurity(ssl_context=context)
