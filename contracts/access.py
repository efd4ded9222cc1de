"""CONTRACT.md's Access table as data: what each Kafka principal may do, made from the
topic registry (a command topic names its writer in its route), so that a new topic
gets its rights where it is declared. `shopflow topics create` applies it to the brokers
(shopflow.ops.access); the broker's StandardAuthorizer denies everything else."""

from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from shopflow.contracts.principals import GATEWAY, OPS, READER, SERVICE
from shopflow.contracts.topics import COMMAND_ROUTES, DEAD_LETTERS, EVENT_TOPICS, Topics


class Operation(StrEnum):
    READ = "read"  # consume (a topic), join (a group); implies describe
    WRITE = "write"  # produce; implies describe
    DESCRIBE = "describe"
    DESCRIBE_CONFIGS = "describe_configs"


class Resource(StrEnum):
    TOPIC = "topic"
    GROUP = "group"
    CLUSTER = "cluster"


CLUSTER_NAME: Final = "kafka-cluster"  # Kafka's name for the one cluster resource
ANY_GROUP: Final = "*"

# Consumer groups by prefix: a principal may use every group whose id starts with it.
GROUP_PREFIXES: Final = {SERVICE: "shopflow", READER: "shop-reader", OPS: "shopflow-ops"}


@dataclass(frozen=True, order=True)
class Grant:
    """One ALLOW rule: `principal` may do `operation` on `resource` `name` (a name
    prefix when `prefixed`)."""

    principal: str
    resource: Resource
    name: str
    operation: Operation
    prefixed: bool = False


def _topic_grants(principal: str, operation: Operation, names: list[str]) -> list[Grant]:
    return [Grant(principal, Resource.TOPIC, name, operation) for name in names]


def topic_grants(topics: Topics) -> list[Grant]:
    """The rules on the topics as deployed (behind `topics`' prefix)."""
    commands = [topics.name(r.topic) for r in COMMAND_ROUTES]
    results = [topics.name(t) for t in EVENT_TOPICS]
    dead_letters = topics.name(DEAD_LETTERS)
    grants: list[Grant] = []
    # The service: reads commands and results (the top-products aggregator reads the
    # order events); writes results and dead letters; describes its topics' configs
    # (the dead letters are sized to the topic's max.message.bytes).
    grants += _topic_grants(SERVICE, Operation.READ, commands + results)
    grants += _topic_grants(SERVICE, Operation.WRITE, [*results, dead_letters])
    grants += _topic_grants(
        SERVICE, Operation.DESCRIBE_CONFIGS, [*commands, *results, dead_letters]
    )
    for route in COMMAND_ROUTES:
        grants.append(
            Grant(route.writer, Resource.TOPIC, topics.name(route.topic), Operation.WRITE)
        )
        if route.over_http:
            grants.append(Grant(GATEWAY, Resource.TOPIC, topics.name(route.topic), Operation.WRITE))
    grants += _topic_grants(READER, Operation.READ, results)
    grants += _topic_grants(OPS, Operation.READ, [dead_letters, *results])
    grants += _topic_grants(OPS, Operation.WRITE, commands)
    return sorted(grants)


def group_grants() -> list[Grant]:
    """The rules on consumer groups and the cluster: the same for every topic prefix."""
    grants = [
        Grant(principal, Resource.GROUP, prefix, Operation.READ, prefixed=True)
        for principal, prefix in GROUP_PREFIXES.items()
    ]
    # `shopflow lag` reads every group's committed offsets.
    grants.append(Grant(OPS, Resource.GROUP, ANY_GROUP, Operation.DESCRIBE))
    # A worker refuses to start on a session timeout the brokers would refuse: it reads
    # their group.min/max.session.timeout.ms (shopflow.kafka_admin).
    grants.append(Grant(SERVICE, Resource.CLUSTER, CLUSTER_NAME, Operation.DESCRIBE_CONFIGS))
    return sorted(grants)


def principals() -> list[str]:
    """Every principal the table names (the local servers make a SCRAM user for each)."""
    named = {g.principal for g in topic_grants(Topics()) + group_grants()}
    return sorted(named)
