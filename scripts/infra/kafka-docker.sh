#!/usr/bin/env bash
# The Kafka of docker-compose.kafka.yml (apache/kafka image): one KRaft node with the access
# control of scripts/infra.sh (scripts/infra/kafka-access.properties: SCRAM-SHA-512, the
# StandardAuthorizer, a SASL_SSL listener), its 'broker' and 'admin' users made at the
# format, the others and the ACLs by `shopflow topics create` (make up-docker runs it).
set -euo pipefail
: "${KAFKA_BROKER_PASSWORD:?from .infra/docker.env}" "${KAFKA_ADMIN_PASSWORD:?from .infra/docker.env}"

data=/var/lib/shopflow-kafka
props=/tmp/server.properties
mkdir -p "$data"
{
    cat <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@localhost:9093
listeners=CLIENT://0.0.0.0:9092,CONTROLLER://localhost:9093,TLS://0.0.0.0:9292
advertised.listeners=CLIENT://127.0.0.1:9092,TLS://127.0.0.1:9292
controller.listener.names=CONTROLLER
inter.broker.listener.name=CLIENT
listener.security.protocol.map=CONTROLLER:SASL_PLAINTEXT,CLIENT:SASL_PLAINTEXT,TLS:SASL_SSL
log.dirs=$data
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
group.coordinator.append.linger.ms=0
group.min.session.timeout.ms=1000
auto.create.topics.enable=false
PROPS
    sed -e "s|@BROKER_PASSWORD@|$KAFKA_BROKER_PASSWORD|g" \
        -e "s|@KEYSTORE@|/shopflow/kafka-broker.pem|g" /shopflow/kafka-access.properties
} >"$props"
chmod 600 "$props"

if [[ ! -f "$data/meta.properties" ]]; then
    /opt/kafka/bin/kafka-storage.sh format -c "$props" \
        -t "$(/opt/kafka/bin/kafka-storage.sh random-uuid)" \
        --add-scram "SCRAM-SHA-512=[name=broker,password=$KAFKA_BROKER_PASSWORD]" \
        --add-scram "SCRAM-SHA-512=[name=admin,password=$KAFKA_ADMIN_PASSWORD]"
fi

# The healthcheck's client properties: the admin, over SCRAM.
cat >/tmp/admin.properties <<PROPS
security.protocol=SASL_PLAINTEXT
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$KAFKA_ADMIN_PASSWORD";
PROPS
chmod 600 /tmp/admin.properties

exec /opt/kafka/bin/kafka-server-start.sh "$props"
