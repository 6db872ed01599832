#!/usr/bin/env bash
# `make run` / `make stop`: the whole system on local defaults, in the
# background. Settings go to var/run.env, logs to var/log/, pids to var/run/.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VAR=$ROOT/var
BIN=${STOCKFLOW_BIN_DIR:-$ROOT/target/debug}
SERVICES=(api worker scheduler backup)
API_PORT=${API_PORT:-8000}
declare -A PORT=([api]=$API_PORT [worker]=${WORKER_PORT:-8001} [scheduler]=${SCHEDULER_PORT:-8002} [backup]=${BACKUP_PORT:-8003})

say() { printf '%s\n' "$*" >&2; }
die() { say "run: $*"; exit 1; }

# Local disk by default; `STORAGE_BACKEND=s3 make run` keeps media in the
# stockflow-media bucket of the S3 server `make services` runs instead.
storage_settings() {
    case ${STORAGE_BACKEND:-local} in
        local) echo "STORAGE_BACKEND=local" ;;
        s3) printf '%s\n' STORAGE_BACKEND=s3 S3_BUCKET=stockflow-media S3_ENDPOINT=http://127.0.0.1:9000 \
            S3_FORCE_PATH_STYLE=true AWS_ACCESS_KEY_ID=stockflow AWS_SECRET_ACCESS_KEY=stockflow-dev-secret ;;
        *) say "run: STORAGE_BACKEND must be local or s3, not '$STORAGE_BACKEND'"; exit 2 ;;
    esac
}

write_settings() {
    storage_settings >/dev/null || exit 2
    mkdir -p "$VAR/media" "$VAR/backups" "$VAR/log" "$VAR/run"
    chmod 0750 "$VAR/media" "$VAR/backups"
    cat >"$VAR/run.env" <<ENV
# Written by \`make run\`: the settings the local services use.
# Source it to run the CLI against them: set -a; . var/run.env; set +a
DATABASE_URL=postgres://stockflow:stockflow@127.0.0.1:5432/stockflow
AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2f
AMQP_NAMESPACE=stockflow
MEDIA_ROOT=$VAR/media
BACKUP_ROOT=$VAR/backups
$(storage_settings)
API_BIND=127.0.0.1:${PORT[api]}
WORKER_HEALTH_BIND=127.0.0.1:${PORT[worker]}
SCHEDULER_HEALTH_BIND=127.0.0.1:${PORT[scheduler]}
BACKUP_HEALTH_BIND=127.0.0.1:${PORT[backup]}
LOG_LEVEL=info
LOG_FORMAT=pretty
# Local only: the GraphiQL page at /graphql (off in production).
GRAPHQL_GRAPHIQL=true
ENV
    chmod 0600 "$VAR/run.env"
}

running() { [[ -f "$VAR/run/$1.pid" ]] && kill -0 "$(cat "$VAR/run/$1.pid")" 2>/dev/null; }

port_taken() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_ready() {
    local svc=$1 url="http://127.0.0.1:${PORT[$1]}/readyz"
    for _ in $(seq 1 150); do
        curl -fsS -o /dev/null "$url" 2>/dev/null && return 0
        running "$svc" || break
        sleep 0.2
    done
    say "run: $svc did not become ready at $url; last lines of var/log/$svc.log:"
    tail -n 20 "$VAR/log/$svc.log" >&2 || true
    exit 1
}

stop() {
    for svc in "${SERVICES[@]}"; do
        running "$svc" || { rm -f "$VAR/run/$svc.pid"; continue; }
        local pid
        pid=$(cat "$VAR/run/$svc.pid")
        kill -TERM "$pid"
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        if kill -0 "$pid" 2>/dev/null; then
            say "run: $svc did not stop within 10 s; killing it"
            kill -KILL "$pid" || true
        fi
        rm -f "$VAR/run/$svc.pid"
        say "stopped $svc"
    done
}

start() {
    for svc in "${SERVICES[@]}"; do [[ -x "$BIN/stockflow-$svc" ]] || die "missing $BIN/stockflow-$svc: run make build"; done
    stop
    for svc in "${SERVICES[@]}"; do
        port_taken "${PORT[$svc]}" && die "port ${PORT[$svc]} (for $svc) is already in use; free it or set ${svc^^}_PORT"
    done
    write_settings
    set -a
    # shellcheck source=/dev/null
    . "$VAR/run.env"
    set +a
    "$BIN/stockflow-api" migrate 2>>"$VAR/log/migrate.log" || die "migrations failed; see var/log/migrate.log"
    for svc in "${SERVICES[@]}"; do
        nohup "$BIN/stockflow-$svc" >>"$VAR/log/$svc.log" 2>&1 &
        echo $! >"$VAR/run/$svc.pid"
    done
    for svc in "${SERVICES[@]}"; do wait_ready "$svc"; done
    local token
    token=$("$BIN/stockflow-api" token create --org demo --role admin --name make-run 2>>"$VAR/log/migrate.log")
    (umask 077 && printf '%s\n' "$token" >"$VAR/demo-token")
    local media="local disk storage under var/media"
    [[ ${STORAGE_BACKEND:-local} == s3 ]] && media="media in the stockflow-media bucket at http://127.0.0.1:9000"
    cat <<MSG

Stockflow is running: api, worker, scheduler and backup, with $media.

  Base URL   http://127.0.0.1:${PORT[api]}
  Via nginx  http://127.0.0.1:8088
  Token      $token   (admin of org "demo"; also in var/demo-token)

  curl -H "Authorization: Bearer $token" http://127.0.0.1:${PORT[api]}/v1/me
  curl http://127.0.0.1:${PORT[api]}/readyz
  GraphiQL   http://127.0.0.1:${PORT[api]}/graphql   (put the token in its Headers tab)

Health of the others: http://127.0.0.1:${PORT[worker]}/readyz (worker), :${PORT[scheduler]} (scheduler), :${PORT[backup]} (backup)
Settings: var/run.env   Logs: var/log/   Stop: make stop
MSG
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    *) die "usage: $0 start|stop" ;;
esac
