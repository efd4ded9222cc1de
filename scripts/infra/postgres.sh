# shellcheck shell=bash source-path=SCRIPTDIR
# PostgreSQL 15 for scripts/infra.sh (sourced by it): Debian's binaries, a cluster of our
# own in $INFRA_DIR/pg run as the system user shopflow, scram-sha-256 on every connection,
# the roles and database of the service.

PG_PORT="${SHOPFLOW_PG_PORT:-5432}"
PG_BIN="/usr/lib/postgresql/15/bin"
PG_OS_USER="shopflow"
# The service's role reads and writes rows; the owner's creates, alters and drops (the
# migrations run as it; SHOPFLOW_MIGRATION_DATABASE_URL).
PG_APP_ROLE="shopflow"
PG_OWNER_ROLE="shopflow_owner"
PG_READER_ROLE="shopflow_reader"  # the HTTP queries' role: SELECT only (the migrations grant it)
PG_APP_DB="shopflow"
PG_READY_TIMEOUT=60

PG_ROOT="$INFRA_DIR/pg"
PG_DATA="$PG_ROOT/data"
PG_LOG="$PG_ROOT/postgres.log"

# PostgreSQL is this file's one node unless `up` asks for more (SHOPFLOW_PG_NODES=N), the
# data was made for several (pg/nodes), or a node is named (postgres-I): then patroni.sh
# takes over (a cluster under Patroni). PG_PICKED holds the command line's node numbers.
PG_PICKED=()
pg_mode() {
    local cmd="$1" asked="" recorded=1
    [[ "$cmd" != "up" ]] || asked="${SHOPFLOW_PG_NODES:-}"
    [[ ! -f "$PG_ROOT/nodes" ]] || recorded="$(tr -dc '0-9' <"$PG_ROOT/nodes")"
    if [[ "${asked:-1}" == 1 && "$recorded" == 1 ]] && ((${#PG_PICKED[@]} == 0)); then
        if [[ "$cmd" == "cut" || "$cmd" == "heal" ]]; then
            die "$cmd acts on a PostgreSQL cluster (SHOPFLOW_PG_NODES=3), not on one node"
        fi
        return 0
    fi
    if [[ -f "$PG_DATA/PG_VERSION" ]]; then
        die "PostgreSQL's data in $PG_ROOT is one node's: a cluster (SHOPFLOW_PG_NODES=N, postgres-I) needs scripts/infra.sh reset first (it deletes the local data)"
    fi
    # shellcheck source=patroni.sh
    source "$TEMPLATE_DIR/patroni.sh"
    pg_resolve_nodes "$cmd"
}

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

# The postmaster's pid, when a postmaster of this data dir runs.
pg_postmaster_pid() {
    local pid
    pid="$(read_pid_file "$PG_DATA/postmaster.pid")"
    if [[ -n "$pid" ]] && pid_matches "$pid" "$PG_BIN/postgres"; then
        echo "$pid"
    fi
}

pg_running() {
    [[ -f "$PG_DATA/PG_VERSION" && -n "$(pg_postmaster_pid)" ]] &&
        as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1
}

pg_answers() {
    "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT" -t 2
}

pg_psql() {
    PGPASSWORD="$(credential postgres postgres)" PGCONNECT_TIMEOUT=5 "$PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" \
        -U postgres -d postgres -tA "$@"
}

# Makes role $1 (LOGIN, with options $2) if missing, and sets its password to the one in
# credentials.json on every start: the file is the truth (a rotation edits it, then 'up').
pg_ensure_role() {
    local role="$1" options="$2" log="$PG_ROOT/setup.log" has_role password
    password="$(credential postgres "$role")"
    if ! has_role="$(pg_psql -c "SELECT 1 FROM pg_roles WHERE rolname = '$role'" 2>>"$log")"; then
        die "could not query PostgreSQL on 127.0.0.1:$PG_PORT as postgres (see $log)"
    fi
    if [[ "$has_role" != "1" ]]; then
        pg_psql -c "CREATE ROLE $role LOGIN $options" >>"$log" 2>&1 ||
            die "could not create the PostgreSQL role $role (see $log)"
    fi
    # Sent on stdin, so the password shows in no process list and no log.
    if ! pg_psql >>"$log" 2>&1 <<<"ALTER ROLE $role LOGIN $options PASSWORD '$password';"; then
        die "could not set up the PostgreSQL role $role (see $log)"
    fi
}

pg_ensure_app_database() {
    local log="$PG_ROOT/setup.log" has_db
    pg_ensure_role "$PG_OWNER_ROLE" "CREATEDB"
    pg_ensure_role "$PG_APP_ROLE" "NOCREATEDB"
    pg_ensure_role "$PG_READER_ROLE" "NOCREATEDB"
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
        # Every connection, local socket included, is checked with a scram-sha-256
        # password; the superuser's is set from a file only its OS user can read.
        rm -rf "$PG_DATA" "$PG_DATA.init"
        local pwfile="$PG_ROOT/initdb.pw"
        (umask 077 && credential postgres postgres >"$pwfile")
        if ((EUID == 0)); then
            chown "$PG_OS_USER" "$pwfile"
        fi
        if ! as_pg "$PG_BIN/initdb" -D "$PG_DATA.init" -U postgres --auth=scram-sha-256 \
            --pwfile="$pwfile" --encoding=UTF8 --no-locale >>"$PG_ROOT/initdb.log" 2>&1; then
            rm -f "$pwfile"
            die "could not create the PostgreSQL cluster with initdb (see $PG_ROOT/initdb.log)"
        fi
        rm -f "$pwfile"
        mv "$PG_DATA.init" "$PG_DATA"
    elif grep -qE '^[^#]*[[:space:]]trust([[:space:]]|$)' "$PG_DATA/pg_hba.conf"; then
        die "the PostgreSQL cluster in $PG_DATA was made before access control (it trusts connections without a password): run scripts/infra.sh reset (it deletes the local data)"
    fi
    if pg_running; then
        state="already running"
    else
        if port_open "$PG_PORT"; then
            die "port $PG_PORT (PostgreSQL) is already in use by a process this script did not start"
        fi
        # After a crash (`kill postgres`) postmaster.pid stays behind. PostgreSQL
        # ignores it while its pid is dead, but will not start if that pid now
        # belongs to another process: only then remove it.
        local stale
        stale="$(read_pid_file "$PG_DATA/postmaster.pid")"
        if [[ -n "$stale" && -d "/proc/$stale" && -z "$(pg_postmaster_pid)" ]]; then
            rm -f "$PG_DATA/postmaster.pid"
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
    echo "postgresql 15: $state on 127.0.0.1:$PG_PORT (db $PG_APP_DB, roles $PG_OWNER_ROLE, $PG_APP_ROLE, $PG_READER_ROLE; passwords in $CREDENTIALS_FILE), log $PG_LOG"
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

# SIGKILLs the postmaster (fault injection). Its children exit by themselves
# once they notice; any still there after 5s are killed too, since they would
# keep the old shared memory in use and block the next start.
pg_kill() {
    local pid children child
    pid="$(pg_postmaster_pid)"
    if [[ -z "$pid" ]]; then
        echo "postgresql: not running, nothing to kill"
        return 0
    fi
    children="$(pgrep -P "$pid")" || children=""
    kill -KILL "$pid" 2>/dev/null || true
    wait_pid_exit "$pid" 10 || die "PostgreSQL's postmaster (pid $pid) survived SIGKILL"
    local deadline=$((SECONDS + 5)) left
    for child in $children; do
        left=$((deadline - SECONDS))
        ((left >= 1)) || left=1
        if ! wait_pid_exit "$child" "$left" && pid_matches "$child" postgres; then
            kill -KILL "$child" 2>/dev/null || true
            wait_pid_exit "$child" 5 || die "PostgreSQL process $child survived SIGKILL"
        fi
    done
    echo "postgresql: killed the postmaster (pid $pid, SIGKILL); 'up postgres' restarts it with crash recovery"
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
