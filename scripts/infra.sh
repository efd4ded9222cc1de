#!/usr/bin/env bash
# shellcheck source-path=SCRIPTDIR
# Local infrastructure for the service: a KRaft Kafka node, a PostgreSQL 15 cluster of our
# own and a Redis server, all on 127.0.0.1.
#
#   scripts/infra.sh up [SERVER...] [--brokers N]  start what is not running (idempotent), wait until each answers
#   scripts/infra.sh down [SERVER|kafka-I ...]     stop what `up` started (by its pid files), nothing else
#   scripts/infra.sh status [SERVER...]            one line per server and Kafka node; exit 0 only if all answer
#   scripts/infra.sh kill SERVER|kafka-I ...       fault injection: SIGKILL, wait until gone (postgres: the
#                                                  postmaster; the next `up` starts it with crash recovery)
#   scripts/infra.sh cut postgres-I                fault injection (a PostgreSQL cluster): node I cut off
#                                                  from etcd and the other nodes, still running
#   scripts/infra.sh heal                          every cut removed
#   scripts/infra.sh reset                         down, then delete the data dirs (not the Kafka jar cache)
#   scripts/infra.sh credentials                   make the local credentials (and .infra/docker.env for
#                                                  docker-compose.kafka.yml) without starting anything
#
# SERVER is kafka (every node), postgres or redis; none means all three.
#
# --brokers N (or SHOPFLOW_KAFKA_BROKERS=N; 1 to 9, default 1; the flag wins) runs Kafka as N
# nodes, for the chaos suite (tests/chaos): node I (kafka-I) listens on the Kafka ports
# + 2(I-1). The count is kept with the data: another needs `reset`. See
# scripts/infra/kafka-cluster.sh.
#
# Environment (defaults): SHOPFLOW_KAFKA_PORT=9092 SHOPFLOW_KAFKA_CONTROLLER_PORT=9093
# SHOPFLOW_KAFKA_SSL_PORT=<SHOPFLOW_KAFKA_PORT + 200> (SASL_SSL)
# SHOPFLOW_PG_PORT=5432 SHOPFLOW_REDIS_PORT=6379 SHOPFLOW_INFRA_DIR=<repo>/.infra
# SHOPFLOW_KAFKA_BROKERS=1 SHOPFLOW_PG_NODES=1 SHOPFLOW_REDIS_SENTINEL=0
#
# SHOPFLOW_PG_NODES=N (2 to 9; 3 for the chaos suite) runs PostgreSQL as N nodes under
# Patroni with one etcd, synchronous replication in strict mode: node I (postgres-I) on
# SHOPFLOW_PG_PORT + I-1. The count is kept with the data: another needs `reset`. `kill
# postgres` kills the leader's Patroni and postmaster together. See scripts/infra/patroni.sh.
#
# SHOPFLOW_REDIS_SENTINEL=1 (read by `up`: 1 or 0; unset, the layout last started, at first
# one server) runs Redis as a primary on SHOPFLOW_REDIS_PORT, its replica on +1 and three
# Sentinels on +2, +3 and +4 that monitor it as `shopflow` and promote the replica when it
# dies; down, status, kill (SIGKILL of the current primary, whichever node it is) and reset
# act on the layout last started, and `up redis` starts whatever of it is down (a dead old
# primary as the new one's replica). Another layout needs `down redis` first. See
# scripts/infra/redis-sentinel.sh.
#
# Access control is on from the first start (CONTRACT.md, Access): Kafka takes SASL
# SCRAM-SHA-512 only and its StandardAuthorizer denies what no ACL allows; PostgreSQL checks
# scram-sha-256 passwords on every connection; Redis's default user is off. The passwords
# are made at the first start and kept in $SHOPFLOW_INFRA_DIR/credentials.json (mode 0600),
# with the key that signs the HTTP tokens of `shopflow token` (token-signing-key.pem). The
# Kafka users of the contract's principals and their ACLs are made by `shopflow topics
# create` (the Makefile runs it after `up`), as the broker's super user `admin`.
#
# No Docker here: Kafka is assembled from Maven Central jars (cached under
# ${XDG_CACHE_HOME:-~/.cache}/shopflow so later starts are offline), PostgreSQL
# uses Debian's binaries, Redis comes from Debian's package. Servers are started
# detached (setsid / --daemonize / pg_ctl) so they outlive this script. Each server's
# part is in scripts/infra/ (kafka.sh, postgres.sh, redis.sh; kafka-cluster.sh, patroni.sh
# and redis-sentinel.sh for several nodes; credentials.sh, common.sh).
set -Eeuo pipefail

SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$SCRIPT_DIR/.." && pwd)"
TEMPLATE_DIR="$SCRIPT_DIR/infra"

INFRA_DIR="${SHOPFLOW_INFRA_DIR:-$REPO_DIR/.infra}"
[[ "$INFRA_DIR" == /* ]] || INFRA_DIR="$PWD/$INFRA_DIR"

# Helpers (die, ports, pids, apt_install ...) and the local credentials.
# shellcheck source=infra/common.sh
source "$TEMPLATE_DIR/common.sh"
trap 'on_unexpected_error "${BASH_SOURCE[0]}" "$LINENO" "$BASH_COMMAND"' ERR
# shellcheck source=infra/credentials.sh
source "$TEMPLATE_DIR/credentials.sh"
# The servers.
# shellcheck source=infra/kafka.sh
source "$TEMPLATE_DIR/kafka.sh"
# shellcheck source=infra/postgres.sh
source "$TEMPLATE_DIR/postgres.sh"
# shellcheck source=infra/redis.sh
source "$TEMPLATE_DIR/redis.sh"

# ---------------------------------------------------------------- Docker

DOCKER_ENV="$INFRA_DIR/docker.env"

# What docker-compose.kafka.yml needs from the local credentials: the passwords as
# variables (docker.env, mode 0600, for `docker compose --env-file`), the Redis ACL file,
# the brokers' TLS key and certificate. `make up-docker` runs it before compose.
cmd_credentials() {
    prepare_infra_dir
    ensure_command python3 python3
    ensure_credentials
    ensure_token_key
    ensure_kafka_tls
    redis_write_acl
    (
        umask 077
        cat >"$DOCKER_ENV.tmp" <<EOF
SHOPFLOW_INFRA_DIR=$INFRA_DIR
KAFKA_BROKER_PASSWORD=$(credential kafka broker)
KAFKA_ADMIN_PASSWORD=$(credential kafka admin)
POSTGRES_PASSWORD=$(credential postgres postgres)
SHOPFLOW_OWNER_PASSWORD=$(credential postgres "$PG_OWNER_ROLE")
SHOPFLOW_SERVICE_PASSWORD=$(credential postgres "$PG_APP_ROLE")
SHOPFLOW_READER_PASSWORD=$(credential postgres "$PG_READER_ROLE")
EOF
    )
    mv "$DOCKER_ENV.tmp" "$DOCKER_ENV"
    echo "infra: credentials in $CREDENTIALS_FILE, and for Docker in $DOCKER_ENV"
}

# ---------------------------------------------------------------- commands

prepare_infra_dir() {
    make_dir "$INFRA_DIR"
    # Keep state out of git without editing the repository's .gitignore.
    if [[ ! -f "$INFRA_DIR/.gitignore" ]]; then
        echo "*" >"$INFRA_DIR/.gitignore"
    fi
    # Serialise concurrent up/down/kill/reset runs.
    exec 9>"$INFRA_DIR/.lock"
    flock -w 300 9 || die "another scripts/infra.sh run holds $INFRA_DIR/.lock"
}

SERVERS=()        # the servers named on the command line; all three when none
KAFKA_PICKED=()   # Kafka nodes named as kafka-I (down, kill); none: every node
BROKERS_FLAG=""   # up --brokers N
KAFKA_MAX_NODES=9 # the largest N of --brokers N and I of kafka-I

valid_node_count() {
    [[ "$1" =~ ^[1-9][0-9]*$ ]] && (($1 <= KAFKA_MAX_NODES))
}

usage() {
    cat >&2 <<EOF
usage: $0 up [kafka|postgres|redis ...] [--brokers N]
       $0 down [kafka|kafka-N|postgres|postgres-N|redis ...]
       $0 status [kafka|postgres|redis ...]
       $0 kill kafka|kafka-N|postgres|postgres-N|redis ...
       $0 cut postgres-N
       $0 heal
       $0 reset
       $0 credentials
EOF
    exit 2
}

selected() {
    [[ " ${SERVERS[*]} " == *" $1 "* ]]
}

select_server() {
    selected "$1" || SERVERS+=("$1")
}

parse_args() {
    local cmd="$1" arg kafka_all=0
    shift
    while (($# > 0)); do
        arg="$1"
        shift
        case "$arg" in
            --brokers | --brokers=*)
                [[ "$cmd" == "up" ]] ||
                    die "--brokers goes with up only: the other commands act on the node count Kafka was formatted with"
                if [[ "$arg" == "--brokers" ]]; then
                    (($# > 0)) || die "--brokers needs a node count from 1 to $KAFKA_MAX_NODES"
                    BROKERS_FLAG="$1"
                    shift
                else
                    BROKERS_FLAG="${arg#--brokers=}"
                fi
                ;;
            kafka)
                kafka_all=1
                select_server kafka
                ;;
            postgres | postgresql) select_server postgres ;;
            redis) select_server redis ;;
            kafka-*)
                [[ "$cmd" == "kill" || "$cmd" == "down" ]] ||
                    die "'$cmd' takes kafka (every node), not $arg"
                valid_node_count "${arg#kafka-}" ||
                    die "no such Kafka node '$arg' (kafka-1 to kafka-$KAFKA_MAX_NODES)"
                KAFKA_PICKED+=("${arg#kafka-}")
                select_server kafka
                ;;
            postgres-*)
                [[ "$cmd" == "kill" || "$cmd" == "down" || "$cmd" == "cut" ]] ||
                    die "'$cmd' takes postgres (every node), not $arg"
                [[ "${arg#postgres-}" =~ ^[1-9]$ ]] || die "no such PostgreSQL node '$arg' (postgres-1 to postgres-9)"
                PG_PICKED+=("${arg#postgres-}")
                select_server postgres
                ;;
            *) die "unknown server '$arg' (expected kafka, postgres or redis)" ;;
        esac
    done
    if ((kafka_all)); then
        KAFKA_PICKED=()
    fi
    if [[ "$cmd" == "cut" ]] && ((${#PG_PICKED[@]} != 1)); then
        die "cut takes one node: postgres-N"
    fi
    if [[ "$cmd" == "heal" ]] && ((${#SERVERS[@]} > 0)); then
        die "heal takes no server names: it removes every cut"
    fi
    if [[ "$cmd" == "heal" ]]; then
        SERVERS=(postgres)
    fi
    if [[ "$cmd" == "reset" ]] && ((${#SERVERS[@]} > 0)); then
        die "reset takes no server names: it stops and deletes everything"
    fi
    if ((${#SERVERS[@]} == 0)); then
        [[ "$cmd" != "kill" ]] || die "kill needs a server: kafka, kafka-N, postgres or redis"
        SERVERS=(kafka postgres redis)
    fi
}

cmd_up() {
    local started=$SECONDS
    prepare_infra_dir
    ensure_command python3 python3
    ensure_credentials
    ensure_token_key
    ensure_kafka_tls
    if selected kafka; then
        kafka_mode up
        kafka_launch
    fi
    if selected postgres; then
        pg_mode up
        pg_up
    fi
    if selected redis; then
        redis_mode up
        redis_up
    fi
    if selected kafka; then
        kafka_wait_ready
    fi
    echo "infra: up in $((SECONDS - started))s (state in $INFRA_DIR)"
}

cmd_down() {
    if [[ ! -d "$INFRA_DIR" ]]; then
        echo "infra: nothing to stop ($INFRA_DIR does not exist)"
        return 0
    fi
    prepare_infra_dir
    if selected kafka; then
        kafka_mode down
        kafka_down
    fi
    if selected redis; then
        redis_mode down
        redis_down
    fi
    if selected postgres; then
        pg_mode down
        pg_down
    fi
}

cmd_kill() {
    if [[ ! -d "$INFRA_DIR" ]]; then
        echo "infra: nothing to kill ($INFRA_DIR does not exist)"
        return 0
    fi
    prepare_infra_dir
    if selected kafka; then
        kafka_mode kill
        kafka_kill
    fi
    if selected postgres; then
        pg_mode kill
        pg_kill
    fi
    if selected redis; then
        redis_mode kill
        redis_kill
    fi
}

cmd_status() {
    local ok=0
    if selected kafka; then
        kafka_mode status
        kafka_status || ok=1
    fi
    if selected postgres; then
        pg_mode status
        pg_status || ok=1
    fi
    if selected redis; then
        redis_mode status
        redis_status || ok=1
    fi
    return "$ok"
}

cmd_cut() {
    prepare_infra_dir
    pg_mode cut
    pg_cut "${PG_PICKED[0]}"
}

cmd_heal() {
    prepare_infra_dir
    pg_mode heal
    pg_cut_heal_all
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
    local cmd="${1:-}"
    case "$cmd" in
        up | down | status | kill | cut | heal | reset | credentials) shift ;;
        *) usage ;;
    esac
    parse_args "$cmd" "$@"
    case "$cmd" in
        up) cmd_up ;;
        down) cmd_down ;;
        status)
            if cmd_status; then exit 0; else exit 1; fi
            ;;
        kill) cmd_kill ;;
        cut) cmd_cut ;;
        heal) cmd_heal ;;
        reset) cmd_reset ;;
        credentials) cmd_credentials ;;
    esac
}

main "$@"
