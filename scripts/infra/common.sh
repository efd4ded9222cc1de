# shellcheck shell=bash
# The helpers of scripts/infra.sh (sourced by it): errors, ports, processes, directories,
# Debian packages, logs.

die() {
    echo "infra: $*" >&2
    exit 1
}

# Report the innermost failing command once (not again from each enclosing subshell):
# the ERR trap of scripts/infra.sh gives its file, line and command.
on_unexpected_error() {
    if ((BASH_SUBSHELL == 0)); then
        echo "infra: unexpected failure at ${1##*/} line $2 running: $3" >&2
    fi
}

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
