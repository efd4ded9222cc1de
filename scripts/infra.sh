#!/usr/bin/env bash
# Local infrastructure for the service: a single-node KRaft Kafka broker,
# a PostgreSQL 15 cluster of our own and a Redis server, all on 127.0.0.1.
#
#   scripts/infra.sh up       start what is not running (idempotent), wait until each answers
#   scripts/infra.sh down     stop what `up` started (by its pid files), nothing else
#   scripts/infra.sh status   one line per server; exit 0 only if all three answer
#   scripts/infra.sh reset    down, then delete the data dirs (not the Kafka jar cache)
#
# Environment (defaults): SHOPFLOW_KAFKA_PORT=9092 SHOPFLOW_KAFKA_CONTROLLER_PORT=9093
# SHOPFLOW_PG_PORT=5432 SHOPFLOW_REDIS_PORT=6379 SHOPFLOW_INFRA_DIR=<repo>/.infra
#
# No Docker here: Kafka is assembled from Maven Central jars (cached under
# ${XDG_CACHE_HOME:-~/.cache}/shopflow so later starts are offline), PostgreSQL
# uses Debian's binaries, Redis comes from Debian's package. Servers are started
# detached (setsid / --daemonize / pg_ctl) so they outlive this script.
set -Eeuo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$SCRIPT_DIR/.." && pwd)"
TEMPLATE_DIR="$SCRIPT_DIR/infra"

KAFKA_VERSION="4.1.1"
LOG4J_VERSION="2.24.3"   # must match the Kafka line: 2.24.x for 4.1
KAFKA_PORT="${SHOPFLOW_KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${SHOPFLOW_KAFKA_CONTROLLER_PORT:-9093}"
PG_PORT="${SHOPFLOW_PG_PORT:-5432}"
REDIS_PORT="${SHOPFLOW_REDIS_PORT:-6379}"
INFRA_DIR="${SHOPFLOW_INFRA_DIR:-$REPO_DIR/.infra}"
[[ "$INFRA_DIR" == /* ]] || INFRA_DIR="$PWD/$INFRA_DIR"

PG_BIN="/usr/lib/postgresql/15/bin"
PG_OS_USER="shopflow"
# The service's role reads and writes rows; the owner's creates, alters and drops (the
# migrations run as it; SHOPFLOW_MIGRATION_DATABASE_URL).
PG_APP_ROLE="shopflow"
PG_APP_PASSWORD="shopflow"
PG_OWNER_ROLE="shopflow_owner"
PG_OWNER_PASSWORD="shopflow_owner"
PG_APP_DB="shopflow"

KAFKA_READY_TIMEOUT=60
PG_READY_TIMEOUT=60
REDIS_READY_TIMEOUT=20
KAFKA_STOP_TIMEOUT=30

# ---------------------------------------------------------------- helpers

die() {
    echo "infra: $*" >&2
    exit 1
}

# Report the innermost failing command once (not again from each enclosing subshell).
on_unexpected_error() {
    if ((BASH_SUBSHELL == 0)); then
        echo "infra: unexpected failure at line $1 running: $2" >&2
    fi
}
trap 'on_unexpected_error "$LINENO" "$BASH_COMMAND"' ERR

check_port_value() {
    local name="$1" value="$2"
    if ! [[ "$value" =~ ^[0-9]+$ ]] || ((value < 1 || value > 65535)); then
        die "$name must be a TCP port number, got '$value'"
    fi
}

# True when something accepts TCP connections on 127.0.0.1:PORT.
port_open() {
    # shellcheck disable=SC2016 # $1 expands in the inner shell
    timeout 2 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1"' _ "$1" 2>/dev/null
}

# True when process PID exists and its command line contains every given word.
pid_matches() {
    local pid="$1" word cmdline
    shift
    [[ "$pid" =~ ^[0-9]+$ ]] || return 1
    [[ -r "/proc/$pid/cmdline" ]] || return 1
    cmdline="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null)" || return 1
    for word in "$@"; do
        [[ "$cmdline" == *"$word"* ]] || return 1
    done
}

read_pid_file() {
    local file="$1"
    if [[ -s "$file" ]]; then
        head -n1 "$file" | tr -dc '0-9'
    fi
}

wait_pid_exit() {
    local pid="$1" seconds="$2" i
    for ((i = 0; i < seconds * 10; i++)); do
        [[ -d "/proc/$pid" ]] || return 0
        sleep 0.1
    done
    [[ ! -d "/proc/$pid" ]]
}

# mkdir -p that leaves every directory it creates traversable by other users,
# so the unprivileged PostgreSQL user can reach its data dir.
make_dir() {
    local dir="$1" missing=() d
    d="$dir"
    while [[ ! -e "$d" ]]; do
        missing+=("$d")
        d="$(dirname "$d")"
    done
    mkdir -p "$dir"
    for d in "${missing[@]}"; do
        chmod 755 "$d"
    done
}

APT_UPDATED=0
apt_install() {
    local log="$INFRA_DIR/apt.log"
    if ((EUID != 0)); then
        die "cannot install $* (Debian packages) without root; install it and run again"
    fi
    export DEBIAN_FRONTEND=noninteractive
    if ((APT_UPDATED == 0)); then
        if ! apt-get -o DPkg::Lock::Timeout=300 update >>"$log" 2>&1; then
            die "could not update the Debian package lists to install $* (see $log)"
        fi
        APT_UPDATED=1
    fi
    if ! apt-get -o DPkg::Lock::Timeout=300 install -y --no-install-recommends "$@" >>"$log" 2>&1; then
        die "could not install $* from Debian's packages (see $log)"
    fi
}

ensure_command() {
    local cmd="$1" package="$2"
    if ! command -v "$cmd" >/dev/null 2>&1; then
        apt_install "$package"
        command -v "$cmd" >/dev/null 2>&1 || die "installed $package but '$cmd' is still not on PATH"
    fi
}

tail_log() {
    local file="$1"
    if [[ -f "$file" ]]; then
        echo "---- last 30 lines of $file ----" >&2
        tail -n 30 "$file" >&2
        echo "----" >&2
    fi
}

# ---------------------------------------------------------------- Kafka

USER_HOME=~   # tilde falls back to the passwd entry when HOME is unset
KAFKA_CACHE="${XDG_CACHE_HOME:-$USER_HOME/.cache}/shopflow/kafka-$KAFKA_VERSION"
KAFKA_LIBS="$KAFKA_CACHE/libs"
KAFKA_MARKER="$KAFKA_CACHE/complete"   # lists every jar of a finished download
KAFKA_ROOT="$INFRA_DIR/kafka"
KAFKA_DATA="$KAFKA_ROOT/data"
KAFKA_LOGS="$KAFKA_ROOT/logs"
KAFKA_LOG="$KAFKA_LOGS/server.log"
KAFKA_OUT="$KAFKA_LOGS/kafka.out"
KAFKA_PROPS="$KAFKA_ROOT/server.properties"
KAFKA_PID_FILE="$KAFKA_ROOT/kafka.pid"

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

kafka_write_properties() {
    cat >"$KAFKA_PROPS" <<EOF
# Written by scripts/infra.sh on every 'up'; edit the script, not this file.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$KAFKA_DATA

# One node: every internal topic has a single replica.
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1

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

# The service creates its topics itself, with the partition counts it wants.
auto.create.topics.enable=false
num.partitions=12
EOF
}

kafka_format_if_needed() {
    if [[ -f "$KAFKA_DATA/meta.properties" ]]; then
        return 0
    fi
    # A dir without meta.properties was never formatted completely: start fresh.
    rm -rf "$KAFKA_DATA"
    local cluster_id
    cluster_id="$(python3 -c '
import base64, uuid
while True:
    s = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
    if not s.startswith("-"):
        print(s)
        break
')"
    if ! java -Xmx256m -Dlog4j2.configurationFile="$TEMPLATE_DIR/log4j2.properties" \
        -Dkafka.logs.dir="$KAFKA_LOGS" -cp "$KAFKA_LIBS/*" \
        kafka.tools.StorageTool format -t "$cluster_id" -c "$KAFKA_PROPS" >>"$KAFKA_OUT" 2>&1; then
        tail_log "$KAFKA_OUT"
        die "could not format the Kafka log dir $KAFKA_DATA (see $KAFKA_OUT)"
    fi
}

kafka_pid() {
    local pid
    pid="$(read_pid_file "$KAFKA_PID_FILE")"
    if [[ -n "$pid" ]] && pid_matches "$pid" kafka.Kafka "$KAFKA_PROPS"; then
        echo "$pid"
    fi
}

# True when the broker answers an ApiVersions request (a real protocol round
# trip, not just an open port).
kafka_answers() {
    timeout 5 python3 - "$KAFKA_PORT" <<'PY' 2>/dev/null
import socket, struct, sys
port = int(sys.argv[1])
client = b"infra-check"
# ApiVersions v0: api_key 18, api_version 0, correlation id, client id.
body = struct.pack(">hhih", 18, 0, 7, len(client)) + client
with socket.create_connection(("127.0.0.1", port), timeout=3) as s:
    s.sendall(struct.pack(">i", len(body)) + body)
    data = b""
    while len(data) < 10:
        chunk = s.recv(65536)
        if not chunk:
            sys.exit(1)
        data += chunk
correlation_id, error_code = struct.unpack(">ih", data[4:10])
sys.exit(0 if correlation_id == 7 and error_code == 0 else 1)
PY
}

kafka_ready() {
    [[ -f "$KAFKA_LOG" ]] && grep -q "Kafka Server started" "$KAFKA_LOG" && kafka_answers
}

KAFKA_STATE=""   # "started" or "already" after kafka_launch

# Starts the broker without waiting; kafka_wait_ready waits. Split so that
# PostgreSQL and Redis start while the JVM boots.
kafka_launch() {
    local pid
    pid="$(kafka_pid)"
    if [[ -n "$pid" ]]; then
        KAFKA_STATE="already"
        return 0
    fi
    rm -f "$KAFKA_PID_FILE"
    ensure_command java openjdk-17-jre-headless
    if port_open "$KAFKA_PORT"; then
        die "port $KAFKA_PORT (Kafka) is already in use by a process this script did not start"
    fi
    if port_open "$KAFKA_CONTROLLER_PORT"; then
        die "port $KAFKA_CONTROLLER_PORT (Kafka controller) is already in use by a process this script did not start"
    fi
    kafka_fetch_jars
    make_dir "$KAFKA_LOGS"
    # One log per run keeps readiness checks about this run (and the file small).
    if [[ -f "$KAFKA_LOG" ]]; then
        mv "$KAFKA_LOG" "$KAFKA_LOG.1"
    fi
    if [[ -f "$KAFKA_OUT" ]]; then
        mv "$KAFKA_OUT" "$KAFKA_OUT.1"
    fi
    kafka_write_properties
    kafka_format_if_needed
    # The child writes its own pid before exec'ing java, so the pid file is right
    # whether or not setsid had to fork.
    (
        cd "$KAFKA_ROOT"
        exec 9>&- # the lock fd: the broker must not hold it
        # shellcheck disable=SC2016 # $$ and $1 expand in the inner shell
        exec setsid nohup bash -c 'echo $$ >"$1"; shift; exec "$@"' _ "$KAFKA_PID_FILE" \
            java -Xmx512m -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
            -Dlog4j2.configurationFile="$TEMPLATE_DIR/log4j2.properties" \
            -Dkafka.logs.dir="$KAFKA_LOGS" \
            -cp "$KAFKA_LIBS/*" kafka.Kafka "$KAFKA_PROPS" \
            </dev/null >>"$KAFKA_OUT" 2>&1
    ) &
    local i
    for ((i = 0; i < 50; i++)); do
        [[ -s "$KAFKA_PID_FILE" ]] && break
        sleep 0.1
    done
    [[ -s "$KAFKA_PID_FILE" ]] || die "could not launch the Kafka JVM (see $KAFKA_OUT)"
    KAFKA_STATE="started"
}

kafka_wait_ready() {
    local deadline=$((SECONDS + KAFKA_READY_TIMEOUT)) pid
    until kafka_ready; do
        pid="$(kafka_pid)"
        if [[ -z "$pid" ]]; then
            tail_log "$KAFKA_LOG"
            tail_log "$KAFKA_OUT"
            die "Kafka exited during startup (see $KAFKA_LOG and $KAFKA_OUT)"
        fi
        if ((SECONDS >= deadline)); then
            tail_log "$KAFKA_LOG"
            die "Kafka did not answer on 127.0.0.1:$KAFKA_PORT within ${KAFKA_READY_TIMEOUT}s (see $KAFKA_LOG)"
        fi
        sleep 0.25
    done
    if [[ "$KAFKA_STATE" == "already" ]]; then
        echo "kafka $KAFKA_VERSION: already running on 127.0.0.1:$KAFKA_PORT (controller :$KAFKA_CONTROLLER_PORT, pid $(kafka_pid)), log $KAFKA_LOG"
    else
        echo "kafka $KAFKA_VERSION: started on 127.0.0.1:$KAFKA_PORT (controller :$KAFKA_CONTROLLER_PORT, pid $(kafka_pid)), log $KAFKA_LOG"
    fi
}

kafka_down() {
    local pid
    pid="$(kafka_pid)"
    if [[ -z "$pid" ]]; then
        rm -f "$KAFKA_PID_FILE"
        echo "kafka: not running"
        return 0
    fi
    kill -TERM "$pid"
    if ! wait_pid_exit "$pid" "$KAFKA_STOP_TIMEOUT"; then
        echo "kafka: no exit ${KAFKA_STOP_TIMEOUT}s after SIGTERM, sending SIGKILL" >&2
        kill -KILL "$pid"
        wait_pid_exit "$pid" 10 || die "Kafka (pid $pid) survived SIGKILL"
    fi
    rm -f "$KAFKA_PID_FILE"
    echo "kafka: stopped (pid $pid)"
}

kafka_status() {
    local pid
    pid="$(kafka_pid)"
    if [[ -n "$pid" ]] && kafka_answers; then
        echo "kafka $KAFKA_VERSION: running on 127.0.0.1:$KAFKA_PORT (pid $pid), log $KAFKA_LOG"
        return 0
    elif [[ -n "$pid" ]]; then
        echo "kafka $KAFKA_VERSION: process $pid alive but not answering on 127.0.0.1:$KAFKA_PORT, log $KAFKA_LOG"
    else
        echo "kafka $KAFKA_VERSION: not running"
    fi
    return 1
}

# ---------------------------------------------------------------- PostgreSQL

PG_ROOT="$INFRA_DIR/pg"
PG_DATA="$PG_ROOT/data"
PG_LOG="$PG_ROOT/postgres.log"

pg_socket_dir() {
    local dir="$PG_ROOT/run"
    # Unix socket paths are limited to ~107 bytes.
    if ((${#dir} + 20 > 100)); then
        dir="/tmp/shopflow-pg-$PG_PORT"
    fi
    echo "$dir"
}

# PostgreSQL refuses to run as root: as root, run its tools as $PG_OS_USER.
as_pg() {
    if ((EUID == 0)); then
        (cd / && runuser -u "$PG_OS_USER" -- "$@")
    else
        (cd / && "$@")
    fi
}

pg_ensure_binaries() {
    if [[ -x "$PG_BIN/initdb" && -x "$PG_BIN/pg_ctl" && -x "$PG_BIN/postgres" ]]; then
        return 0
    fi
    local had_cluster=0
    [[ -d /etc/postgresql/15/main ]] && had_cluster=1
    apt_install postgresql-15
    [[ -x "$PG_BIN/pg_ctl" ]] || die "installed postgresql-15 but $PG_BIN/pg_ctl is missing"
    # The package may create and start Debian's own cluster; it is not ours to
    # use, but it must not hold our port or start at boot.
    if ((had_cluster == 0)) && [[ -d /etc/postgresql/15/main ]]; then
        if ! pg_ctlcluster 15 main stop >>"$INFRA_DIR/apt.log" 2>&1; then
            echo "infra: note: Debian's postgresql 15/main cluster was not running" >>"$INFRA_DIR/apt.log"
        fi
        echo manual >/etc/postgresql/15/main/start.conf
    fi
}

pg_ensure_os_user() {
    ((EUID == 0)) || return 0
    if ! id -u "$PG_OS_USER" >/dev/null 2>&1; then
        useradd --system --no-create-home --home-dir /nonexistent \
            --shell /usr/sbin/nologin "$PG_OS_USER" ||
            die "could not create the system user $PG_OS_USER to run PostgreSQL"
    fi
}

pg_running() {
    [[ -f "$PG_DATA/PG_VERSION" ]] && as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1
}

pg_answers() {
    "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -t 2
}

pg_psql() {
    PGCONNECT_TIMEOUT=5 "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" \
        -U postgres -d postgres -tA "$@"
}

pg_ensure_role() {
    local role="$1" password="$2" options="$3" log="$PG_ROOT/setup.log" has_role
    if ! has_role="$(pg_psql -c "SELECT 1 FROM pg_roles WHERE rolname = '$role'" 2>>"$log")"; then
        die "could not query PostgreSQL on 127.0.0.1:$PG_PORT as postgres (see $log)"
    fi
    if [[ "$has_role" != "1" ]]; then
        pg_psql -c "CREATE ROLE $role LOGIN $options PASSWORD '$password'" >>"$log" 2>&1 ||
            die "could not create the PostgreSQL role $role (see $log)"
    else
        pg_psql -c "ALTER ROLE $role $options" >>"$log" 2>&1 ||
            die "could not set up the PostgreSQL role $role (see $log)"
    fi
}

pg_ensure_app_database() {
    local log="$PG_ROOT/setup.log" has_db
    pg_ensure_role "$PG_OWNER_ROLE" "$PG_OWNER_PASSWORD" "CREATEDB"
    pg_ensure_role "$PG_APP_ROLE" "$PG_APP_PASSWORD" "NOCREATEDB"
    if ! has_db="$(pg_psql -c "SELECT 1 FROM pg_database WHERE datname = '$PG_APP_DB'" 2>>"$log")"; then
        die "could not query PostgreSQL on 127.0.0.1:$PG_PORT as postgres (see $log)"
    fi
    if [[ "$has_db" != "1" ]]; then
        pg_psql -c "CREATE DATABASE $PG_APP_DB OWNER $PG_OWNER_ROLE" >>"$log" 2>&1 ||
            die "could not create the PostgreSQL database $PG_APP_DB (see $log)"
    fi
    # A database set up before the two roles (the service's role owned it all): hand
    # everything to the owner. Idempotent: nothing left to hand over the next time.
    pg_psql -d "$PG_APP_DB" -c "ALTER DATABASE $PG_APP_DB OWNER TO $PG_OWNER_ROLE" \
        -c "REASSIGN OWNED BY $PG_APP_ROLE TO $PG_OWNER_ROLE" >>"$log" 2>&1 ||
        die "could not give the database $PG_APP_DB to $PG_OWNER_ROLE (see $log)"
}

pg_up() {
    pg_ensure_binaries
    pg_ensure_os_user
    local sock state
    sock="$(pg_socket_dir)"
    make_dir "$PG_ROOT"
    make_dir "$sock"
    if ((EUID == 0)); then
        chown "$PG_OS_USER" "$PG_ROOT" "$sock"
        if ! as_pg test -w "$PG_ROOT"; then
            die "the $PG_OS_USER user cannot reach $PG_ROOT; make its parent directories traversable (chmod o+x)"
        fi
    fi
    if [[ ! -f "$PG_DATA/PG_VERSION" ]]; then
        # initdb into a side dir, so an interrupted run never leaves a half-made cluster.
        rm -rf "$PG_DATA" "$PG_DATA.init"
        if ! as_pg "$PG_BIN/initdb" -D "$PG_DATA.init" -U postgres --auth=trust \
            --encoding=UTF8 --no-locale >>"$PG_ROOT/initdb.log" 2>&1; then
            die "could not create the PostgreSQL cluster with initdb (see $PG_ROOT/initdb.log)"
        fi
        mv "$PG_DATA.init" "$PG_DATA"
    fi
    if pg_running; then
        state="already running"
    else
        if port_open "$PG_PORT"; then
            die "port $PG_PORT (PostgreSQL) is already in use by a process this script did not start"
        fi
        if ! as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -w -t "$PG_READY_TIMEOUT" -l "$PG_LOG" \
            -o "-p $PG_PORT -k $sock -c listen_addresses=127.0.0.1 -c max_connections=200 -c shared_buffers=256MB" \
            start >>"$PG_ROOT/pg_ctl.log" 2>&1 9>&-; then
            tail_log "$PG_LOG"
            die "could not start PostgreSQL on 127.0.0.1:$PG_PORT (see $PG_LOG)"
        fi
        state="started"
    fi
    local deadline=$((SECONDS + PG_READY_TIMEOUT))
    until pg_answers; do
        if ((SECONDS >= deadline)); then
            tail_log "$PG_LOG"
            die "PostgreSQL did not answer on 127.0.0.1:$PG_PORT within ${PG_READY_TIMEOUT}s (see $PG_LOG)"
        fi
        sleep 0.2
    done
    pg_ensure_app_database
    echo "postgresql 15: $state on 127.0.0.1:$PG_PORT (db $PG_APP_DB, user $PG_APP_ROLE/$PG_APP_PASSWORD), log $PG_LOG"
}

pg_down() {
    if ! pg_running; then
        echo "postgresql: not running"
        return 0
    fi
    if ! as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m fast -w -t 60 stop >>"$PG_ROOT/pg_ctl.log" 2>&1; then
        die "could not stop PostgreSQL (see $PG_ROOT/pg_ctl.log)"
    fi
    echo "postgresql: stopped"
}

pg_status() {
    if pg_running && pg_answers; then
        echo "postgresql 15: running on 127.0.0.1:$PG_PORT, log $PG_LOG"
        return 0
    elif pg_running; then
        echo "postgresql 15: process alive but not answering on 127.0.0.1:$PG_PORT, log $PG_LOG"
    else
        echo "postgresql 15: not running"
    fi
    return 1
}

# ---------------------------------------------------------------- Redis

REDIS_ROOT="$INFRA_DIR/redis"
REDIS_PID_FILE="$REDIS_ROOT/redis.pid"
REDIS_LOG="$REDIS_ROOT/redis.log"

redis_ensure_installed() {
    if command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1; then
        return 0
    fi
    apt_install redis-server
    command -v redis-server >/dev/null 2>&1 || die "installed redis-server but it is not on PATH"
    # Debian's service (port 6379, /var/lib/redis) is not ours: stop and disable it.
    local log="$INFRA_DIR/apt.log"
    if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null 2>&1; then
        if ! systemctl disable --now redis-server >>"$log" 2>&1; then
            echo "infra: note: could not disable the redis-server systemd unit" >>"$log"
        fi
    elif [[ -x /etc/init.d/redis-server ]]; then
        if ! /etc/init.d/redis-server stop >>"$log" 2>&1; then
            echo "infra: note: /etc/init.d/redis-server stop failed" >>"$log"
        fi
        if ! update-rc.d redis-server disable >>"$log" 2>&1; then
            echo "infra: note: update-rc.d redis-server disable failed" >>"$log"
        fi
    fi
}

redis_pid() {
    local pid
    pid="$(read_pid_file "$REDIS_PID_FILE")"
    if [[ -n "$pid" ]] && pid_matches "$pid" redis-server ":$REDIS_PORT"; then
        echo "$pid"
    fi
}

redis_answers() {
    [[ "$(timeout 3 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2>/dev/null)" == "PONG" ]]
}

redis_up() {
    redis_ensure_installed
    make_dir "$REDIS_ROOT"
    local state pid
    pid="$(redis_pid)"
    if [[ -n "$pid" ]]; then
        state="already running"
    else
        rm -f "$REDIS_PID_FILE"
        if port_open "$REDIS_PORT"; then
            die "port $REDIS_PORT (Redis) is already in use by a process this script did not start"
        fi
        if ! (cd "$REDIS_ROOT" && redis-server --bind 127.0.0.1 --port "$REDIS_PORT" \
            --daemonize yes --pidfile "$REDIS_PID_FILE" --dir "$REDIS_ROOT" \
            --logfile "$REDIS_LOG" --save "" --appendonly no 9>&-) >>"$REDIS_ROOT/start.log" 2>&1; then
            tail_log "$REDIS_LOG"
            die "could not start Redis on 127.0.0.1:$REDIS_PORT (see $REDIS_LOG)"
        fi
        state="started"
    fi
    local deadline=$((SECONDS + REDIS_READY_TIMEOUT))
    until redis_answers && [[ -n "$(redis_pid)" ]]; do
        if ((SECONDS >= deadline)); then
            tail_log "$REDIS_LOG"
            die "Redis did not answer PING on 127.0.0.1:$REDIS_PORT within ${REDIS_READY_TIMEOUT}s (see $REDIS_LOG)"
        fi
        sleep 0.1
    done
    echo "redis: $state on 127.0.0.1:$REDIS_PORT (pid $(redis_pid)), log $REDIS_LOG"
}

redis_down() {
    local pid
    pid="$(redis_pid)"
    if [[ -z "$pid" ]]; then
        rm -f "$REDIS_PID_FILE"
        echo "redis: not running"
        return 0
    fi
    if ! redis-cli -h 127.0.0.1 -p "$REDIS_PORT" shutdown nosave >/dev/null 2>&1; then
        kill -TERM "$pid"
    fi
    if ! wait_pid_exit "$pid" 10; then
        kill -KILL "$pid"
        wait_pid_exit "$pid" 5 || die "Redis (pid $pid) survived SIGKILL"
    fi
    rm -f "$REDIS_PID_FILE"
    echo "redis: stopped (pid $pid)"
}

redis_status() {
    local pid
    pid="$(redis_pid)"
    if [[ -n "$pid" ]] && redis_answers; then
        echo "redis: running on 127.0.0.1:$REDIS_PORT (pid $pid), log $REDIS_LOG"
        return 0
    elif [[ -n "$pid" ]]; then
        echo "redis: process $pid alive but not answering on 127.0.0.1:$REDIS_PORT, log $REDIS_LOG"
    else
        echo "redis: not running"
    fi
    return 1
}

# ---------------------------------------------------------------- commands

prepare_infra_dir() {
    make_dir "$INFRA_DIR"
    # Keep state out of git without editing the repository's .gitignore.
    if [[ ! -f "$INFRA_DIR/.gitignore" ]]; then
        echo "*" >"$INFRA_DIR/.gitignore"
    fi
    # Serialise concurrent up/down/reset runs.
    exec 9>"$INFRA_DIR/.lock"
    flock -w 300 9 || die "another scripts/infra.sh run holds $INFRA_DIR/.lock"
}

cmd_up() {
    local started=$SECONDS
    prepare_infra_dir
    ensure_command python3 python3
    kafka_launch
    pg_up
    redis_up
    kafka_wait_ready
    echo "infra: up in $((SECONDS - started))s (state in $INFRA_DIR)"
}

cmd_down() {
    if [[ ! -d "$INFRA_DIR" ]]; then
        echo "infra: nothing to stop ($INFRA_DIR does not exist)"
        return 0
    fi
    prepare_infra_dir
    kafka_down
    redis_down
    pg_down
}

cmd_status() {
    local ok=0
    kafka_status || ok=1
    pg_status || ok=1
    redis_status || ok=1
    return "$ok"
}

cmd_reset() {
    cmd_down
    if [[ -d "$INFRA_DIR" ]]; then
        rm -rf "$KAFKA_ROOT" "$PG_ROOT" "$REDIS_ROOT"
        local sock
        sock="$(pg_socket_dir)"
        if [[ "$sock" == /tmp/shopflow-pg-* ]]; then
            rm -rf "$sock"
        fi
    fi
    echo "infra: data removed from $INFRA_DIR (Kafka jar cache kept in $KAFKA_CACHE)"
}

main() {
    check_port_value SHOPFLOW_KAFKA_PORT "$KAFKA_PORT"
    check_port_value SHOPFLOW_KAFKA_CONTROLLER_PORT "$KAFKA_CONTROLLER_PORT"
    check_port_value SHOPFLOW_PG_PORT "$PG_PORT"
    check_port_value SHOPFLOW_REDIS_PORT "$REDIS_PORT"
    [[ "$INFRA_DIR" != "/" ]] || die "SHOPFLOW_INFRA_DIR must not be /"
    case "${1:-}" in
        up) cmd_up ;;
        down) cmd_down ;;
        status)
            if cmd_status; then exit 0; else exit 1; fi
            ;;
        reset) cmd_reset ;;
        *)
            echo "usage: $0 up|down|status|reset" >&2
            exit 2
            ;;
    esac
}

main "$@"
