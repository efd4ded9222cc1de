"""The one place a Kafka client's security settings come from: `kafka_connection`.

A process acts as a principal of CONTRACT.md's Access table: the service `shopflow`, the
CLI `shopflow-ops`, provisioning `admin`. SHOPFLOW_KAFKA_USERNAME/PASSWORD name it when
set (a deployment); otherwise the process's own principal is used, with its password
from the local servers' credentials file.
"""

import asyncio

from aiokafka.conn import create_conn
from aiokafka.errors import (
    ClusterAuthorizationFailedError,
    GroupAuthorizationFailedError,
    KafkaConnectionError,
    KafkaError,
    SaslAuthenticationFailed,
    TopicAuthorizationFailedError,
)
from pydantic import SecretStr

from shopflow.contracts.principals import ADMIN, GATEWAY, OPS, SERVICE
from shopflow.local_credentials import MissingCredentials
from shopflow.producers.kafka_connection import KafkaConnection
from shopflow.settings import KafkaSecurityProtocol, Settings, env_name

__all__ = [
    "ADMIN",
    "OPS",
    "SERVICE",
    "KafkaConnection",
    "MissingCredentials",
    "gateway_connection",
    "kafka_connection",
    "why_refused",
]


def kafka_connection(settings: Settings, principal: str = SERVICE) -> KafkaConnection:
    """How a client of this process connects: as SHOPFLOW_KAFKA_USERNAME when it is set,
    else as `principal` with its local password. Raises MissingCredentials, naming what
    to set, when there is no password."""
    protocol = settings.kafka_security_protocol
    cafile = None if settings.kafka_ssl_cafile is None else str(settings.kafka_ssl_cafile)
    if protocol is KafkaSecurityProtocol.PLAINTEXT:
        return KafkaConnection.parse(settings.kafka_bootstrap, security_protocol=protocol.value)
    if settings.kafka_username is not None:
        if settings.kafka_password is None:
            raise MissingCredentials(
                f"{env_name('kafka_username')} is set but {env_name('kafka_password')} is not"
            )
        name, password = settings.kafka_username, settings.kafka_password.get_secret_value()
    else:
        name = principal
        password = settings.local_credentials().require(
            "kafka",
            principal,
            configure=f"{env_name('kafka_username')} and {env_name('kafka_password')}",
        )
    return KafkaConnection.parse(
        settings.kafka_bootstrap,
        security_protocol=protocol.value,
        principal=name,
        password=password,
        ssl_cafile=cafile,
    )


def gateway_connection(settings: Settings) -> KafkaConnection:
    """How the HTTP entry sends commands: as SHOPFLOW_GATEWAY_KAFKA_USERNAME when it is
    set, else as `shopflow-gateway` with its local password. Not the service's principal:
    that one may not write command topics."""
    if settings.gateway_kafka_username is None:
        password = settings.local_credentials().require(
            "kafka",
            GATEWAY,
            configure=f"{env_name('gateway_kafka_username')} and "
            f"{env_name('gateway_kafka_password')}",
        )
        local = settings.model_copy(
            update={"kafka_username": GATEWAY, "kafka_password": SecretStr(password)}
        )
        return kafka_connection(local, GATEWAY)
    if settings.gateway_kafka_password is None:
        raise MissingCredentials(
            f"{env_name('gateway_kafka_username')} is set but "
            f"{env_name('gateway_kafka_password')} is not"
        )
    named = settings.model_copy(
        update={
            "kafka_username": settings.gateway_kafka_username,
            "kafka_password": settings.gateway_kafka_password,
        }
    )
    return kafka_connection(named, GATEWAY)


async def why_refused(kafka: KafkaConnection, error: BaseException) -> str:
    """One sentence saying why Kafka refused `kafka`'s client with `error`.

    aiokafka reports a refused password as "Unable to bootstrap", the same as a broker
    that is not there: then one connection is opened again to each bootstrap server, and
    the first server's own answer (a refused authentication, a refused TCP connection)
    is what the sentence says."""
    who = f"principal {kafka.principal}" if kafka.principal else "a client without credentials"
    if isinstance(error, TopicAuthorizationFailedError):
        return f"{who} may not use topic {_named(error)} (CONTRACT.md, Access)"
    if isinstance(error, ClusterAuthorizationFailedError):
        # An idempotent producer is refused its producer id when its principal may write
        # no topic at all (KIP-679).
        return f"{who} may not write to Kafka at all (CONTRACT.md, Access)"
    if isinstance(error, GroupAuthorizationFailedError):
        return f"{who} may not use consumer group {_named(error)} (CONTRACT.md, Access)"
    if isinstance(error, KafkaConnectionError):
        options = kafka.options()
        del options["bootstrap_servers"]
        for server in kafka.bootstrap_servers:
            host, _, port = server.rpartition(":")
            try:
                connection = await asyncio.wait_for(create_conn(host, int(port), **options), 10)
            except SaslAuthenticationFailed:
                return f"Kafka at {server} refused the credentials of {who}"
            except (OSError, TimeoutError, KafkaError) as failure:
                return f"cannot reach Kafka at {server}: {_said(failure)}"
            else:
                connection.close()
    return f"Kafka refused {who}: {_said(error)}"


def _named(error: KafkaError) -> str:
    # aiokafka puts the topic or group name in the error's arguments.
    return ", ".join(str(arg) for arg in error.args) or "(unnamed)"


def _said(error: BaseException) -> str:
    return " ".join(str(error).split())[:200] or type(error).__name__
