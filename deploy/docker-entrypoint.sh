#!/bin/sh
# Stockflow container entrypoint, shared by the api, worker, scheduler and
# backup images (deploy/Dockerfile).
#
# It does three things, then gets out of the way:
#   1. refuses to run as root unless ALLOW_ROOT=true;
#   2. creates (mode 0750) and checks MEDIA_ROOT and BACKUP_ROOT when they are
#      set, so a missing or read-only mount fails here with one clear line
#      instead of at the first upload or backup;
#   3. execs the command (the service binary by default, or an admin
#      subcommand such as `stockflow-api migrate`), so the service receives
#      signals directly.
#
# Migrations are not run here: with RUN_MIGRATIONS=true stockflow-api applies
# them itself at start, and `stockflow-api migrate` applies them and exits.
#
# Exit status 2 means "fix the configuration": restarting will not help. The
# services use the same status and message shape for their own config errors.
set -eu

# New directories 0750, new files 0640 (group may read, others nothing).
umask 0027

prog=docker-entrypoint

config_error() {
    # config_error NAME EXPECTED GOT
    printf 'config error: %s: expected %s, got "%s"\n' "$1" "$2" "$3" >&2
    exit 2
}

if [ "$#" -eq 0 ]; then
    echo "$prog: no command given (expected a stockflow-* binary and its arguments)" >&2
    exit 2
fi

# --- 1. never as root, unless explicitly allowed -----------------------------
allow_root=${ALLOW_ROOT:-false}
case "$allow_root" in
    true | false) ;;
    *) config_error ALLOW_ROOT "true or false" "$allow_root" ;;
esac

uid=$(id -u)
if [ "$uid" -eq 0 ] && [ "$allow_root" != true ]; then
    echo "$prog: refusing to run as root (uid 0): run as the stockflow user (uid 10001, the image default) or set ALLOW_ROOT=true to override" >&2
    exit 2
fi

# --- 2. storage directories ---------------------------------------------------
# ensure_dir NAME: when the variable NAME is set and not empty, make sure it
# names an absolute path to a directory this user can create files in.
ensure_dir() {
    name=$1
    eval "dir=\${$name:-}"
    [ -n "$dir" ] || return 0

    case "$dir" in
        /*) ;;
        *) config_error "$name" "an absolute directory path" "$dir" ;;
    esac

    if [ -e "$dir" ] && [ ! -d "$dir" ]; then
        config_error "$name" "a directory (the path exists but is not a directory)" "$dir"
    fi

    if [ ! -d "$dir" ]; then
        # Parents are created with the umask (0750); the directory itself 0750.
        # shellcheck disable=SC2174 # -m on the leaf only is intended
        if ! mkdir -p -m 0750 -- "$dir" 2>/dev/null; then
            config_error "$name" "a directory that uid $uid can create (check the parent's owner and mode, or the volume mount)" "$dir"
        fi
        echo "$prog: created $name directory $dir (mode 0750)" >&2
    fi

    # A real write probe: it also catches read-only mounts, which a
    # permission-bit test would miss.
    probe="$dir/.stockflow-write-probe.$$"
    if ! (: >"$probe") 2>/dev/null; then
        config_error "$name" "a directory writable by uid $uid (check its owner and mode, and that the mount is not read-only)" "$dir"
    fi
    rm -f -- "$probe"
}

ensure_dir MEDIA_ROOT
ensure_dir BACKUP_ROOT

# --- 3. hand over -------------------------------------------------------------
exec "$@"
