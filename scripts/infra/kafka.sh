# shellcheck shell=bash
# Kafka for scripts/infra.sh (sourced by it): KRaft nodes (broker and controller each)
# assembled from Maven Central jars, SCRAM users and ACLs (kafka-access.properties).

KAFKA_VERSION="4.1.1"
LOG4J_VERSION="2.24.3"   # must match the Kafka line: 2.24.x for 4.1
KAFKA_PORT="${SHOPFLOW_KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${SHOPFLOW_KAFKA_CONTROLLER_PORT:-9093}"
# SASL_SSL beside SASL_PLAINTEXT, for clients that want TLS (node I: + 2(I-1) as well).
KAFKA_SSL_PORT="${SHOPFLOW_KAFKA_SSL_PORT:-$((KAFKA_PORT + 200))}"
KAFKA_READY_TIMEOUT=60
KAFKA_STOP_TIMEOUT=30

USER_HOME=~   # tilde falls back to the passwd entry when HOME is unset
KAFKA_CACHE="${XDG_CACHE_HOME:-$USER_HOME/.cache}/shopflow/kafka-$KAFKA_VERSION"
KAFKA_LIBS="$KAFKA_CACHE/libs"
KAFKA_MARKER="$KAFKA_CACHE/complete"   # lists every jar of a finished download
KAFKA_ROOT="$INFRA_DIR/kafka"
KAFKA_COUNT_FILE="$KAFKA_ROOT/brokers"  # the node count the cluster was formatted with
KAFKA_ACCESS_FILE="$KAFKA_ROOT/access"  # present when formatted with its SCRAM users
KAFKA_MAX_NODES=9
KAFKA_NODES=1      # the node count this run acts on (kafka_resolve_nodes)
KAFKA_STARTED=()   # the nodes kafka_launch started (the others were already running)

# Sets the NODE_* variables for node $1 of a KAFKA_NODES-node cluster. A single
# node keeps the original layout right under $KAFKA_ROOT; node I of a larger
# cluster lives in $KAFKA_ROOT/node-I and listens 2*(I-1) ports above node 1.
kafka_node() {
    NODE_ID="$1"
    if ((KAFKA_NODES == 1)); then
        NODE_DIR="$KAFKA_ROOT"
        NODE_LABEL="kafka"               # down / kill lines
        NODE_NAME="Kafka"                # errors
        NODE_TAG="kafka $KAFKA_VERSION"  # up / status lines
    else
        NODE_DIR="$KAFKA_ROOT/node-$NODE_ID"
        NODE_LABEL="kafka node $NODE_ID"
        NODE_NAME="Kafka node $NODE_ID"
        NODE_TAG="kafka $KAFKA_VERSION node $NODE_ID/$KAFKA_NODES"
    fi
    NODE_DATA="$NODE_DIR/data"
    NODE_LOGS="$NODE_DIR/logs"
    NODE_LOG="$NODE_LOGS/server.log"
    NODE_OUT="$NODE_LOGS/kafka.out"
    NODE_PROPS="$NODE_DIR/server.properties"
    NODE_PID_FILE="$NODE_DIR/kafka.pid"
    NODE_PORT=$((KAFKA_PORT + 2 * (NODE_ID - 1)))
    NODE_CONTROLLER_PORT=$((KAFKA_CONTROLLER_PORT + 2 * (NODE_ID - 1)))
    NODE_SSL_PORT=$((KAFKA_SSL_PORT + 2 * (NODE_ID - 1)))
}

valid_node_count() {
    [[ "$1" =~ ^[1-9][0-9]*$ ]] && (($1 <= KAFKA_MAX_NODES))
}

# Sets KAFKA_RECORDED to the node count Kafka's data was formatted with (empty
# when there is no data). An unreadable record stops `up`; the other commands
# then go by the node dirs present, so that `down` and `reset` still work.
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

# Sets KAFKA_NODES: `up` takes --brokers, else SHOPFLOW_KAFKA_BROKERS, else the
# recorded count, else 1; the other commands act on the recorded count.
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

kafka_jars_complete() {
    local jar
    [[ -s "$KAFKA_MARKER" && -d "$KAFKA_LIBS" ]] || return 1
    while IFS= read -r jar; do
        [[ -z "$jar" || -s "$KAFKA_LIBS/$jar" ]] || return 1
    done <"$KAFKA_MARKER"
}

kafka_fetch_jars() {
    if kafka_jars_complete; then
        return 0
    fi
    ensure_command mvn maven
    local work="$KAFKA_CACHE/build" log="$KAFKA_CACHE/mvn.log"
    mkdir -p "$KAFKA_CACHE"
    rm -rf "$work" "$KAFKA_LIBS" "$KAFKA_MARKER"
    mkdir -p "$work"
    sed -e "s/@KAFKA_VERSION@/$KAFKA_VERSION/" -e "s/@LOG4J_VERSION@/$LOG4J_VERSION/" \
        "$TEMPLATE_DIR/kafka-pom.xml" >"$work/pom.xml"
    echo "kafka: downloading Kafka $KAFKA_VERSION jars from Maven Central (once) ..."
    if ! mvn -B -q -Dstyle.color=never -f "$work/pom.xml" dependency:copy-dependencies \
        -DincludeScope=runtime -DoutputDirectory="$work/libs" >"$log" 2>&1; then
        die "could not download the Kafka $KAFKA_VERSION jars from Maven Central (see $log)"
    fi
    if [[ ! -s "$work/libs/kafka_2.13-$KAFKA_VERSION.jar" ]]; then
        die "Maven finished but kafka_2.13-$KAFKA_VERSION.jar is missing (see $log)"
    fi
    mv "$work/libs" "$KAFKA_LIBS"
    rm -rf "$work"
    (cd "$KAFKA_LIBS" && ls -1 -- *.jar) >"$KAFKA_MARKER.tmp"
    mv "$KAFKA_MARKER.tmp" "$KAFKA_MARKER"
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

kafka_replication_properties() {
    if ((KAFKA_NODES == 1)); then
        cat <<EOF
# One node: every internal topic has a single replica.
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
EOF
        return 0
    fi
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
EOF
}

# Writes the NODE_* node's server.properties.
kafka_write_properties() {
    local broker_password
    broker_password="$(credential kafka broker)"
    (umask 077 && : >"$NODE_PROPS") # it holds the broker's password
    cat >"$NODE_PROPS" <<EOF
# Written by scripts/infra.sh on every 'up'; edit the script, not this file.
process.roles=broker,controller
node.id=$NODE_ID
controller.quorum.voters=$(kafka_addresses "$KAFKA_CONTROLLER_PORT" ids)
listeners=CLIENT://127.0.0.1:$NODE_PORT,CONTROLLER://127.0.0.1:$NODE_CONTROLLER_PORT,TLS://127.0.0.1:$NODE_SSL_PORT
advertised.listeners=CLIENT://127.0.0.1:$NODE_PORT,TLS://127.0.0.1:$NODE_SSL_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=CLIENT
listener.security.protocol.map=CONTROLLER:SASL_PLAINTEXT,CLIENT:SASL_PLAINTEXT,TLS:SASL_SSL
log.dirs=$NODE_DATA

$(sed -e "s|@BROKER_PASSWORD@|$broker_password|g" -e "s|@KEYSTORE@|$KAFKA_KEYSTORE|g" \
    "$TEMPLATE_DIR/kafka-access.properties")

$(kafka_replication_properties)

# Fast start and fast consumer groups for development and tests.
group.initial.rebalance.delay.ms=0
offsets.topic.num.partitions=1
transaction.state.log.num.partitions=1
log.initial.task.delay.ms=100
# The 128 MiB default is allocated on the heap.
log.cleaner.dedupe.buffer.size=2097152
# Offset commits wait for this linger before being written (default 5 ms in 4.1).
group.coordinator.append.linger.ms=0
# Tests use short session timeouts.
group.min.session.timeout.ms=1000

# Topics are created by provisioning (shopflow topics create), with the partition counts
# the service wants.
auto.create.topics.enable=false
num.partitions=12
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

# Formats, in parallel, the log dirs of the given (stopped) nodes that have none,
# then records the node count. A node that lost its data rejoins under the
# cluster's id; a new cluster gets a new id. Static quorum (controller.quorum.voters):
# every node is formatted alike, with no --standalone / --initial-controllers.
kafka_format_if_needed() {
    local i need=() pids=() cluster_id idx failed=""
    kafka_read_recorded up
    if [[ -z "$KAFKA_RECORDED" ]]; then
        # Nothing was ever formatted completely: start fresh, in either layout.
        rm -rf "$KAFKA_ROOT/data" "$KAFKA_ROOT"/node-*/data
    elif [[ ! -f "$KAFKA_ACCESS_FILE" ]]; then
        die "Kafka's data in $KAFKA_ROOT was formatted before access control (it has no SCRAM users): run scripts/infra.sh reset (it deletes the local data)"
    fi
    for i in "$@"; do
        kafka_node "$i"
        [[ -f "$NODE_DATA/meta.properties" ]] || need+=("$i")
    done
    if ((${#need[@]} > 0)); then
        cluster_id="$(kafka_cluster_id)"
        if [[ -z "$cluster_id" ]]; then
            cluster_id="$(python3 -c '
import base64, uuid
while True:
    s = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    if not s.startswith("-"):
        print(s)
        break
')"
        fi
        local scram=()
        for user in broker admin; do
            scram+=(--add-scram "SCRAM-SHA-512=[name=$user,password=$(credential kafka "$user")]")
        done
        for i in "${need[@]}"; do
            kafka_node "$i"
            # A dir without meta.properties was never formatted completely.
            rm -rf "$NODE_DATA"
            java -Xmx256m -Dlog4j2.configurationFile="$TEMPLATE_DIR/log4j2.properties" \
                -Dkafka.logs.dir="$NODE_LOGS" -cp "$KAFKA_LIBS/*" \
                kafka.tools.StorageTool format -t "$cluster_id" -c "$NODE_PROPS" "${scram[@]}" \
                >>"$NODE_OUT" 2>&1 &
            pids+=("$!")
        done
        for idx in "${!pids[@]}"; do
            if ! wait "${pids[idx]}"; then
                failed="${failed:-${need[idx]}}"
            fi
        done
        if [[ -n "$failed" ]]; then
            kafka_node "$failed"
            tail_log "$NODE_OUT"
            die "could not format the Kafka log dir $NODE_DATA (see $NODE_OUT)"
        fi
    fi
    if [[ "$(cat "$KAFKA_COUNT_FILE" 2>/dev/null)" != "$KAFKA_NODES" ]]; then
        echo "$KAFKA_NODES" >"$KAFKA_COUNT_FILE"
    fi
    [[ -f "$KAFKA_ACCESS_FILE" ]] || echo "SCRAM-SHA-512 users broker, admin" >"$KAFKA_ACCESS_FILE"
}

# The NODE_* node's pid, when that broker runs.
kafka_pid() {
    local pid
    pid="$(read_pid_file "$NODE_PID_FILE")"
    if [[ -n "$pid" ]] && pid_matches "$pid" kafka.Kafka "$NODE_PROPS"; then
        echo "$pid"
    fi
}

# True when the broker on 127.0.0.1:$1 answers an ApiVersions request: a real protocol
# exchange, not just an open port, and the one request a SASL listener answers before
# authentication (this script speaks no SCRAM: it would have to hand-roll it).
kafka_probe() {
    timeout 5 python3 - "$1" <<'PY' 2>/dev/null
import socket, struct, sys
port = int(sys.argv[1])
client = b"infra-check"

def recv_exact(s, n):
    data = b""
    while len(data) < n:
        chunk = s.recv(n - len(data))
        if not chunk:
            sys.exit(1)
        data += chunk
    return data

with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
    # ApiVersions v0: the error code comes first.
    request = struct.pack(">hhih", 18, 0, 7, len(client)) + client
    s.sendall(struct.pack(">i", len(request)) + request)
    (size,) = struct.unpack(">i", recv_exact(s, 4))
    response = recv_exact(s, size)
    if struct.unpack(">i", response[:4])[0] != 7 or struct.unpack(">h", response[4:6])[0] != 0:
        sys.exit(1)
PY
}

# True when the NODE_* node logged its start in this run and answers. A KRaft broker logs
# "Kafka Server started" once the controllers have unfenced it, so when every node has,
# each is a live broker of the cluster.
kafka_ready() {
    [[ -f "$NODE_LOG" ]] && grep -q "Kafka Server started" "$NODE_LOG" && kafka_probe "$NODE_PORT"
}

# Starts the nodes that are not running without waiting; kafka_wait_ready waits.
# Split so that PostgreSQL and Redis start while the JVMs boot, all in parallel.
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
        if port_open "$NODE_PORT"; then
            die "port $NODE_PORT ($NODE_NAME) is already in use by a process this script did not start"
        fi
        if port_open "$NODE_CONTROLLER_PORT"; then
            die "port $NODE_CONTROLLER_PORT ($NODE_NAME controller) is already in use by a process this script did not start"
        fi
        if port_open "$NODE_SSL_PORT"; then
            die "port $NODE_SSL_PORT ($NODE_NAME SASL_SSL) is already in use by a process this script did not start"
        fi
    done
    kafka_fetch_jars
    for i in "${to_start[@]}"; do
        kafka_node "$i"
        make_dir "$NODE_LOGS"
        # One log per run keeps readiness checks about this run (and the file small).
        if [[ -f "$NODE_LOG" ]]; then
            mv "$NODE_LOG" "$NODE_LOG.1"
        fi
        if [[ -f "$NODE_OUT" ]]; then
            mv "$NODE_OUT" "$NODE_OUT.1"
        fi
        kafka_write_properties
    done
    kafka_format_if_needed "${to_start[@]}"
    # Two cores for several JVMs: a smaller heap each.
    local heap="-Xmx512m"
    ((KAFKA_NODES == 1)) || heap="-Xmx384m"
    for i in "${to_start[@]}"; do
        kafka_node "$i"
        # The child writes its own pid before exec'ing java, so the pid file is right
        # whether or not setsid had to fork.
        (
            cd "$NODE_DIR" || exit
            exec 9>&- # the lock fd: the broker must not hold it
            # shellcheck disable=SC2016 # $$ and $1 expand in the inner shell
            exec setsid nohup bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$NODE_PID_FILE" \
                java "$heap" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
                -Dlog4j2.configurationFile="$TEMPLATE_DIR/log4j2.properties" \
                -Dkafka.logs.dir="$NODE_LOGS" \
                -cp "$KAFKA_LIBS/*" kafka.Kafka "$NODE_PROPS" \
                </dev/null >>"$NODE_OUT" 2>&1
        ) &
    done
    local n
    for i in "${to_start[@]}"; do
        kafka_node "$i"
        for ((n = 0; n < 50; n++)); do
            [[ -s "$NODE_PID_FILE" ]] && break
            sleep 0.1
        done
        [[ -s "$NODE_PID_FILE" ]] || die "could not launch the $NODE_NAME JVM (see $NODE_OUT)"
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
            if [[ -z "$(kafka_pid)" ]]; then
                tail_log "$NODE_LOG"
                tail_log "$NODE_OUT"
                die "$NODE_NAME exited during startup (see $NODE_LOG and $NODE_OUT)"
            fi
            if ((SECONDS >= deadline)); then
                tail_log "$NODE_LOG"
                if ((KAFKA_NODES == 1)); then
                    die "Kafka did not answer on 127.0.0.1:$NODE_PORT within ${timeout}s (see $NODE_LOG)"
                fi
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
        echo "$NODE_TAG: $state on 127.0.0.1:$NODE_PORT (controller :$NODE_CONTROLLER_PORT, pid $(kafka_pid)), log $NODE_LOG"
    done
    if ((KAFKA_NODES > 1)); then
        echo "kafka: $KAFKA_NODES-node cluster ready, bootstrap servers $(kafka_addresses "$KAFKA_PORT")"
    fi
}

# Stops the given nodes: SIGTERM to all at once (a controlled shutdown each),
# then SIGKILL to any still running KAFKA_STOP_TIMEOUT seconds later.
kafka_down() {
    local i pid idx pids=() nodes=() deadline left
    for i in "$@"; do
        kafka_node "$i"
        pid="$(kafka_pid)"
        if [[ -z "$pid" ]]; then
            rm -f "$NODE_PID_FILE"
            echo "$NODE_LABEL: not running"
            continue
        fi
        kill -TERM "$pid" 2>/dev/null || true # already gone: the wait below returns at once
        pids+=("$pid")
        nodes+=("$i")
    done
    deadline=$((SECONDS + KAFKA_STOP_TIMEOUT))
    for idx in "${!pids[@]}"; do
        pid="${pids[idx]}"
        kafka_node "${nodes[idx]}"
        left=$((deadline - SECONDS))
        ((left >= 1)) || left=1
        if ! wait_pid_exit "$pid" "$left"; then
            echo "$NODE_LABEL: no exit ${KAFKA_STOP_TIMEOUT}s after SIGTERM, sending SIGKILL" >&2
            kill -KILL "$pid" 2>/dev/null || true
            wait_pid_exit "$pid" 10 || die "$NODE_NAME (pid $pid) survived SIGKILL"
        fi
        rm -f "$NODE_PID_FILE"
        echo "$NODE_LABEL: stopped (pid $pid)"
    done
}

# SIGKILLs the given nodes (fault injection) and waits until they are gone.
kafka_kill() {
    local i pid idx pids=() nodes=()
    for i in "$@"; do
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
        pid="${pids[idx]}"
        kafka_node "${nodes[idx]}"
        wait_pid_exit "$pid" 10 || die "$NODE_NAME (pid $pid) survived SIGKILL"
        rm -f "$NODE_PID_FILE"
        echo "$NODE_LABEL: killed (pid $pid, SIGKILL)"
    done
}

kafka_status() {
    local i pid ok=0
    for ((i = 1; i <= KAFKA_NODES; i++)); do
        kafka_node "$i"
        pid="$(kafka_pid)"
        if [[ -n "$pid" ]] && kafka_probe "$NODE_PORT"; then
            if ((KAFKA_NODES == 1)); then
                echo "$NODE_TAG: running on 127.0.0.1:$NODE_PORT (pid $pid), log $NODE_LOG"
            else
                echo "$NODE_TAG: running on 127.0.0.1:$NODE_PORT (controller :$NODE_CONTROLLER_PORT, pid $pid), log $NODE_LOG"
            fi
            continue
        elif [[ -n "$pid" ]]; then
            echo "$NODE_TAG: process $pid alive but not answering on 127.0.0.1:$NODE_PORT, log $NODE_LOG"
        else
            echo "$NODE_TAG: not running"
        fi
        ok=1
    done
    return "$ok"
}
