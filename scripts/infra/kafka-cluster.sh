# shellcheck shell=bash
# A multi-broker Kafka for the chaos suite (tests/chaos/cluster.py), sourced by kafka.sh's
# kafka_mode only when `up` asks for a node count other than 1 (--brokers N, else
# SHOPFLOW_KAFKA_BROKERS), the data was formatted for one (kafka/brokers), or down or kill
# names a node (kafka-I). It redefines kafka.sh's kafka_voters, kafka_replication_properties,
# kafka_format_if_needed, kafka_launch, kafka_wait_ready, kafka_down, kafka_kill and
# kafka_status for N nodes, and runs kafka.sh's per-node functions on each (kafka_node).
#
# N (1 to 9) combined broker+controller nodes with a static quorum: node I has node.id=I,
# listens on SHOPFLOW_KAFKA_PORT + 2(I-1), its controller on SHOPFLOW_KAFKA_CONTROLLER_PORT +
# 2(I-1), SASL_SSL on SHOPFLOW_KAFKA_SSL_PORT + 2(I-1), and keeps its files in kafka/node-I/
# (a single node keeps kafka.sh's layout: kafka/data, kafka/kafka.pid ...). With 3+ nodes
# internal and new topics get 3 replicas and min.insync.replicas=2 (2 nodes: 2 and 1). Ready
# means every node answers and sees all N brokers. The count is recorded when Kafka is
# formatted (kafka/brokers): down, status, kill and `up` without a count use it; `up` with
# another count fails until `reset`.

KAFKA_NODES=1     # the node count this run acts on (kafka_resolve_nodes)
KAFKA_STARTED=()  # the nodes kafka_launch started (the others were already running)
KAFKA_TARGETS=()  # the nodes down and kill act on (kafka_pick_targets)

# Sets the NODE_* variables (kafka_set_node) for node $1 of the KAFKA_NODES-node cluster:
# node I lives in $KAFKA_ROOT/node-I and listens 2*(I-1) ports above node 1. One node is
# kafka.sh's.
kafka_node() {
    if ((KAFKA_NODES == 1)); then
        kafka_single_node
        return 0
    fi
    kafka_set_node "$1" "$KAFKA_ROOT/node-$1" "kafka node $1" "Kafka node $1" \
        "kafka $KAFKA_VERSION node $1/$KAFKA_NODES" $((2 * ($1 - 1)))
}

# Sets KAFKA_RECORDED to the node count Kafka's data was formatted with (empty when there
# is no data). An unreadable record stops `up`; the other commands then go by the node
# dirs present, so that `down` and `reset` still work.
KAFKA_RECORDED=""
kafka_read_recorded() {
    local cmd="$1" n dir
    KAFKA_RECORDED=""
    if [[ -f "$KAFKA_COUNT_FILE" ]]; then
        n="$(tr -dc '0-9' <"$KAFKA_COUNT_FILE")"
        if ! valid_node_count "$n"; then
            [[ "$cmd" != "up" ]] ||
                die "$KAFKA_COUNT_FILE does not hold a node count from 1 to $KAFKA_MAX_NODES: run scripts/infra.sh reset (it deletes the local data)"
            n=1
            for dir in "$KAFKA_ROOT"/node-*/; do
                dir="${dir%/}"
                dir="${dir##*/node-}"
                if valid_node_count "$dir" && ((dir > n)); then
                    n="$dir"
                fi
            done
        fi
        KAFKA_RECORDED="$n"
    elif [[ -f "$KAFKA_ROOT/data/meta.properties" ]]; then
        KAFKA_RECORDED=1 # formatted before the count was recorded: always a single node
    fi
}

# Sets KAFKA_NODES: `up` takes --brokers, else SHOPFLOW_KAFKA_BROKERS, else the recorded
# count, else 1; the other commands act on the recorded count.
kafka_resolve_nodes() {
    local cmd="$1" recorded requested=""
    kafka_read_recorded "$cmd"
    recorded="$KAFKA_RECORDED"
    if [[ "$cmd" == "up" ]]; then
        if [[ -n "$BROKERS_FLAG" ]]; then
            valid_node_count "$BROKERS_FLAG" ||
                die "--brokers takes a node count from 1 to $KAFKA_MAX_NODES, got '$BROKERS_FLAG'"
            requested="$BROKERS_FLAG"
        elif [[ -n "${SHOPFLOW_KAFKA_BROKERS:-}" ]]; then
            valid_node_count "$SHOPFLOW_KAFKA_BROKERS" ||
                die "SHOPFLOW_KAFKA_BROKERS must be a node count from 1 to $KAFKA_MAX_NODES, got '$SHOPFLOW_KAFKA_BROKERS'"
            requested="$SHOPFLOW_KAFKA_BROKERS"
        fi
        if [[ -n "$recorded" && -n "$requested" && "$requested" != "$recorded" ]]; then
            die "Kafka's data in $KAFKA_ROOT was formatted for $recorded node(s), not $requested: run scripts/infra.sh reset first (it stops everything and deletes the local data)"
        fi
    fi
    KAFKA_NODES="${requested:-${recorded:-1}}"
    local i p seen=" "
    for ((i = 1; i <= KAFKA_NODES; i++)); do
        kafka_node "$i"
        for p in "$NODE_PORT" "$NODE_CONTROLLER_PORT" "$NODE_SSL_PORT"; do
            ((p <= 65535)) ||
                die "$NODE_NAME would listen on port $p, above 65535: lower SHOPFLOW_KAFKA_PORT and SHOPFLOW_KAFKA_CONTROLLER_PORT"
            [[ "$seen" != *" $p "* ]] ||
                die "$KAFKA_NODES Kafka node(s) would use port $p twice (node I listens on SHOPFLOW_KAFKA_PORT and SHOPFLOW_KAFKA_CONTROLLER_PORT plus 2*(I-1)): keep the two an odd distance apart"
            seen+="$p "
        done
    done
}

# Sets KAFKA_TARGETS: the nodes named as kafka-I, else every node.
kafka_pick_targets() {
    local i
    KAFKA_TARGETS=()
    if ((${#KAFKA_PICKED[@]} == 0)); then
        for ((i = 1; i <= KAFKA_NODES; i++)); do
            KAFKA_TARGETS+=("$i")
        done
        return 0
    fi
    for i in "${KAFKA_PICKED[@]}"; do
        ((i <= KAFKA_NODES)) || die "there is no kafka-$i: the Kafka cluster has $KAFKA_NODES node(s)"
        [[ " ${KAFKA_TARGETS[*]} " == *" $i "* ]] || KAFKA_TARGETS+=("$i")
    done
}

# Every node's address on the listener whose node 1 port is BASE (node I: BASE + 2(I-1)),
# comma-separated; with "ids", each prefixed "I@" as controller.quorum.voters wants.
#   kafka_addresses "$KAFKA_CONTROLLER_PORT" ids  ->  1@127.0.0.1:9093,2@127.0.0.1:9095,...
#   kafka_addresses "$KAFKA_PORT"                 ->  127.0.0.1:9092,127.0.0.1:9094,...
kafka_addresses() {
    local base="$1" ids="${2:-}" i list=""
    for ((i = 1; i <= KAFKA_NODES; i++)); do
        list+="${list:+,}${ids:+$i@}127.0.0.1:$((base + 2 * (i - 1)))"
    done
    echo "$list"
}

kafka_voters() {
    kafka_addresses "$KAFKA_CONTROLLER_PORT" ids
}

kafka_replication_properties() {
    local rf=2 isr=1
    if ((KAFKA_NODES >= 3)); then
        rf=3
        isr=2
    fi
    cat <<EOF
# $KAFKA_NODES nodes: internal and new topics get $rf replicas; acks=all writes need $isr in sync.
offsets.topic.replication.factor=$rf
transaction.state.log.replication.factor=$rf
transaction.state.log.min.isr=$isr
share.coordinator.state.topic.replication.factor=$rf
share.coordinator.state.topic.min.isr=$isr
default.replication.factor=$rf
min.insync.replicas=$isr
# A broker that stops heartbeating is fenced (and leaves every ISR, so acks=all writes go
# on) after this, not Kafka's 9 s: the stall a dead broker costs (tests/chaos, cluster).
broker.heartbeat.interval.ms=500
broker.session.timeout.ms=3000
# Until then every write to __consumer_offsets waits for the dead broker, and so does the
# answer to every group request there, heartbeats too (the group coordinator answers none
# while a write is pending, nor reads the next request of a connection before answering
# the one before): with Kafka's 5 s the consumers' 1.5 s sessions all expired and every
# group rebalanced after each kill. Answered "not available" after 500 ms, a waiting
# request lets the next heartbeat in, and the consumers keep their partitions.
offsets.commit.timeout.ms=500
# A killed active controller is replaced after 1 s without its fetch answers (Kafka's
# 2 s; 1 s is the floor, twice the quorum's 500 ms fetch wait), and the new controller
# gives every broker a fresh session: a dead node is fenced that much sooner.
controller.quorum.fetch.timeout.ms=1000
controller.quorum.election.timeout.ms=500
EOF
}

# The cluster id of the first formatted node, if any.
kafka_cluster_id() {
    local i id
    for ((i = 1; i <= KAFKA_NODES; i++)); do
        kafka_node "$i"
        if [[ -f "$NODE_DATA/meta.properties" ]]; then
            id="$(sed -n 's/^cluster\.id=//p' "$NODE_DATA/meta.properties" | head -n1)"
            if [[ -n "$id" ]]; then
                echo "$id"
                return 0
            fi
        fi
    done
}

# Formats, in parallel, the log dirs of the given (stopped) nodes that have none, then
# records the node count. A node that lost its data rejoins under the cluster's id; a new
# cluster gets a new id. Static quorum (controller.quorum.voters): every node is formatted
# alike, with no --standalone / --initial-controllers.
kafka_format_if_needed() {
    local i need=() pids=() cluster_id idx failed=""
    if ! kafka_formatted; then
        # Nothing was ever formatted completely: start fresh, in either layout.
        rm -rf "$KAFKA_ROOT/data" "$KAFKA_ROOT"/node-*/data
    else
        kafka_check_access
    fi
    for i in "$@"; do
        kafka_node "$i"
        [[ -f "$NODE_DATA/meta.properties" ]] || need+=("$i")
    done
    if ((${#need[@]} > 0)); then
        cluster_id="$(kafka_cluster_id)"
        if [[ -z "$cluster_id" ]]; then
            cluster_id="$(kafka_new_cluster_id)"
        fi
        for i in "${need[@]}"; do
            kafka_node "$i"
            rm -rf "$NODE_DATA" # a dir without meta.properties was never formatted completely
            kafka_format_node "$cluster_id" &
            pids+=("$!")
        done
        for idx in "${!pids[@]}"; do
            if ! wait "${pids[idx]}"; then
                failed="${failed:-${need[idx]}}"
            fi
        done
        if [[ -n "$failed" ]]; then
            kafka_node "$failed"
            kafka_format_failed
        fi
    fi
    kafka_record_format "$KAFKA_NODES"
}

# Starts the nodes that are not running, all at once, without waiting until they answer.
kafka_launch() {
    local i to_start=()
    KAFKA_STARTED=()
    for ((i = 1; i <= KAFKA_NODES; i++)); do
        kafka_node "$i"
        if [[ -z "$(kafka_pid)" ]]; then
            rm -f "$NODE_PID_FILE"
            to_start+=("$i")
        fi
    done
    ((${#to_start[@]} > 0)) || return 0
    ensure_command java openjdk-17-jre-headless
    for i in "${to_start[@]}"; do
        kafka_node "$i"
        kafka_check_ports_free
    done
    kafka_fetch_jars
    for i in "${to_start[@]}"; do
        kafka_node "$i"
        kafka_prepare_node
    done
    kafka_format_if_needed "${to_start[@]}"
    for i in "${to_start[@]}"; do
        kafka_node "$i"
        # Several JVMs on two cores: a smaller heap each, and only the C1 compiler. C2's
        # compiling took about 40% of a fresh broker's CPU, and with three of them the
        # machine had no core to spare: a cluster-calm run without it waited 7.7 s at the
        # longest against 40-46 s with it (docs/measurements.md#kafka-jit).
        kafka_start_node -Xmx384m -XX:TieredStopAtLevel=1
    done
    for i in "${to_start[@]}"; do
        kafka_node "$i"
        kafka_await_pid_file
    done
    KAFKA_STARTED=("${to_start[@]}")
}

kafka_wait_ready() {
    local timeout=$((KAFKA_READY_TIMEOUT + 30 * (KAFKA_NODES - 1)))
    local deadline=$((SECONDS + timeout)) i pending state
    while :; do
        pending=0
        for ((i = 1; i <= KAFKA_NODES; i++)); do
            kafka_node "$i"
            kafka_ready && continue
            pending=1
            kafka_check_alive
            if ((SECONDS >= deadline)); then
                tail_log "$NODE_LOG"
                die "$NODE_NAME on 127.0.0.1:$NODE_PORT was not ready within ${timeout}s (see $NODE_LOG)"
            fi
            break
        done
        ((pending)) || break
        sleep 0.25
    done
    for ((i = 1; i <= KAFKA_NODES; i++)); do
        kafka_node "$i"
        state="already running"
        [[ " ${KAFKA_STARTED[*]} " == *" $i "* ]] && state="started"
        kafka_report "$state"
    done
    echo "kafka: $KAFKA_NODES-node cluster ready, bootstrap servers $(kafka_addresses "$KAFKA_PORT")"
}

# Stops the target nodes: SIGTERM to all at once (a controlled shutdown each), then
# SIGKILL to any still running KAFKA_STOP_TIMEOUT seconds later.
kafka_down() {
    local i pid idx pids=() nodes=() deadline left
    kafka_pick_targets
    for i in "${KAFKA_TARGETS[@]}"; do
        kafka_node "$i"
        pid="$(kafka_pid)"
        if [[ -z "$pid" ]]; then
            rm -f "$NODE_PID_FILE"
            echo "$NODE_LABEL: not running"
            continue
        fi
        kill -TERM "$pid" 2>/dev/null || true # already gone: the wait returns at once
        pids+=("$pid")
        nodes+=("$i")
    done
    deadline=$((SECONDS + KAFKA_STOP_TIMEOUT))
    for idx in "${!pids[@]}"; do
        kafka_node "${nodes[idx]}"
        left=$((deadline - SECONDS))
        ((left >= 1)) || left=1
        kafka_await_stop "${pids[idx]}" "$left"
    done
}

# SIGKILLs the target nodes (fault injection) and waits until they are gone.
kafka_kill() {
    local i pid idx pids=() nodes=()
    kafka_pick_targets
    for i in "${KAFKA_TARGETS[@]}"; do
        kafka_node "$i"
        pid="$(kafka_pid)"
        if [[ -z "$pid" ]]; then
            echo "$NODE_LABEL: not running, nothing to kill"
            continue
        fi
        kill -KILL "$pid" 2>/dev/null || true
        pids+=("$pid")
        nodes+=("$i")
    done
    for idx in "${!pids[@]}"; do
        kafka_node "${nodes[idx]}"
        kafka_await_kill "${pids[idx]}"
    done
}

kafka_status() {
    local i ok=0 detail=""
    for ((i = 1; i <= KAFKA_NODES; i++)); do
        kafka_node "$i"
        ((KAFKA_NODES == 1)) || detail="controller :$NODE_CONTROLLER_PORT, "
        kafka_node_status "$detail" || ok=1
    done
    return "$ok"
}
