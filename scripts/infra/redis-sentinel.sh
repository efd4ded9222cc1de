# shellcheck shell=bash
# Redis with Sentinel for scripts/infra.sh, sourced by redis.sh's redis_mode when `up` asks
# for it (SHOPFLOW_REDIS_SENTINEL=1) or it is the layout last started (redis/mode). It
# redefines redis.sh's redis_up, redis_down, redis_kill and redis_status, and adds the
# replica's and the Sentinels' users to the servers' ACL file (redis_more_acl_users).
#
# Two Redis servers, node 1 on SHOPFLOW_REDIS_PORT and node 2 on +1, one the primary and the
# other its replica (whichever the Sentinels last promoted), and three Sentinels on +2, +3
# and +4, all on 127.0.0.1, each in its dir under $INFRA_DIR/redis (node-I, sentinel-I).
# The Sentinels monitor the primary as `shopflow`, with a quorum of 2: two must find it down
# before a failover, and a failover needs a majority (2 of 3) to elect the Sentinel that
# runs it, so one Sentinel lost costs nothing.
#
# Access control as for one server: the nodes load redis.sh's ACL file (default user off;
# admin, shopflow), plus `replica`, the user the replica authenticates to the primary as
# (masteruser/masterauth in each node's redis.conf, mode 0600: either node may be the
# replica), and `sentinel`, the Sentinels' user on the nodes (sentinel auth-user/auth-pass).
# The Sentinels take clients with a password too, from users of their own (section
# "sentinel" of credentials.json): `admin` (operators, every command), `shopflow` (the
# service: it asks where the primary is), `sentinel` (the Sentinels among themselves:
# sentinel-user/sentinel-pass). Every password is made at the first start.
#
# A Sentinel's config is written at its first start and from then on kept by the Sentinel
# itself (it records there the primary it follows, the replicas and the other Sentinels it
# found, its epoch and its id). The nodes' configs are written at every start: a node
# started while another node is the primary (as the Sentinels say, else as the node says,
# else as the Sentinels' config files record when nothing runs) starts as its replica, so
# that a restarted old primary never comes back as a second, empty primary.

REDIS_SENTINEL_SERVICE=shopflow # the monitored primary's name (SHOPFLOW_REDIS_SENTINEL_SERVICE)
REDIS_SENTINEL_QUORUM=2
# A primary that answers no PING for this long is down for a Sentinel (SDOWN); with the
# quorum's agreement (ODOWN) a failover starts. It bounds how long a dead primary goes
# unnoticed: with it, Redis is away for 2-4 s after the primary dies (docs/operating.md,
# "Redis with Sentinel"). Lower risks a failover for a pause of the machine (a loaded
# 2-core host stalls a process for hundreds of milliseconds).
REDIS_SENTINEL_DOWN_AFTER_MS=2000
# How long a failover may take before it is given up (the promoted replica does not answer
# as a primary): another is tried after twice this; also how long before a node that
# follows the wrong primary is pointed at the right one. A promotion on loopback takes
# about a second, so 10 s is ample; Redis's default, 180 s, would leave the shop without
# Redis for six minutes after a stuck failover.
REDIS_SENTINEL_FAILOVER_TIMEOUT_MS=10000
REDIS_SENTINEL_READY_TIMEOUT=30
REDIS_NODE_COUNT=2
REDIS_SENTINEL_COUNT=3

# Checks that every port of the set is a port.
redis_sentinel_layout() {
    local last=$((REDIS_PORT + REDIS_NODE_COUNT + REDIS_SENTINEL_COUNT - 1))
    ((last <= 65535)) ||
        die "the Redis Sentinel set would listen up to port $last, above 65535: lower SHOPFLOW_REDIS_PORT"
}

# Sets RNODE_* for node $1 (1 or 2).
redis_node() {
    RNODE="$1"
    RNODE_PORT=$((REDIS_PORT + $1 - 1))
    RNODE_DIR="$REDIS_ROOT/node-$1"
    RNODE_CONF="$RNODE_DIR/redis.conf"
    RNODE_PID_FILE="$RNODE_DIR/redis.pid"
    RNODE_LOG="$RNODE_DIR/redis.log"
}

# Sets SENT_* for Sentinel $1 (1 to 3).
redis_sentinel() {
    SENT="$1"
    SENT_PORT=$((REDIS_PORT + REDIS_NODE_COUNT + $1 - 1))
    SENT_DIR="$REDIS_ROOT/sentinel-$1"
    SENT_CONF="$SENT_DIR/sentinel.conf"
    SENT_PID_FILE="$SENT_DIR/sentinel.pid"
    SENT_LOG="$SENT_DIR/sentinel.log"
}

redis_node_pid() {
    local pid
    pid="$(read_pid_file "$RNODE_PID_FILE")"
    if [[ -n "$pid" ]] && pid_matches "$pid" redis-server ":$RNODE_PORT"; then
        echo "$pid"
    fi
}

redis_sentinel_pid() {
    local pid
    pid="$(read_pid_file "$SENT_PID_FILE")"
    if [[ -n "$pid" ]] && pid_matches "$pid" redis ":$SENT_PORT" sentinel; then
        echo "$pid"
    fi
}

# The admin passwords, read once (each read is a python3 start).
REDIS_NODE_ADMIN_AUTH=""
REDIS_SENTINEL_ADMIN_AUTH=""

redis_node_cli() {
    [[ -n "$REDIS_NODE_ADMIN_AUTH" ]] || REDIS_NODE_ADMIN_AUTH="$(credential redis admin)"
    REDISCLI_AUTH="$REDIS_NODE_ADMIN_AUTH" timeout 5 redis-cli --no-auth-warning \
        -h 127.0.0.1 -p "$RNODE_PORT" --user admin "$@"
}

redis_sentinel_cli() {
    [[ -n "$REDIS_SENTINEL_ADMIN_AUTH" ]] || REDIS_SENTINEL_ADMIN_AUTH="$(credential sentinel admin)"
    REDISCLI_AUTH="$REDIS_SENTINEL_ADMIN_AUTH" timeout 5 redis-cli --no-auth-warning \
        -h 127.0.0.1 -p "$SENT_PORT" --user admin "$@"
}

# The node's role as it says (master, slave), or nothing when it does not answer.
redis_node_role() {
    redis_node_cli role 2>/dev/null | head -n1
}

redis_sha256() {
    local hash
    hash="$(printf '%s' "$1" | sha256sum)"
    echo "${hash%% *}"
}

# The nodes' users beside admin and shopflow (redis.sh's redis_write_acl): the replica's
# (what replication needs) and the Sentinels' (what monitoring and a failover need, as
# Redis's Sentinel documentation lists it).
redis_more_acl_users() {
    echo "user replica on #$(redis_password_hash replica) resetkeys resetchannels -@all +psync +replconf +ping"
    local sentinel="resetkeys allchannels -@all +multi +slaveof +replicaof +ping +exec"
    sentinel+=" +subscribe +config|rewrite +role +publish +info +client|setname +client|kill"
    sentinel+=" +script|kill"
    echo "user sentinel on #$(redis_password_hash sentinel) $sentinel"
}

redis_sentinel_credentials() {
    EXTRA_CREDENTIALS="redis:replica redis:sentinel sentinel:admin sentinel:shopflow sentinel:sentinel" \
        ensure_credentials
}

# The port of the primary as the first Sentinel that answers says; nothing if none does.
redis_sentinel_primary_port() {
    local i answer
    for ((i = 1; i <= REDIS_SENTINEL_COUNT; i++)); do
        redis_sentinel "$i"
        [[ -n "$(redis_sentinel_pid)" ]] || continue
        answer="$(redis_sentinel_cli sentinel get-master-addr-by-name "$REDIS_SENTINEL_SERVICE" 2>/dev/null)" ||
            continue
        answer="$(sed -n 2p <<<"$answer")"
        if [[ "$answer" =~ ^[0-9]+$ ]]; then
            echo "$answer"
            return 0
        fi
    done
}

# The port of the primary the Sentinels' config files record (each Sentinel rewrites its
# own on a failover), the file with the highest config epoch winning; nothing if none
# records one. For a set started again with nothing running: after a failover, node 2
# may be the primary they know, and a node 1 started as the primary beside them would be
# a second one.
redis_sentinel_recorded_primary_port() {
    local i best_epoch=-1 epoch port best_port=""
    for ((i = 1; i <= REDIS_SENTINEL_COUNT; i++)); do
        redis_sentinel "$i"
        [[ -s "$SENT_CONF" ]] || continue
        port="$(awk -v s="$REDIS_SENTINEL_SERVICE" '$1 == "sentinel" && $2 == "monitor" && $3 == s { print $5 }' "$SENT_CONF")"
        epoch="$(awk -v s="$REDIS_SENTINEL_SERVICE" '$1 == "sentinel" && $2 == "config-epoch" && $3 == s { print $4 }' "$SENT_CONF")"
        [[ "$port" =~ ^[0-9]+$ ]] || continue
        [[ "$epoch" =~ ^[0-9]+$ ]] || epoch=0
        if ((epoch > best_epoch)); then
            best_epoch="$epoch"
            best_port="$port"
        fi
    done
    [[ -z "$best_port" ]] || echo "$best_port"
}

# The node (1 or 2) listening on port $1; nothing for another port or none.
redis_node_on_port() {
    local i
    for ((i = 1; i <= REDIS_NODE_COUNT; i++)); do
        redis_node "$i"
        if [[ -n "$1" && "$1" == "$RNODE_PORT" ]]; then
            echo "$i"
            return 0
        fi
    done
}

# The node (1 or 2) that is the primary: as the running Sentinels say, else the running
# node that says it is a master, else as the Sentinels' config files record; nothing if
# none tells.
redis_primary_node() {
    local node i
    node="$(redis_node_on_port "$(redis_sentinel_primary_port)")"
    if [[ -n "$node" ]]; then
        echo "$node"
        return 0
    fi
    for ((i = 1; i <= REDIS_NODE_COUNT; i++)); do
        redis_node "$i"
        if [[ -n "$(redis_node_pid)" && "$(redis_node_role)" == "master" ]]; then
            echo "$i"
            return 0
        fi
    done
    redis_node_on_port "$(redis_sentinel_recorded_primary_port)"
}

# Writes node $RNODE's config (mode 0600: it holds the replica user's password); with a
# port in $1, as that primary's replica.
redis_node_write_conf() {
    local primary_port="${1:-}"
    make_dir "$RNODE_DIR"
    (
        umask 077
        {
            echo "# Written by scripts/infra.sh at every start (redis-sentinel.sh)."
            echo "bind 127.0.0.1"
            echo "port $RNODE_PORT"
            echo "daemonize yes"
            echo "pidfile $RNODE_PID_FILE"
            echo "dir $RNODE_DIR"
            echo "logfile $RNODE_LOG"
            echo "aclfile $REDIS_ACL_FILE"
            echo 'save ""'
            echo "appendonly no"
            # A replica (re)joining is sent the data set at once, not after Redis's 5 s
            # wait for more replicas to share the transfer: there is one.
            echo "repl-diskless-sync-delay 0"
            echo "masteruser replica"
            echo "masterauth $(credential redis replica)"
            if [[ -n "$primary_port" ]]; then
                echo "replicaof 127.0.0.1 $primary_port"
            fi
        } >"$RNODE_CONF.tmp"
    )
    mv "$RNODE_CONF.tmp" "$RNODE_CONF"
}

# Starts node $RNODE (as the replica of the primary on port $1, if given) unless it runs.
redis_node_start() {
    local primary_port="${1:-}"
    if [[ -n "$(redis_node_pid)" ]]; then
        redis_node_cli acl load >/dev/null 2>&1 ||
            die "Redis node $RNODE on 127.0.0.1:$RNODE_PORT did not load $REDIS_ACL_FILE as admin: run scripts/infra.sh reset"
        echo "redis node $RNODE: already running on 127.0.0.1:$RNODE_PORT (pid $(redis_node_pid))"
        return 0
    fi
    rm -f "$RNODE_PID_FILE"
    port_open "$RNODE_PORT" &&
        die "port $RNODE_PORT (Redis node $RNODE) is already in use by a process this script did not start"
    redis_node_write_conf "$primary_port"
    if ! (cd "$RNODE_DIR" && redis-server "$RNODE_CONF" 9>&-) >>"$RNODE_DIR/start.log" 2>&1; then
        tail_log "$RNODE_LOG"
        die "could not start Redis node $RNODE on 127.0.0.1:$RNODE_PORT (see $RNODE_LOG)"
    fi
    local deadline=$((SECONDS + REDIS_READY_TIMEOUT))
    until [[ "$(redis_node_cli ping 2>/dev/null)" == "PONG" && -n "$(redis_node_pid)" ]]; do
        if ((SECONDS >= deadline)); then
            tail_log "$RNODE_LOG"
            die "Redis node $RNODE did not answer PING on 127.0.0.1:$RNODE_PORT within ${REDIS_READY_TIMEOUT}s (see $RNODE_LOG)"
        fi
        sleep 0.1
    done
    local as="the primary"
    [[ -z "$primary_port" ]] || as="replica of 127.0.0.1:$primary_port"
    echo "redis node $RNODE: started on 127.0.0.1:$RNODE_PORT as $as (pid $(redis_node_pid)), log $RNODE_LOG"
}

# Writes Sentinel $SENT's config at its first start, monitoring the primary on port $1.
redis_sentinel_write_conf() {
    local primary_port="$1"
    [[ -s "$SENT_CONF" ]] && return 0
    make_dir "$SENT_DIR"
    local client="resetkeys resetchannels -@all +ping +auth +hello +client|setname"
    client+=" +sentinel|masters +sentinel|master"
    client+=" +sentinel|get-master-addr-by-name +sentinel|sentinels +sentinel|replicas"
    client+=" +sentinel|slaves"
    (
        umask 077
        cat >"$SENT_CONF.tmp" <<EOF
# Written by scripts/infra.sh at this Sentinel's first start (redis-sentinel.sh); the
# Sentinel rewrites it since (the primary it follows, what it found, its epoch).
bind 127.0.0.1
port $SENT_PORT
daemonize yes
pidfile $SENT_PID_FILE
logfile $SENT_LOG
dir $SENT_DIR
sentinel resolve-hostnames no
sentinel monitor $REDIS_SENTINEL_SERVICE 127.0.0.1 $primary_port $REDIS_SENTINEL_QUORUM
sentinel down-after-milliseconds $REDIS_SENTINEL_SERVICE $REDIS_SENTINEL_DOWN_AFTER_MS
sentinel failover-timeout $REDIS_SENTINEL_SERVICE $REDIS_SENTINEL_FAILOVER_TIMEOUT_MS
sentinel parallel-syncs $REDIS_SENTINEL_SERVICE 1
sentinel auth-user $REDIS_SENTINEL_SERVICE sentinel
sentinel auth-pass $REDIS_SENTINEL_SERVICE $(credential redis sentinel)
sentinel sentinel-user sentinel
sentinel sentinel-pass $(credential sentinel sentinel)
user default off resetkeys resetchannels -@all
user admin on #$(redis_sha256 "$(credential sentinel admin)") ~* &* +@all
user shopflow on #$(redis_sha256 "$(credential sentinel shopflow)") $client
user sentinel on #$(redis_sha256 "$(credential sentinel sentinel)") ~* &* +@all
EOF
    )
    mv "$SENT_CONF.tmp" "$SENT_CONF"
}

redis_sentinel_start() {
    local primary_port="$1"
    if [[ -n "$(redis_sentinel_pid)" ]]; then
        echo "redis sentinel $SENT: already running on 127.0.0.1:$SENT_PORT (pid $(redis_sentinel_pid))"
        return 0
    fi
    rm -f "$SENT_PID_FILE"
    port_open "$SENT_PORT" &&
        die "port $SENT_PORT (Redis Sentinel $SENT) is already in use by a process this script did not start"
    redis_sentinel_write_conf "$primary_port"
    if ! (cd "$SENT_DIR" && redis-sentinel "$SENT_CONF" 9>&-) >>"$SENT_DIR/start.log" 2>&1; then
        tail_log "$SENT_LOG"
        die "could not start Redis Sentinel $SENT on 127.0.0.1:$SENT_PORT (see $SENT_LOG)"
    fi
    echo "redis sentinel $SENT: started on 127.0.0.1:$SENT_PORT, log $SENT_LOG"
}

# True when Sentinel $SENT answers, follows a primary that is up and sees the replica and
# the other Sentinels (so that it can take part in a failover).
redis_sentinel_ready() {
    local fields
    fields="$(redis_sentinel_cli sentinel master "$REDIS_SENTINEL_SERVICE" 2>/dev/null)" || return 1
    local flags replicas others
    flags="$(sed -n '/^flags$/{n;p}' <<<"$fields")"
    replicas="$(sed -n '/^num-slaves$/{n;p}' <<<"$fields")"
    others="$(sed -n '/^num-other-sentinels$/{n;p}' <<<"$fields")"
    [[ "$flags" == "master" && "${replicas:-0}" -ge $((REDIS_NODE_COUNT - 1)) &&
        "${others:-0}" -ge $((REDIS_SENTINEL_COUNT - 1)) ]]
}

# True when node $RNODE answers and, as a replica, its link to the primary is up.
redis_node_ready() {
    local info
    info="$(redis_node_cli info replication 2>/dev/null | tr -d '\r')" || return 1
    [[ "$info" == *"role:master"* || "$info" == *"master_link_status:up"* ]]
}

redis_up() {
    redis_ensure_installed
    command -v redis-sentinel >/dev/null 2>&1 || apt_install redis-sentinel
    redis_sentinel_credentials
    make_dir "$REDIS_ROOT"
    redis_write_acl
    local primary i others=()
    primary="$(redis_primary_node)"
    primary="${primary:-1}"
    redis_node "$primary"
    local primary_port="$RNODE_PORT"
    # The primary first (a replica started first would wait for it), then the other.
    redis_node_start
    for ((i = 1; i <= REDIS_NODE_COUNT; i++)); do
        ((i == primary)) || others+=("$i")
    done
    for i in "${others[@]}"; do
        redis_node "$i"
        redis_node_start "$primary_port"
    done
    for ((i = 1; i <= REDIS_SENTINEL_COUNT; i++)); do
        redis_sentinel "$i"
        redis_sentinel_start "$primary_port"
    done
    local deadline=$((SECONDS + REDIS_SENTINEL_READY_TIMEOUT)) pending
    while :; do
        pending=""
        for ((i = 1; i <= REDIS_NODE_COUNT; i++)); do
            redis_node "$i"
            redis_node_ready || pending="Redis node $i on 127.0.0.1:$RNODE_PORT (log $RNODE_LOG)"
        done
        for ((i = 1; i <= REDIS_SENTINEL_COUNT; i++)); do
            redis_sentinel "$i"
            redis_sentinel_ready && continue
            pending="Redis Sentinel $i on 127.0.0.1:$SENT_PORT (log $SENT_LOG)"
            if [[ -z "$(redis_sentinel_pid)" ]] && ! port_open "$SENT_PORT"; then
                tail_log "$SENT_LOG"
                die "Redis Sentinel $i exited (see $SENT_LOG)"
            fi
        done
        [[ -n "$pending" ]] || break
        ((SECONDS < deadline)) ||
            die "$pending not ready within ${REDIS_SENTINEL_READY_TIMEOUT}s (a replica linked to its primary; a Sentinel seeing the primary up, the replica and the other Sentinels)"
        sleep 0.2
    done
    primary="$(redis_primary_node)"
    redis_node "${primary:-1}"
    echo "redis: Sentinel set ready: primary 127.0.0.1:$RNODE_PORT (node ${primary:-?}), sentinels $(redis_sentinel_addresses) monitoring '$REDIS_SENTINEL_SERVICE' (quorum $REDIS_SENTINEL_QUORUM); users admin, shopflow; passwords in $CREDENTIALS_FILE"
}

redis_sentinel_addresses() {
    local i list=""
    for ((i = 1; i <= REDIS_SENTINEL_COUNT; i++)); do
        redis_sentinel "$i"
        list+="${list:+,}127.0.0.1:$SENT_PORT"
    done
    echo "$list"
}

# Stops the Sentinels first (so that none starts a failover meanwhile), then the nodes.
redis_down() {
    local i pid
    for ((i = 1; i <= REDIS_SENTINEL_COUNT; i++)); do
        redis_sentinel "$i"
        pid="$(redis_sentinel_pid)"
        if [[ -z "$pid" ]]; then
            rm -f "$SENT_PID_FILE"
            echo "redis sentinel $i: not running"
            continue
        fi
        kill -TERM "$pid" 2>/dev/null || true
        if ! wait_pid_exit "$pid" 10; then
            kill -KILL "$pid"
            wait_pid_exit "$pid" 5 || die "Redis Sentinel $i (pid $pid) survived SIGKILL"
        fi
        rm -f "$SENT_PID_FILE"
        echo "redis sentinel $i: stopped (pid $pid)"
    done
    for ((i = 1; i <= REDIS_NODE_COUNT; i++)); do
        redis_node "$i"
        pid="$(redis_node_pid)"
        if [[ -z "$pid" ]]; then
            rm -f "$RNODE_PID_FILE"
            echo "redis node $i: not running"
            continue
        fi
        if ! redis_node_cli shutdown nosave >/dev/null 2>&1; then
            kill -TERM "$pid" 2>/dev/null || true
        fi
        if ! wait_pid_exit "$pid" 10; then
            kill -KILL "$pid"
            wait_pid_exit "$pid" 5 || die "Redis node $i (pid $pid) survived SIGKILL"
        fi
        rm -f "$RNODE_PID_FILE"
        echo "redis node $i: stopped (pid $pid)"
    done
}

# SIGKILLs the current primary (fault injection), whichever node it is, and waits until it
# is gone. The Sentinels then promote the replica; `up redis` starts the dead node again,
# as the new primary's replica.
redis_kill() {
    local primary pid
    primary="$(redis_primary_node)"
    if [[ -z "$primary" ]]; then
        echo "redis: no primary found (no Sentinel or node says which), nothing to kill"
        return 0
    fi
    redis_node "$primary"
    pid="$(redis_node_pid)"
    if [[ -z "$pid" ]]; then
        rm -f "$RNODE_PID_FILE"
        echo "redis node $primary (the primary on 127.0.0.1:$RNODE_PORT): not running, nothing to kill"
        return 0
    fi
    kill -KILL "$pid" 2>/dev/null || true
    wait_pid_exit "$pid" 10 || die "Redis node $primary (pid $pid) survived SIGKILL"
    rm -f "$RNODE_PID_FILE"
    echo "redis node $primary: killed (the primary on 127.0.0.1:$RNODE_PORT, pid $pid, SIGKILL)"
}

redis_status() {
    local i pid ok=0 role port
    for ((i = 1; i <= REDIS_NODE_COUNT; i++)); do
        redis_node "$i"
        pid="$(redis_node_pid)"
        role="$(redis_node_role)"
        if [[ -n "$pid" && -n "$role" ]]; then
            [[ "$role" == "slave" ]] && role=replica
            [[ "$role" == "master" ]] && role=primary
            echo "redis node $i: running on 127.0.0.1:$RNODE_PORT as $role (pid $pid), log $RNODE_LOG"
        elif [[ -n "$pid" ]]; then
            echo "redis node $i: process $pid alive but not answering on 127.0.0.1:$RNODE_PORT, log $RNODE_LOG"
            ok=1
        else
            echo "redis node $i: not running"
            ok=1
        fi
    done
    for ((i = 1; i <= REDIS_SENTINEL_COUNT; i++)); do
        redis_sentinel "$i"
        pid="$(redis_sentinel_pid)"
        if [[ -n "$pid" ]] && redis_sentinel_ready; then
            port="$(redis_sentinel_cli sentinel get-master-addr-by-name "$REDIS_SENTINEL_SERVICE" 2>/dev/null | sed -n 2p)"
            echo "redis sentinel $i: running on 127.0.0.1:$SENT_PORT (pid $pid), primary 127.0.0.1:$port, log $SENT_LOG"
        elif [[ -n "$pid" ]]; then
            echo "redis sentinel $i: process $pid alive but not ready on 127.0.0.1:$SENT_PORT (no primary up, or not seeing the replica and the other Sentinels), log $SENT_LOG"
            ok=1
        else
            echo "redis sentinel $i: not running"
            ok=1
        fi
    done
    return "$ok"
}
