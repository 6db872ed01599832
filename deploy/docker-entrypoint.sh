#!/bin/bash
# Stockflow container entrypoint, shared by the api, worker, scheduler and
# backup images (deploy/Dockerfile). Each image sets STOCKFLOW_ROLE.
#
#   docker-entrypoint.sh                 -> stockflow-$STOCKFLOW_ROLE serve
#   docker-entrypoint.sh serve|migrate|token create ...
#                                        -> stockflow-$STOCKFLOW_ROLE <args>
#   docker-entrypoint.sh stockflow-api token list --org acme
#   docker-entrypoint.sh pg_dump --version
#                                        -> that command, as given
#
# Before handing over it:
#   1. refuses to run as root unless ALLOW_ROOT=true;
#   2. checks the storage directories this role writes (MEDIA_ROOT for api,
#      worker and backup when STORAGE_BACKEND=local; BACKUP_ROOT for backup
#      when BACKUP_STORAGE_BACKEND=local), so a missing or read-only mount
#      fails here with one clear line instead of at the first upload;
#   3. waits, at most STARTUP_WAIT_SECS, until the database (and, to serve,
#      the broker) accept TCP connections, so a stack started at once does
#      not crash-loop while PostgreSQL and RabbitMQ boot;
#   4. execs the command, so the service receives signals itself.
#
# Migrations are not run here: with RUN_MIGRATIONS=true the api applies them
# at start under a PostgreSQL advisory lock (replicas wait for each other,
# never race), and `stockflow-api migrate` applies them and exits. The other
# roles never migrate.
#
# Exit status 2 means "fix the configuration": restarting will not help. The
# services use the same status and line shape for their own config errors.
set -euo pipefail

# New directories 0750, new files 0640: the group may read (nginx sends media
# for x-accel as a member of it), others nothing.
umask 0027

prog=docker-entrypoint

config_error() {
    # config_error NAME EXPECTED GOT
    printf 'config error: %s: expected %s, got "%s"\n' "$1" "$2" "$3" >&2
    exit 2
}

role=${STOCKFLOW_ROLE:-}
case "$role" in
    api | worker | scheduler | backup) ;;
    *) config_error STOCKFLOW_ROLE "api, worker, scheduler or backup (the images set it)" "$role" ;;
esac
binary=stockflow-$role

# --- what to run ---------------------------------------------------------------
if [ "$#" -eq 0 ]; then
    set -- "$binary" serve
elif [ "${1#-}" != "$1" ] || ! command -v -- "$1" >/dev/null 2>&1; then
    # A subcommand or option of the role's binary.
    set -- "$binary" "$@"
fi

# Health checks, help and version need none of the checks below.
case " ${2:-} " in
    " healthcheck " | " help " | " --help " | " -h " | " --version " | " -V ") exec "$@" ;;
esac
serving=false
if [ "$1" = "$binary" ] && [ "${2:-}" = serve ]; then
    serving=true
fi

# --- 1. never as root, unless explicitly allowed ---------------------------------
allow_root=${ALLOW_ROOT:-false}
case "$allow_root" in
    true | false) ;;
    *) config_error ALLOW_ROOT "true or false" "$allow_root" ;;
esac
uid=$(id -u)
if [ "$uid" -eq 0 ] && [ "$allow_root" != true ]; then
    echo "$prog: refusing to run as root (uid 0): run as the stockflow user (uid 10001, the image default) or set ALLOW_ROOT=true" >&2
    exit 2
fi

# --- 2. storage directories --------------------------------------------------------
# ensure_dir NAME: the variable NAME must name an absolute path to a directory
# this user can create files in (created when missing).
ensure_dir() {
    local name=$1 dir
    dir=${!name:-}
    [ -n "$dir" ] || return 0   # the service itself reports a missing required root
    case "$dir" in
        /*) ;;
        *) config_error "$name" "an absolute directory path" "$dir" ;;
    esac
    if [ -e "$dir" ] && [ ! -d "$dir" ]; then
        config_error "$name" "a directory (the path exists but is not a directory)" "$dir"
    fi
    if [ ! -d "$dir" ]; then
        if ! mkdir -p -m 0750 -- "$dir" 2>/dev/null; then
            config_error "$name" "a directory that uid $uid can create (check the parent's owner and mode, or the volume mount)" "$dir"
        fi
        echo "$prog: created $name directory $dir (mode 0750)" >&2
    fi
    # A real write probe: it also catches read-only mounts.
    local probe="$dir/.stockflow-write-probe.$$"
    if ! (: >"$probe") 2>/dev/null; then
        config_error "$name" "a directory writable by uid $uid (check its owner and mode, and that the mount is not read-only)" "$dir"
    fi
    rm -f -- "$probe"
}

if [ "$role" != scheduler ] && [ "${STORAGE_BACKEND:-local}" = local ]; then
    ensure_dir MEDIA_ROOT
fi
if [ "$role" = backup ] && [ "${BACKUP_STORAGE_BACKEND:-local}" = local ]; then
    ensure_dir BACKUP_ROOT
fi

# --- 3. wait for the database and the broker ----------------------------------------
wait_secs=${STARTUP_WAIT_SECS:-60}
case "$wait_secs" in
    '' | *[!0-9]*) config_error STARTUP_WAIT_SECS "seconds, 0 to 3600 (0: do not wait)" "$wait_secs" ;;
esac
[ "$wait_secs" -le 3600 ] || config_error STARTUP_WAIT_SECS "seconds, 0 to 3600 (0: do not wait)" "$wait_secs"

# endpoint URL DEFAULT_PORT: prints "host port" of a postgres:// or amqp://
# URL, nothing for a Unix socket (no host). Never prints the URL: it holds a
# password.
endpoint() {
    local rest=${1#*://} default_port=$2 authority host port
    authority=${rest%%[/?#]*}
    authority=${authority##*@}
    case "$authority" in
        \[*\]:*) host=${authority%]:*}; host=${host#[}; port=${authority##*]:} ;;
        \[*\]) host=${authority#[}; host=${host%]}; port=$default_port ;;
        *:*) host=${authority%:*}; port=${authority##*:} ;;
        *) host=$authority; port=$default_port ;;
    esac
    [ -n "$host" ] && printf '%s %s\n' "$host" "${port:-$default_port}"
}

reachable() { timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$1" "$2" 2>/dev/null; }

# wait_for WHAT HOST PORT [HOST PORT]...: until one of the endpoints (the
# nodes of a cluster) accepts a connection, or the deadline passes (exit 1:
# a restart may well help).
deadline=$((SECONDS + wait_secs))
wait_for() {
    local what=$1 announced=false i names=""
    shift
    local endpoints=("$@")
    for ((i = 0; i < ${#endpoints[@]}; i += 2)); do
        names="${names:+$names, }${endpoints[i]}:${endpoints[i + 1]}"
    done
    while :; do
        for ((i = 0; i < ${#endpoints[@]}; i += 2)); do
            reachable "${endpoints[i]}" "${endpoints[i + 1]}" && return 0
        done
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "$prog: $what at $names not reachable after ${wait_secs} s (STARTUP_WAIT_SECS)" >&2
            exit 1
        fi
        if [ "$announced" = false ]; then
            echo "$prog: waiting for $what at $names (at most ${wait_secs} s)" >&2
            announced=true
        fi
        sleep 1
    done
}

if [ "$wait_secs" -gt 0 ]; then
    if [ -n "${DATABASE_URL:-}" ] && target=$(endpoint "$DATABASE_URL" 5432); then
        wait_for database ${target}
    fi
    if [ "$serving" = true ] && [ -n "${AMQP_URL:-}" ]; then
        amqp_port=5672
        [ "${AMQP_URL%%://*}" = amqps ] && amqp_port=5671
        # Several URLs, comma-separated, are the nodes of a cluster: any one will do.
        targets=()
        IFS=, read -r -a nodes <<<"$AMQP_URL"
        for node in "${nodes[@]}"; do
            node=${node//[[:space:]]/}
            # shellcheck disable=SC2207 # "host port", split on purpose
            target=($(endpoint "$node" "$amqp_port")) && targets+=("${target[@]}")
        done
        [ "${#targets[@]}" -eq 0 ] || wait_for broker "${targets[@]}"
    fi
fi

# --- 4. hand over ---------------------------------------------------------------------
exec "$@"
