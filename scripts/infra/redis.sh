# shellcheck shell=bash source-path=SCRIPTDIR
# Redis for scripts/infra.sh (sourced by it): Debian's package, a server of our own in
# $INFRA_DIR/redis, its users in an ACL file (the default user off). With
# SHOPFLOW_REDIS_SENTINEL=1, `up` runs a primary, a replica and three Sentinels instead
# (redis_mode sources redis-sentinel.sh, which redefines redis_up, redis_down, redis_kill
# and redis_status for them).

REDIS_PORT="${SHOPFLOW_REDIS_PORT:-6379}"
REDIS_READY_TIMEOUT=20
REDIS_ROOT="$INFRA_DIR/redis"
REDIS_PID_FILE="$REDIS_ROOT/redis.pid"
REDIS_LOG="$REDIS_ROOT/redis.log"
REDIS_ACL_FILE="$REDIS_ROOT/users.acl"
REDIS_MODE_FILE="$REDIS_ROOT/mode" # "sentinel" while the set of redis-sentinel.sh is in use

# Picks the layout `cmd` acts on: `up` the one SHOPFLOW_REDIS_SENTINEL asks for (1: the
# Sentinel set, 0: one server), else, as every other command, the one last started
# (REDIS_MODE_FILE; none: one server). Another layout than the one running needs `down
# redis` first (Redis keeps nothing on disk, so nothing else is lost).
redis_mode() {
    local cmd="$1" asked recorded=single
    [[ ! -f "$REDIS_MODE_FILE" ]] || recorded="$(<"$REDIS_MODE_FILE")"
    asked="$recorded"
    if [[ "$cmd" == "up" ]]; then
        case "${SHOPFLOW_REDIS_SENTINEL:-}" in
            1 | yes | true) asked=sentinel ;;
            0 | no | false) asked=single ;;
            "") ;;
            *) die "SHOPFLOW_REDIS_SENTINEL must be 1 (a primary, a replica and three Sentinels) or 0 (one server), got '$SHOPFLOW_REDIS_SENTINEL'" ;;
        esac
        if [[ "$asked" != "$recorded" ]]; then
            local pid_file pid
            for pid_file in "$REDIS_PID_FILE" "$REDIS_ROOT"/*/*.pid; do
                pid="$(read_pid_file "$pid_file")"
                if [[ -n "$pid" ]] && pid_matches "$pid" redis; then
                    die "Redis runs as the $recorded layout (pid $pid): scripts/infra.sh down redis first, then up with SHOPFLOW_REDIS_SENTINEL=$([[ "$asked" == sentinel ]] && echo 1 || echo 0)"
                fi
            done
            make_dir "$REDIS_ROOT"
            if [[ "$asked" == sentinel ]]; then
                echo sentinel >"$REDIS_MODE_FILE"
            else
                rm -f "$REDIS_MODE_FILE"
            fi
        fi
    fi
    if [[ "$asked" == sentinel ]]; then
        # shellcheck source=redis-sentinel.sh
        source "$TEMPLATE_DIR/redis-sentinel.sh"
        redis_sentinel_layout
    fi
}

# More ACL lines for the servers' file: none for one server (redis-sentinel.sh adds the
# replica's and the Sentinels' users).
redis_more_acl_users() {
    :
}

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

# redis-cli as the user admin (its password in the environment, not on the command line).
redis_admin_cli() {
    REDISCLI_AUTH="$(credential redis admin)" timeout 5 redis-cli --no-auth-warning \
        -h 127.0.0.1 -p "$REDIS_PORT" --user admin "$@"
}

# SHA-256 of user $1's Redis password, as an ACL file names it (#<hex>): the file holds no
# password, so docker-compose.kafka.yml's Redis (another user inside its container) may
# read it too.
redis_password_hash() {
    local hash
    hash="$(printf '%s' "$(credential redis "$1")" | sha256sum)"
    echo "${hash%% *}"
}

# The users (CONTRACT.md, Access): 'default' off; 'admin' may do anything; 'shopflow' only
# what the service does (the top-products view: persistence/sales_view.py), and only on
# keys under 'shopflow:'. Written on every start: the credentials file is the truth, and
# a running server loads it again (ACL LOAD).
redis_write_acl() {
    local service="resetkeys ~shopflow:* resetchannels -@all +ping +select +hello +auth"
    service+=" +client|setname +echo +get +set +exists +del +unlink +scan"
    service+=" +sadd +sismember +zincrby +zrem +zunionstore +zrevrange +zrangebyscore"
    service+=" +pexpire +pexpireat"
    # The view's marker names the primary's replication id it was built on
    # (persistence/sales_view.py): INFO replication.
    service+=" +info"
    # The HTTP writes' rate limits (shopflow/write_limits.py: the `limits` library's
    # sliding-window script).
    service+=" +pttl +rename +incrby"
    service+=" +evalsha +script|load +script|exists"
    make_dir "$REDIS_ROOT"
    {
        echo "user default off resetkeys resetchannels -@all"
        echo "user admin on #$(redis_password_hash admin) ~* &* +@all"
        echo "user shopflow on #$(redis_password_hash shopflow) $service"
        redis_more_acl_users
    } >"$REDIS_ACL_FILE.tmp"
    chmod 644 "$REDIS_ACL_FILE.tmp"
    mv "$REDIS_ACL_FILE.tmp" "$REDIS_ACL_FILE"
}

redis_answers() {
    [[ "$(redis_admin_cli ping 2>/dev/null)" == "PONG" ]]
}

redis_up() {
    redis_ensure_installed
    make_dir "$REDIS_ROOT"
    redis_write_acl
    local state pid
    pid="$(redis_pid)"
    if [[ -n "$pid" ]]; then
        state="already running"
        redis_admin_cli acl load >/dev/null 2>&1 ||
            die "Redis on 127.0.0.1:$REDIS_PORT did not load $REDIS_ACL_FILE as admin: a server from before access control? run scripts/infra.sh reset"
    else
        rm -f "$REDIS_PID_FILE"
        if port_open "$REDIS_PORT"; then
            die "port $REDIS_PORT (Redis) is already in use by a process this script did not start"
        fi
        if ! (cd "$REDIS_ROOT" && redis-server --bind 127.0.0.1 --port "$REDIS_PORT" \
            --daemonize yes --pidfile "$REDIS_PID_FILE" --dir "$REDIS_ROOT" \
            --aclfile "$REDIS_ACL_FILE" \
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
    echo "redis: $state on 127.0.0.1:$REDIS_PORT (pid $(redis_pid); users admin, shopflow; passwords in $CREDENTIALS_FILE), log $REDIS_LOG"
}

redis_down() {
    local pid
    pid="$(redis_pid)"
    if [[ -z "$pid" ]]; then
        rm -f "$REDIS_PID_FILE"
        echo "redis: not running"
        return 0
    fi
    if ! redis_admin_cli shutdown nosave >/dev/null 2>&1; then
        kill -TERM "$pid"
    fi
    if ! wait_pid_exit "$pid" 10; then
        kill -KILL "$pid"
        wait_pid_exit "$pid" 5 || die "Redis (pid $pid) survived SIGKILL"
    fi
    rm -f "$REDIS_PID_FILE"
    echo "redis: stopped (pid $pid)"
}

# SIGKILLs Redis (fault injection) and waits until it is gone.
redis_kill() {
    local pid
    pid="$(redis_pid)"
    if [[ -z "$pid" ]]; then
        rm -f "$REDIS_PID_FILE"
        echo "redis: not running, nothing to kill"
        return 0
    fi
    kill -KILL "$pid" 2>/dev/null || true
    wait_pid_exit "$pid" 10 || die "Redis (pid $pid) survived SIGKILL"
    rm -f "$REDIS_PID_FILE"
    echo "redis: killed (pid $pid, SIGKILL)"
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
