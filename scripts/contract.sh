#!/usr/bin/env bash
# `make contract`: schemathesis checks that the api does exactly what its
# OpenAPI document says. It starts the api and the worker on local defaults
# (as `make run` does, see scripts/run.sh) against a database of their own,
# runs `schemathesis run --checks all` as an admin, stops both and drops the
# database, whatever the outcome; it exits non-zero on any failure.
#
#   CONTRACT_MAX_EXAMPLES  generated cases per operation and phase (default 150)
#   CONTRACT_SEED          hypothesis seed (default fixed, so a failure replays;
#                          set "random" for a fresh one)
#   CONTRACT_TIME_LIMIT    hard limit of the schemathesis run in seconds (default 900)
#   CONTRACT_ARGS          more schemathesis arguments, e.g. "--include-path /v1/exports
#                          --output-sanitize false" to look into one operation
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
VAR=$ROOT/var/contract
BIN=${STOCKFLOW_BIN_DIR:-$ROOT/target/debug}
# The pin lives in scripts/services.sh, which installs it.
SCHEMATHESIS_VERSION=$(sed -n 's/^SCHEMATHESIS_VERSION=//p' "$ROOT/scripts/services.sh")
SCHEMATHESIS=/opt/stockflow/schemathesis-$SCHEMATHESIS_VERSION/bin/schemathesis
DATABASE=stockflow_contract
ADMIN_URL=postgres://stockflow:stockflow@127.0.0.1:5432/stockflow
MAX_EXAMPLES=${CONTRACT_MAX_EXAMPLES:-150}
SEED=${CONTRACT_SEED:-20261130}
TIME_LIMIT=${CONTRACT_TIME_LIMIT:-900}

say() { printf 'contract: %s\n' "$*" >&2; }
die() {
  say "$*"
  exit 1
}

[[ -x $SCHEMATHESIS ]] || die "schemathesis $SCHEMATHESIS_VERSION is not installed at $SCHEMATHESIS: run make services"
for service in api worker; do
  [[ -x $BIN/stockflow-$service ]] || die "missing $BIN/stockflow-$service: run make build"
done

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

psql_admin() { psql -X -q -v ON_ERROR_STOP=1 "$ADMIN_URL" "$@"; }

declare -A PIDS=()

# Stops what this script started, then drops its database: SIGTERM, then
# SIGKILL after 10 s, as `make stop` does.
cleanup() {
  local service pid
  for service in "${!PIDS[@]}"; do
    pid=${PIDS[$service]}
    kill -TERM "$pid" 2>/dev/null || continue
    for _ in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      say "$service did not stop within 10 s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    wait "$pid" 2>/dev/null || true
  done
  psql_admin -c "DROP DATABASE IF EXISTS $DATABASE WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT

wait_ready() { # wait_ready SERVICE PORT
  local url="http://127.0.0.1:$2/readyz"
  for _ in $(seq 1 150); do
    curl --noproxy '*' -fsS -o /dev/null "$url" 2>/dev/null && return 0
    kill -0 "${PIDS[$1]}" 2>/dev/null || break
    sleep 0.2
  done
  tail -n 20 "$VAR/$1.log" >&2 || true
  die "$1 did not become ready at $url (log: $VAR/$1.log)"
}

rm -rf "$VAR"
mkdir -p "$VAR/media"
chmod 0750 "$VAR/media"
psql_admin -c "DROP DATABASE IF EXISTS $DATABASE WITH (FORCE)" -c "CREATE DATABASE $DATABASE" >/dev/null

API_PORT=$(free_port)
WORKER_PORT=$(free_port)
export DATABASE_URL=postgres://stockflow:stockflow@127.0.0.1:5432/$DATABASE
export AMQP_URL=amqp://guest:guest@127.0.0.1:5672/%2f
export AMQP_NAMESPACE=stockflow_contract
export STORAGE_BACKEND=local MEDIA_ROOT=$VAR/media BACKUP_ROOT=$VAR/backups
export API_BIND=127.0.0.1:$API_PORT WORKER_HEALTH_BIND=127.0.0.1:$WORKER_PORT
export LOG_LEVEL=warn LOG_FORMAT=json

"$BIN/stockflow-api" migrate 2>>"$VAR/migrate.log" || die "migrations failed; see $VAR/migrate.log"
# An admin that is also an operator: every operation, /v1/backups too, answers
# with its success schema as well as its errors.
TOKEN=$("$BIN/stockflow-api" token create --org contract --role admin --operator --name schemathesis 2>>"$VAR/migrate.log")
"$BIN/stockflow-api" >>"$VAR/api.log" 2>&1 &
PIDS[api]=$!
"$BIN/stockflow-worker" >>"$VAR/worker.log" 2>&1 &
PIDS[worker]=$!
wait_ready api "$API_PORT"
wait_ready worker "$WORKER_PORT"

seed=(--seed "$SEED")
[[ $SEED == random ]] && seed=()
# One worker: hypothesis describes strategies with Python's `ast`, which
# breaks when two threads do it at once ("AST constructor recursion depth
# mismatch", seen with --workers 2 on CPython 3.11).
say "schemathesis $SCHEMATHESIS_VERSION against http://127.0.0.1:$API_PORT (max examples $MAX_EXAMPLES, seed ${SEED})"
started=$SECONDS
status=0
timeout --kill-after 10 "$TIME_LIMIT" "$SCHEMATHESIS" --config-file "$ROOT/scripts/schemathesis.toml" \
  run "http://127.0.0.1:$API_PORT/openapi.json" \
  --checks all \
  --header "Authorization: Bearer $TOKEN" \
  --max-examples "$MAX_EXAMPLES" \
  "${seed[@]}" \
  --generation-database none \
  --request-timeout 30 \
  --workers 1 \
  --no-color \
  --report junit --report-dir "$VAR/report" \
  ${CONTRACT_ARGS:-} || status=$?
say "schemathesis took $((SECONDS - started)) s; reports in $VAR/report, logs in $VAR/"
((status == 124)) && die "schemathesis did not finish within $TIME_LIMIT s"
((status == 0)) || die "schemathesis found failures (exit $status)"
