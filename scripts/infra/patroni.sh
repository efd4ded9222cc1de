# shellcheck shell=bash
# A replicated PostgreSQL for scripts/infra.sh (sourced by postgres.sh's pg_mode only when
# SHOPFLOW_PG_NODES asks for more than one node, or the data was made for several): one
# etcd and N PostgreSQL 15 nodes, each run by its own Patroni (Debian's patroni 3.0.2 and
# etcd-server 3.4), all on 127.0.0.1. It redefines postgres.sh's pg_up, pg_down, pg_kill
# and pg_status for the cluster.
#
# Node I (postgres-I) listens on SHOPFLOW_PG_PORT + I-1, its Patroni's REST API on
# SHOPFLOW_PATRONI_PORT + I-1 (default: the PostgreSQL port + 100); etcd's client port is
# SHOPFLOW_ETCD_PORT (default: the PostgreSQL port + 200), its peer port the next. Node I
# runs as the system user shopflow-pgI (root only; otherwise as the caller), so that a
# partition can drop what one node's processes send (nftables matches the sender's uid:
# `scripts/infra.sh cut postgres-I`).
#
# Synchronous replication, strict: a commit is acknowledged only once a synchronous standby
# has it, only that standby may be promoted, and with no standby left, commits wait rather
# than go on alone. Every acknowledged commit survives the loss of any one node.
#
# The timings (Patroni's dynamic configuration, kept in etcd):
#   ttl 6 s         the leader's key lives this long without a renewal: a dead leader is
#                   replaced after at most ttl + the promotion (under a second), and its
#                   successor takes writes once the other standby follows it and is made
#                   synchronous (strict mode: ~1 s more, wal_retrieve_retry_interval 500 ms,
#                   no replication slots to wait for)
#   loop_wait 1 s   how often each Patroni runs its loop (renews the key, checks the others)
#   retry_timeout 2 s   how long Patroni retries etcd or PostgreSQL before it gives up the
#                   leadership: a leader cut off from etcd demotes itself within
#                   loop_wait + 2 × retry_timeout = 5 s < ttl, before any standby may take over
# docs/measurements.md#postgres-failover has what they gave in `make chaos`.
#
# Closed by default, as the single node: scram-sha-256 on every connection (the service's
# roles as postgres.sh makes them, and Patroni's replication and pg_rewind users), etcd with
# authentication on (a user `patroni` limited to the cluster's keys; `root` for set-up),
# Patroni's REST API asking a password for anything that changes the cluster (switchover,
# restart, reinitialize). Every password is made at the first start in credentials.json.

PG_NODES_FILE="$PG_ROOT/nodes"  # the node count the cluster was made with
PG_MAX_NODES=9
PATRONI_PORT="${SHOPFLOW_PATRONI_PORT:-$((PG_PORT + 100))}"
ETCD_PORT="${SHOPFLOW_ETCD_PORT:-$((PG_PORT + 200))}"
ETCD_PEER_PORT=$((ETCD_PORT + 1))
ETCD_ROOT="$PG_ROOT/etcd"
ETCD_PID_FILE="$ETCD_ROOT/etcd.pid"
ETCD_LOG="$ETCD_ROOT/etcd.log"
PATRONI_SCOPE="shopflow"
PATRONI_NAMESPACE="/service/"
# What they bound: the header above. Writes away after a SIGKILL, by hand: 10.4-10.7 s at
# 8/1/3 s, 5.6-6.4 s at 6/1/2 s (docs/measurements.md#postgres-failover).
PATRONI_TTL=6
PATRONI_LOOP_WAIT=1
PATRONI_RETRY_TIMEOUT=2
PG_CLUSTER_READY_TIMEOUT=120
PG_REPLICATION_ROLE="replicator"
PG_REWIND_ROLE="rewinder"
PG_CUT_TABLE="shopflow_pg_${PG_PORT}"  # nftables table of `cut` (one per cluster)

PG_NODES=1  # pg_resolve_nodes

pg_valid_node_count() {
    [[ "$1" =~ ^[1-9][0-9]*$ ]] && (($1 <= PG_MAX_NODES))
}

# Sets PG_NODES: `up` takes SHOPFLOW_PG_NODES, else the recorded count; the others act on
# the recorded count. Another count than the data's needs `reset`.
pg_resolve_nodes() {
    local cmd="$1" recorded="" asked="${SHOPFLOW_PG_NODES:-}"
    [[ ! -f "$PG_NODES_FILE" ]] || recorded="$(tr -dc '0-9' <"$PG_NODES_FILE")"
    if [[ -n "$asked" ]] && ! pg_valid_node_count "$asked"; then
        die "SHOPFLOW_PG_NODES must be a node count from 1 to $PG_MAX_NODES, got '$asked'"
    fi
    if [[ "$cmd" == "up" && -n "$recorded" && -n "$asked" && "$asked" != "$recorded" ]]; then
        die "PostgreSQL's data in $PG_ROOT was made for $recorded node(s), not $asked: run scripts/infra.sh reset first (it stops everything and deletes the local data)"
    fi
    PG_NODES="${recorded:-${asked:-1}}"
    ((PG_NODES > 1)) || die "patroni.sh runs two nodes or more"
    local picked
    for picked in "${PG_PICKED[@]}"; do
        ((picked <= PG_NODES)) || die "no node postgres-$picked: the cluster has $PG_NODES"
    done
}

pg_node_port() { echo $((PG_PORT + $1 - 1)); }
pg_node_api_port() { echo $((PATRONI_PORT + $1 - 1)); }
pg_node_dir() { echo "$PG_ROOT/node-$1"; }
pg_node_user() {
    if ((EUID == 0)); then echo "shopflow-pg$1"; else id -un; fi
}

pg_cluster_ensure_packages() {
    pg_ensure_binaries
    if ! command -v patroni >/dev/null 2>&1 || ! command -v etcd >/dev/null 2>&1 ||
        ! command -v etcdctl >/dev/null 2>&1; then
        apt_install patroni etcd-server etcd-client
        # Debian starts its own etcd (port 2379, /var/lib/etcd): not ours.
        if [[ -x /etc/init.d/etcd ]]; then
            /etc/init.d/etcd stop >>"$INFRA_DIR/apt.log" 2>&1 || true
        fi
        pkill -x etcd -U etcd 2>/dev/null || true
    fi
    command -v patroni >/dev/null 2>&1 || die "installed patroni but it is not on PATH"
}

pg_cluster_ensure_users() {
    ((EUID == 0)) || return 0
    local i user
    for ((i = 1; i <= PG_NODES; i++)); do
        user="$(pg_node_user "$i")"
        if ! id -u "$user" >/dev/null 2>&1; then
            useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$user" ||
                die "could not create the system user $user to run PostgreSQL node $i"
        fi
    done
}

# ---------------------------------------------------------------- etcd

etcd_pid() {
    local pid
    pid="$(read_pid_file "$ETCD_PID_FILE")"
    if [[ -n "$pid" ]] && pid_matches "$pid" etcd "$ETCD_ROOT/data"; then
        echo "$pid"
    fi
}

etcd_ctl() {
    ETCDCTL_API=3 timeout 10 etcdctl --endpoints="http://127.0.0.1:$ETCD_PORT" --dial-timeout=3s "$@"
}

etcd_root_ctl() {
    etcd_ctl --user "root:$(credential etcd root)" "$@"
}

etcd_up() {
    make_dir "$ETCD_ROOT"
    if [[ -n "$(etcd_pid)" ]]; then
        return 0
    fi
    port_open "$ETCD_PORT" && die "port $ETCD_PORT (etcd) is already in use by a process this script did not start"
    # One member; the heartbeat and election defaults (100 ms, 1 s) are etcd's own.
    setsid etcd --name shopflow-etcd --data-dir "$ETCD_ROOT/data" \
        --listen-client-urls "http://127.0.0.1:$ETCD_PORT" \
        --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
        --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-cluster "shopflow-etcd=http://127.0.0.1:$ETCD_PEER_PORT" \
        --enable-v2=false --logger=zap --log-outputs="$ETCD_LOG" \
        </dev/null >>"$ETCD_ROOT/etcd.out" 2>&1 9>&- &
    echo $! >"$ETCD_PID_FILE"
    local deadline=$((SECONDS + 30))
    until etcd_ctl endpoint health >/dev/null 2>&1 || etcd_root_ctl endpoint health >/dev/null 2>&1; do
        if [[ -z "$(etcd_pid)" ]] || ((SECONDS >= deadline)); then
            tail_log "$ETCD_LOG"
            die "etcd did not answer on 127.0.0.1:$ETCD_PORT (see $ETCD_LOG)"
        fi
        sleep 0.2
    done
    etcd_ensure_auth
}

# The first start turns authentication on: `root` (set-up only) and `patroni`, whose role
# may read and write the cluster's keys and nothing else.
etcd_ensure_auth() {
    local marker="$ETCD_ROOT/auth" log="$ETCD_ROOT/setup.log"
    [[ -f "$marker" ]] && return 0
    {
        etcd_ctl user add root --new-user-password="$(credential etcd root)" --interactive=false &&
            etcd_ctl role add patroni &&
            etcd_ctl role grant-permission patroni --prefix=true readwrite "$PATRONI_NAMESPACE$PATRONI_SCOPE/" &&
            etcd_ctl user add patroni --new-user-password="$(credential etcd patroni)" --interactive=false &&
            etcd_ctl user grant-role patroni patroni &&
            etcd_ctl auth enable
    } >>"$log" 2>&1 || die "could not turn etcd's authentication on (see $log)"
    touch "$marker"
}

etcd_down() {
    local pid
    pid="$(etcd_pid)"
    [[ -n "$pid" ]] || return 0
    kill -TERM "$pid" 2>/dev/null || true
    wait_pid_exit "$pid" 20 || kill -KILL "$pid" 2>/dev/null || true
    wait_pid_exit "$pid" 5 || die "etcd (pid $pid) did not stop"
    echo "etcd: stopped"
}

# ---------------------------------------------------------------- Patroni nodes

# Patroni keeps no pid file: its process is the one running node $1's configuration.
pg_node_patroni_pid() {
    local pid
    for pid in $(pgrep -f -- "bin/patroni $(pg_node_dir "$1")/patroni.yml\$"); do
        if pid_matches "$pid" python; then
            echo "$pid"
            return 0
        fi
    done
}

pg_node_postmaster_pid() {
    local pid
    pid="$(read_pid_file "$(pg_node_dir "$1")/data/postmaster.pid")"
    if [[ -n "$pid" ]] && pid_matches "$pid" "$PG_BIN/postgres"; then
        echo "$pid"
    fi
}

# Node $1's patroni.yml, written on every start (the credentials file is the truth). The
# cluster-wide part (bootstrap.dcs) is read only when the cluster is first made; after
# that it lives in etcd (`patronictl edit-config` changes it).
pg_node_write_config() {
    local i="$1" dir sock
    dir="$(pg_node_dir "$i")"
    sock="$(pg_socket_dir)/$i"
    make_dir "$sock"
    (
        umask 077
        cat >"$dir/patroni.yml.tmp" <<EOF
scope: $PATRONI_SCOPE
namespace: $PATRONI_NAMESPACE
name: postgres-$i
log:
  level: INFO
restapi:
  listen: 127.0.0.1:$(pg_node_api_port "$i")
  connect_address: 127.0.0.1:$(pg_node_api_port "$i")
  authentication:
    username: patroni
    password: $(credential patroni rest)
etcd3:
  hosts: 127.0.0.1:$ETCD_PORT
  username: patroni
  password: $(credential etcd patroni)
bootstrap:
  dcs:
    ttl: $PATRONI_TTL
    loop_wait: $PATRONI_LOOP_WAIT
    retry_timeout: $PATRONI_RETRY_TIMEOUT
    maximum_lag_on_failover: 1048576
    synchronous_mode: true
    synchronous_mode_strict: true
    postgresql:
      use_pg_rewind: true
      # No replication slots: a new leader makes its standbys' slots only on its second
      # loop after the promotion, and until then strict mode holds every commit (2 s
      # more writes away). wal_keep_size keeps the WAL a standby away a while needs.
      use_slots: false
      parameters:
        wal_keep_size: 512MB
        max_connections: 200
        shared_buffers: 256MB
        wal_log_hints: 'on'
        hot_standby: 'on'
        wal_sender_timeout: 5s
        wal_receiver_timeout: 5s
        wal_retrieve_retry_interval: 500ms
        password_encryption: scram-sha-256
  initdb:
    - encoding: UTF8
    - no-locale
    - auth-host: scram-sha-256
    - auth-local: scram-sha-256
postgresql:
  listen: 127.0.0.1:$(pg_node_port "$i")
  connect_address: 127.0.0.1:$(pg_node_port "$i")
  data_dir: $dir/data
  bin_dir: $PG_BIN
  pgpass: $dir/pgpass
  use_unix_socket: false
  authentication:
    superuser:
      username: postgres
      password: $(credential postgres postgres)
    replication:
      username: $PG_REPLICATION_ROLE
      password: $(credential postgres "$PG_REPLICATION_ROLE")
    rewind:
      username: $PG_REWIND_ROLE
      password: $(credential postgres "$PG_REWIND_ROLE")
  parameters:
    unix_socket_directories: '$sock'
  pg_hba:
    - local all all scram-sha-256
    - host all all 127.0.0.1/32 scram-sha-256
    - host replication $PG_REPLICATION_ROLE 127.0.0.1/32 scram-sha-256
EOF
    )
    mv "$dir/patroni.yml.tmp" "$dir/patroni.yml"
    if ((EUID == 0)); then
        chown "$(pg_node_user "$i")" "$dir/patroni.yml" "$sock"
    fi
}

pg_node_start() {
    local i="$1" dir
    dir="$(pg_node_dir "$i")"
    [[ -z "$(pg_node_patroni_pid "$i")" ]] || return 1
    make_dir "$dir"
    if ((EUID == 0)); then
        chown "$(pg_node_user "$i")" "$dir"
        [[ ! -d "$dir/data" ]] || chown -R "$(pg_node_user "$i")" "$dir/data"
    fi
    # A postmaster left by a killed Patroni would be adopted by the new one; one whose pid
    # file names a dead pid is stale.
    pg_node_write_config "$i"
    if port_open "$(pg_node_api_port "$i")"; then
        die "port $(pg_node_api_port "$i") (Patroni's REST API of node $i) is in use by a process this script did not start"
    fi
    if ((EUID == 0)); then
        setsid runuser -u "$(pg_node_user "$i")" -- patroni "$dir/patroni.yml" \
            </dev/null >>"$dir/patroni.log" 2>&1 9>&- &
    else
        setsid patroni "$dir/patroni.yml" </dev/null >>"$dir/patroni.log" 2>&1 9>&- &
    fi
}

# Node $1's Patroni REST API: GET $2, the body on stdout; fails unless 200.
pg_node_api() {
    curl -sf --max-time 3 "http://127.0.0.1:$(pg_node_api_port "$1")$2"
}

# Node $1's Patroni REST API, asking for a change: POST $2 with the JSON body $3.
pg_node_api_post() {
    curl -sf --max-time 30 -u "patroni:$(credential patroni rest)" \
        -H 'Content-Type: application/json' -d "$3" \
        "http://127.0.0.1:$(pg_node_api_port "$1")$2"
}

# The node that leads (1..N), from whichever Patroni answers; empty if none.
pg_leader_node() {
    local i body
    for ((i = 1; i <= PG_NODES; i++)); do
        body="$(pg_node_api "$i" /cluster 2>/dev/null)" || continue
        python3 -c '
import json, sys
for m in json.loads(sys.argv[1]).get("members", []):
    if m.get("role") == "leader" and m.get("state") == "running":
        print(m["name"].rsplit("-", 1)[1])
        break
' "$body"
        return 0
    done
}

# True when the cluster has a running leader and a synchronous standby (strict mode: with
# none, commits wait), and every node whose Patroni runs has its PostgreSQL running too (a
# node started again after a failover may first rewind or copy the new leader's data).
pg_cluster_ready() {
    local i body running=0
    for ((i = 1; i <= PG_NODES; i++)); do
        [[ -z "$(pg_node_patroni_pid "$i")" ]] || running=$((running + 1))
    done
    for ((i = 1; i <= PG_NODES; i++)); do
        body="$(pg_node_api "$i" /cluster 2>/dev/null)" || continue
        python3 -c '
import json, sys
members = [m for m in json.loads(sys.argv[1]).get("members", [])
           if m.get("state") in ("running", "streaming")]
roles = [m.get("role") for m in members]
ready = "leader" in roles and "sync_standby" in roles and len(members) >= int(sys.argv[2])
sys.exit(0 if ready else 1)
' "$body" "$running"
        return
    done
    return 1
}

pg_up() {
    pg_cluster_ensure_packages
    pg_ensure_os_user
    pg_cluster_ensure_users
    ensure_cluster_credentials
    local sock i
    local -a nodes_started=()
    sock="$(pg_socket_dir)"
    make_dir "$PG_ROOT"
    make_dir "$sock"
    chmod 755 "$sock"
    [[ -f "$PG_NODES_FILE" ]] || echo "$PG_NODES" >"$PG_NODES_FILE"
    etcd_up
    for ((i = 1; i <= PG_NODES; i++)); do
        if pg_node_start "$i"; then
            nodes_started+=("$i")
        fi
    done
    local deadline=$((SECONDS + PG_CLUSTER_READY_TIMEOUT)) leader
    until pg_cluster_ready; do
        if ((SECONDS >= deadline)); then
            for ((i = 1; i <= PG_NODES; i++)); do tail_log "$(pg_node_dir "$i")/patroni.log"; done
            die "the PostgreSQL cluster has no leader with a synchronous standby after ${PG_CLUSTER_READY_TIMEOUT}s (see $PG_ROOT/node-*/patroni.log)"
        fi
        sleep 0.5
    done
    leader="$(pg_leader_node)"
    [[ -n "$leader" ]] || die "the PostgreSQL cluster lost its leader while starting"
    # The roles and database of the service, made on the leader (they replicate).
    local leader_port
    leader_port="$(pg_node_port "$leader")"
    PG_PORT="$leader_port" pg_ensure_app_database
    echo "postgresql 15 cluster: ${#nodes_started[@]} of $PG_NODES node(s) started; leader postgres-$leader on 127.0.0.1:$leader_port, nodes on 127.0.0.1:$(pg_node_port 1)-$(pg_node_port "$PG_NODES"), Patroni's REST API on $(pg_node_api_port 1)-$(pg_node_api_port "$PG_NODES"), etcd on $ETCD_PORT (synchronous_mode_strict; logs in $PG_ROOT/node-*/patroni.log)"
}

# Stops Patroni on node $1 (it stops its PostgreSQL first: a fast shutdown).
pg_node_stop() {
    local i="$1" pid
    pid="$(pg_node_patroni_pid "$i")"
    if [[ -z "$pid" ]]; then
        echo "postgres-$i: not running"
        return 0
    fi
    kill -TERM "$pid" 2>/dev/null || true
    if ! wait_pid_exit "$pid" 60; then
        kill -KILL "$pid" 2>/dev/null || true
        wait_pid_exit "$pid" 5 || die "Patroni of postgres-$i (pid $pid) did not stop"
    fi
    pg_node_kill_postmaster "$i"
    echo "postgres-$i: stopped"
}

# SIGKILLs node $1's postmaster if one still runs, and waits for its children (they hold
# the shared memory the next start needs).
pg_node_kill_postmaster() {
    local pid children child
    pid="$(pg_node_postmaster_pid "$1")"
    [[ -n "$pid" ]] || return 0
    children="$(pgrep -P "$pid")" || children=""
    kill -KILL "$pid" 2>/dev/null || true
    wait_pid_exit "$pid" 10 || die "the postmaster of postgres-$1 (pid $pid) survived SIGKILL"
    for child in $children; do
        if ! wait_pid_exit "$child" 5 && pid_matches "$child" postgres; then
            kill -KILL "$child" 2>/dev/null || true
        fi
    done
}

pg_targets() {
    if ((${#PG_PICKED[@]} > 0)); then
        echo "${PG_PICKED[@]}"
    else
        seq 1 "$PG_NODES"
    fi
}

pg_down() {
    local i
    for i in $(pg_targets); do
        pg_node_stop "$i"
    done
    if ((${#PG_PICKED[@]} == 0)); then
        pg_cut_heal_all
        etcd_down
    fi
}

# SIGKILL of a node's Patroni and its postmaster together: the host lost. `kill postgres`
# kills the leader's; `kill postgres-I` node I's.
pg_kill() {
    local targets i pid
    if ((${#PG_PICKED[@]} > 0)); then
        targets="${PG_PICKED[*]}"
    else
        targets="$(pg_leader_node)"
        [[ -n "$targets" ]] || die "the PostgreSQL cluster has no leader to kill"
    fi
    for i in $targets; do
        pid="$(pg_node_patroni_pid "$i")"
        [[ -z "$pid" ]] || kill -KILL "$pid" 2>/dev/null || true
        pg_node_kill_postmaster "$i"
        [[ -z "$pid" ]] || wait_pid_exit "$pid" 10 || die "Patroni of postgres-$i survived SIGKILL"
        echo "postgres-$i: killed (Patroni and its postmaster, SIGKILL); 'up postgres' starts it again"
    done
}

pg_status() {
    local i ok=0 leader
    if [[ -z "$(etcd_pid)" ]]; then
        echo "etcd: not running"
        ok=1
    fi
    leader="$(pg_leader_node)"
    for ((i = 1; i <= PG_NODES; i++)); do
        if [[ -n "$(pg_node_patroni_pid "$i")" ]] && pg_node_api "$i" /health >/dev/null 2>&1; then
            echo "postgres-$i: running on 127.0.0.1:$(pg_node_port "$i")$([[ "$i" == "$leader" ]] && echo ' (leader)')"
        else
            echo "postgres-$i: not running"
            ok=1
        fi
    done
    [[ -n "$leader" ]] || {
        echo "postgresql cluster: no leader"
        ok=1
    }
    return "$ok"
}

# ---------------------------------------------------------------- partitions

# `cut postgres-I`: node I's processes can no longer reach etcd or the other nodes, nor
# they it (nftables, matching the sending process's uid on loopback: needs root), while it
# keeps running and the service can still reach it. `heal` removes every cut.
pg_cut() {
    ((EUID == 0)) || die "cut needs root (nftables)"
    ensure_command nft nftables
    local i="$1" j uid others=()
    uid="$(id -u "$(pg_node_user "$i")")"
    others+=("$ETCD_PORT")
    for ((j = 1; j <= PG_NODES; j++)); do
        ((j == i)) || others+=("$(pg_node_port "$j")" "$(pg_node_api_port "$j")")
    done
    nft add table inet "$PG_CUT_TABLE"
    nft add chain inet "$PG_CUT_TABLE" out "{ type filter hook output priority 0; policy accept; }"
    local ports
    ports="$(IFS=,; echo "${others[*]}")"
    # What node I sends to etcd and to the others...
    nft add rule inet "$PG_CUT_TABLE" out meta skuid "$uid" ip daddr 127.0.0.1 tcp dport "{ $ports }" drop
    # ...and what the others send to node I's PostgreSQL and REST API.
    for ((j = 1; j <= PG_NODES; j++)); do
        ((j == i)) && continue
        nft add rule inet "$PG_CUT_TABLE" out meta skuid "$(id -u "$(pg_node_user "$j")")" ip daddr 127.0.0.1 \
            tcp dport "{ $(pg_node_port "$i"), $(pg_node_api_port "$i") }" drop
    done
    echo "postgres-$i: cut off from etcd and the other nodes (nftables table $PG_CUT_TABLE)"
}

pg_cut_heal_all() {
    ((EUID == 0)) || return 0
    command -v nft >/dev/null 2>&1 || return 0
    if nft list table inet "$PG_CUT_TABLE" >/dev/null 2>&1; then
        nft delete table inet "$PG_CUT_TABLE"
        echo "postgresql cluster: every cut healed"
    fi
}

# The cluster's own passwords: Patroni's replication and pg_rewind roles, its REST API's
# user, etcd's root and patroni users.
ensure_cluster_credentials() {
    EXTRA_CREDENTIALS="postgres:$PG_REPLICATION_ROLE postgres:$PG_REWIND_ROLE patroni:rest etcd:root etcd:patroni" \
        ensure_credentials
}
