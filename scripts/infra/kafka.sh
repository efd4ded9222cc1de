# shellcheck shell=bash source-path=SCRIPTDIR
# Kafka for scripts/infra.sh (sourced by it): one KRaft node, broker and controller, on
# SHOPFLOW_KAFKA_PORT, assembled from Maven Central jars, with the access control of
# kafka-access.properties (SCRAM users, ACLs). Its files are under $INFRA_DIR/kafka.
#
# A cluster (--brokers N, kafka-I: the chaos suite's) is kafka-cluster.sh's, which kafka_mode
# sources only then: it redefines the functions that act on every node (kafka_launch,
# kafka_format_if_needed, kafka_wait_ready, kafka_down, kafka_kill, kafka_status) and the
# quorum and replication of server.properties, and runs the others on one node at a time
# (the NODE_* variables).

KAFKA_VERSION="4.1.1"
LOG4J_VERSION="2.24.3"   # must match the Kafka line: 2.24.x for 4.1
KAFKA_PORT="${SHOPFLOW_KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${SHOPFLOW_KAFKA_CONTROLLER_PORT:-9093}"
# SASL_SSL beside SASL_PLAINTEXT, for clients that want TLS.
KAFKA_SSL_PORT="${SHOPFLOW_KAFKA_SSL_PORT:-$((KAFKA_PORT + 200))}"
KAFKA_READY_TIMEOUT=60
KAFKA_STOP_TIMEOUT=30

USER_HOME=~   # tilde falls back to the passwd entry when HOME is unset
KAFKA_CACHE="${XDG_CACHE_HOME:-$USER_HOME/.cache}/shopflow/kafka-$KAFKA_VERSION"
KAFKA_LIBS="$KAFKA_CACHE/libs"
KAFKA_MARKER="$KAFKA_CACHE/complete"   # lists every jar of a finished download
KAFKA_ROOT="$INFRA_DIR/kafka"
KAFKA_COUNT_FILE="$KAFKA_ROOT/brokers"  # the node count Kafka was formatted with (1 here)
KAFKA_ACCESS_FILE="$KAFKA_ROOT/access"  # present when formatted with its SCRAM users
KAFKA_STATE=""                          # what kafka_launch found: started, already running

# Kafka is this file's one node unless `up` asks for another count (--brokers N, else
# SHOPFLOW_KAFKA_BROKERS), the data was formatted for another (kafka/brokers), or a node is
# named (kafka-I): then kafka-cluster.sh takes over. BROKERS_FLAG and KAFKA_PICKED are the
# command line's (scripts/infra.sh).
kafka_mode() {
    local cmd="$1" asked="" recorded=1
    [[ "$cmd" != "up" ]] || asked="${BROKERS_FLAG:-${SHOPFLOW_KAFKA_BROKERS:-}}"
    [[ ! -f "$KAFKA_COUNT_FILE" ]] || recorded="$(<"$KAFKA_COUNT_FILE")"
    if [[ "${asked:-1}" == 1 && "$recorded" == 1 ]] && ((${#KAFKA_PICKED[@]} == 0)); then
        kafka_check_ports
        kafka_single_node
        return 0
    fi
    # shellcheck source=kafka-cluster.sh
    source "$TEMPLATE_DIR/kafka-cluster.sh"
    kafka_resolve_nodes "$cmd"
}

# Sets the NODE_* variables, which every function below acts on: node id $1, its dir $2,
# its names in down / kill lines ($3), errors ($4), up / status lines ($5), and its ports
# $6 above Kafka's (kafka-cluster.sh's kafka_node sets node I of a cluster).
kafka_set_node() {
    NODE_ID="$1"
    NODE_DIR="$2"
    NODE_LABEL="$3"
    NODE_NAME="$4"
    NODE_TAG="$5"
    NODE_PORT=$((KAFKA_PORT + $6))
    NODE_CONTROLLER_PORT=$((KAFKA_CONTROLLER_PORT + $6))
    NODE_SSL_PORT=$((KAFKA_SSL_PORT + $6))
    NODE_DATA="$NODE_DIR/data"
    NODE_LOGS="$NODE_DIR/logs"
    NODE_LOG="$NODE_LOGS/server.log"
    NODE_OUT="$NODE_LOGS/kafka.out"
    NODE_PROPS="$NODE_DIR/server.properties"
    NODE_PID_FILE="$NODE_DIR/kafka.pid"
}

kafka_single_node() {
    kafka_set_node 1 "$KAFKA_ROOT" kafka Kafka "kafka $KAFKA_VERSION" 0
}

# The SASL_SSL port is a port (by default SHOPFLOW_KAFKA_PORT + 200), and the three differ.
kafka_check_ports() {
    check_port_value "SHOPFLOW_KAFKA_SSL_PORT (default SHOPFLOW_KAFKA_PORT + 200)" "$KAFKA_SSL_PORT"
    if [[ "$KAFKA_PORT" == "$KAFKA_CONTROLLER_PORT" || "$KAFKA_SSL_PORT" == "$KAFKA_PORT" ||
        "$KAFKA_SSL_PORT" == "$KAFKA_CONTROLLER_PORT" ]]; then
        die "SHOPFLOW_KAFKA_PORT ($KAFKA_PORT), SHOPFLOW_KAFKA_CONTROLLER_PORT ($KAFKA_CONTROLLER_PORT) and SHOPFLOW_KAFKA_SSL_PORT ($KAFKA_SSL_PORT) must be three different ports"
    fi
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

# controller.quorum.voters: this node alone.
kafka_voters() {
    echo "1@127.0.0.1:$KAFKA_CONTROLLER_PORT"
}

kafka_replication_properties() {
    cat <<EOF
# One node: every internal topic has a single replica.
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
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
controller.quorum.voters=$(kafka_voters)
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

# True when Kafka's data was formatted completely once: the node count is recorded after
# the format (a single node's data from before that record counts too).
kafka_formatted() {
    [[ -f "$KAFKA_COUNT_FILE" || -f "$KAFKA_ROOT/data/meta.properties" ]]
}

# Data formatted before access control (no SCRAM users) stops `up`.
kafka_check_access() {
    [[ -f "$KAFKA_ACCESS_FILE" ]] ||
        die "Kafka's data in $KAFKA_ROOT was formatted before access control (it has no SCRAM users): run scripts/infra.sh reset (it deletes the local data)"
}

kafka_new_cluster_id() {
    python3 -c '
import base64, uuid
while True:
    s = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    if not s.startswith("-"):
        print(s)
        break
'
}

# Formats the NODE_* node's log dir for cluster id $1, with the SCRAM users broker and admin.
kafka_format_node() {
    local broker admin
    broker="$(credential kafka broker)" || return 1
    admin="$(credential kafka admin)" || return 1
    java -Xmx256m -Dlog4j2.configurationFile="$TEMPLATE_DIR/log4j2.properties" \
        -Dkafka.logs.dir="$NODE_LOGS" -cp "$KAFKA_LIBS/*" \
        kafka.tools.StorageTool format -t "$1" -c "$NODE_PROPS" \
        --add-scram "SCRAM-SHA-512=[name=broker,password=$broker]" \
        --add-scram "SCRAM-SHA-512=[name=admin,password=$admin]" \
        >>"$NODE_OUT" 2>&1
}

kafka_format_failed() {
    tail_log "$NODE_OUT"
    die "could not format the Kafka log dir $NODE_DATA (see $NODE_OUT)"
}

# Records what the data was formatted with: the node count ($1) and its SCRAM users.
kafka_record_format() {
    if [[ "$(cat "$KAFKA_COUNT_FILE" 2>/dev/null)" != "$1" ]]; then
        echo "$1" >"$KAFKA_COUNT_FILE"
    fi
    [[ -f "$KAFKA_ACCESS_FILE" ]] || echo "SCRAM-SHA-512 users broker, admin" >"$KAFKA_ACCESS_FILE"
}

# Formats the node's log dir unless it has one: a new cluster.
kafka_format_if_needed() {
    if kafka_formatted; then
        kafka_check_access
    fi
    if [[ ! -f "$NODE_DATA/meta.properties" ]]; then
        local cluster_id
        cluster_id="$(kafka_new_cluster_id)"
        rm -rf "$NODE_DATA" # a dir without meta.properties was never formatted completely
        kafka_format_node "$cluster_id" || kafka_format_failed
    fi
    kafka_record_format 1
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
# "Kafka Server started" once the controllers have unfenced it (so, in a cluster, when
# every node has, each is a live broker of the cluster).
kafka_ready() {
    [[ -f "$NODE_LOG" ]] && grep -q "Kafka Server started" "$NODE_LOG" && kafka_probe "$NODE_PORT"
}

kafka_check_ports_free() {
    if port_open "$NODE_PORT"; then
        die "port $NODE_PORT ($NODE_NAME) is already in use by a process this script did not start"
    fi
    if port_open "$NODE_CONTROLLER_PORT"; then
        die "port $NODE_CONTROLLER_PORT ($NODE_NAME controller) is already in use by a process this script did not start"
    fi
    if port_open "$NODE_SSL_PORT"; then
        die "port $NODE_SSL_PORT ($NODE_NAME SASL_SSL) is already in use by a process this script did not start"
    fi
}

# A fresh log per run keeps readiness checks about this run (and the file small), and
# server.properties is written again.
kafka_prepare_node() {
    make_dir "$NODE_LOGS"
    if [[ -f "$NODE_LOG" ]]; then
        mv "$NODE_LOG" "$NODE_LOG.1"
    fi
    if [[ -f "$NODE_OUT" ]]; then
        mv "$NODE_OUT" "$NODE_OUT.1"
    fi
    kafka_write_properties
}

# Starts the NODE_* node's JVM, detached, with the JVM options given (its heap, at
# least), and waits for its pid file. The child writes its own pid before exec'ing java,
# so the pid file is right whether or not setsid had to fork.
kafka_start_node() {
    (
        cd "$NODE_DIR" || exit
        exec 9>&- # the lock fd: the broker must not hold it
        # shellcheck disable=SC2016 # $$ and $1 expand in the inner shell
        exec setsid nohup bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$NODE_PID_FILE" \
            java "$@" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
            -Dlog4j2.configurationFile="$TEMPLATE_DIR/log4j2.properties" \
            -Dkafka.logs.dir="$NODE_LOGS" \
            -cp "$KAFKA_LIBS/*" kafka.Kafka "$NODE_PROPS" \
            </dev/null >>"$NODE_OUT" 2>&1
    ) &
}

kafka_await_pid_file() {
    local n
    for ((n = 0; n < 50; n++)); do
        [[ -s "$NODE_PID_FILE" ]] && break
        sleep 0.1
    done
    [[ -s "$NODE_PID_FILE" ]] || die "could not launch the $NODE_NAME JVM (see $NODE_OUT)"
}

# Starts the node unless it runs, without waiting until it answers (kafka_wait_ready
# does): PostgreSQL and Redis start while the JVM boots.
kafka_launch() {
    KAFKA_STATE="already running"
    [[ -z "$(kafka_pid)" ]] || return 0
    rm -f "$NODE_PID_FILE"
    ensure_command java openjdk-17-jre-headless
    kafka_check_ports_free
    kafka_fetch_jars
    kafka_prepare_node
    kafka_format_if_needed
    kafka_start_node -Xmx512m
    kafka_await_pid_file
    KAFKA_STATE="started"
}

# Dies when the NODE_* node's process is gone before it answered.
kafka_check_alive() {
    if [[ -z "$(kafka_pid)" ]]; then
        tail_log "$NODE_LOG"
        tail_log "$NODE_OUT"
        die "$NODE_NAME exited during startup (see $NODE_LOG and $NODE_OUT)"
    fi
}

# The NODE_* node's line once it answers; $1: started or already running.
kafka_report() {
    echo "$NODE_TAG: $1 on 127.0.0.1:$NODE_PORT (controller :$NODE_CONTROLLER_PORT, pid $(kafka_pid)), log $NODE_LOG"
}

kafka_wait_ready() {
    local deadline=$((SECONDS + KAFKA_READY_TIMEOUT))
    until kafka_ready; do
        kafka_check_alive
        if ((SECONDS >= deadline)); then
            tail_log "$NODE_LOG"
            die "Kafka did not answer on 127.0.0.1:$NODE_PORT within ${KAFKA_READY_TIMEOUT}s (see $NODE_LOG)"
        fi
        sleep 0.25
    done
    kafka_report "$KAFKA_STATE"
}

# After SIGTERM (a controlled shutdown) to the NODE_* node's process $1: waits up to $2
# seconds for it to exit, then SIGKILLs it.
kafka_await_stop() {
    local pid="$1"
    if ! wait_pid_exit "$pid" "$2"; then
        echo "$NODE_LABEL: no exit ${KAFKA_STOP_TIMEOUT}s after SIGTERM, sending SIGKILL" >&2
        kill -KILL "$pid" 2>/dev/null || true
        wait_pid_exit "$pid" 10 || die "$NODE_NAME (pid $pid) survived SIGKILL"
    fi
    rm -f "$NODE_PID_FILE"
    echo "$NODE_LABEL: stopped (pid $pid)"
}

# After SIGKILL to the NODE_* node's process $1: waits until it is gone.
kafka_await_kill() {
    wait_pid_exit "$1" 10 || die "$NODE_NAME (pid $1) survived SIGKILL"
    rm -f "$NODE_PID_FILE"
    echo "$NODE_LABEL: killed (pid $1, SIGKILL)"
}

kafka_down() {
    local pid
    pid="$(kafka_pid)"
    if [[ -z "$pid" ]]; then
        rm -f "$NODE_PID_FILE"
        echo "$NODE_LABEL: not running"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true # already gone: the wait returns at once
    kafka_await_stop "$pid" "$KAFKA_STOP_TIMEOUT"
}

# SIGKILLs the node (fault injection) and waits until it is gone.
kafka_kill() {
    local pid
    pid="$(kafka_pid)"
    if [[ -z "$pid" ]]; then
        echo "$NODE_LABEL: not running, nothing to kill"
        return 0
    fi
    kill -KILL "$pid" 2>/dev/null || true
    kafka_await_kill "$pid"
}

# The NODE_* node's status line (what $1 says goes before its pid); false unless it answers.
kafka_node_status() {
    local pid
    pid="$(kafka_pid)"
    if [[ -n "$pid" ]] && kafka_probe "$NODE_PORT"; then
        echo "$NODE_TAG: running on 127.0.0.1:$NODE_PORT (${1:-}pid $pid), log $NODE_LOG"
        return 0
    elif [[ -n "$pid" ]]; then
        echo "$NODE_TAG: process $pid alive but not answering on 127.0.0.1:$NODE_PORT, log $NODE_LOG"
    else
        echo "$NODE_TAG: not running"
    fi
    return 1
}

kafka_status() {
    kafka_node_status
}
