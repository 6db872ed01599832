#!/usr/bin/env bash
# A three-node RabbitMQ cluster on 127.0.0.1 for `make test-cluster`, beside
# (not instead of) the single broker of `make services`:
#
#   node sf1@localhost  AMQP 127.0.0.1:5681  distribution 25681
#   node sf2@localhost  AMQP 127.0.0.1:5682  distribution 25682
#   node sf3@localhost  AMQP 127.0.0.1:5683  distribution 25683
#
# One rabbitmq-server per node, each with its own node name, ports, data
# directory and config, sharing one Erlang cookie; user guest/guest. State in
# var/cluster/ (deleted by `down`, so every `up` starts a fresh cluster).
#
# Usage: scripts/rabbitmq-cluster.sh up|down|urls|ctl NODE ARGS...
#   up    start the three nodes and join sf2 and sf3 to sf1; idempotent
#   down  stop the nodes and delete their data
#   urls  print AMQP_URL for the cluster (the three nodes, comma-separated)
#   ctl   rabbitmqctl against one node (1, 2 or 3), e.g. `ctl 2 stop_app`
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIR=$ROOT/var/cluster
COOKIE=stockflow-test-cluster-cookie
NODES=(1 2 3)
RABBIT_BIN=/usr/lib/rabbitmq/bin

log() { printf '==> %s\n' "$*" >&2; }
die() {
  printf 'rabbitmq-cluster: %s\n' "$*" >&2
  exit 1
}

amqp_port() { echo $((5680 + $1)); }
node_name() { echo "sf$1@localhost"; }

ctl() { # ctl N ARGS...
  local n=$1
  shift
  HOME=$DIR "$RABBIT_BIN/rabbitmqctl" --erlang-cookie "$COOKIE" -n "$(node_name "$n")" "$@"
}

running() { ctl "$1" -q status >/dev/null 2>&1; }

start_node() {
  local n=$1 dir=$DIR/node$1
  mkdir -p "$dir"
  printf 'listeners.tcp.default = 127.0.0.1:%s\nloopback_users = none\n' "$(amqp_port "$n")" >"$dir/rabbitmq.conf"
  echo '[].' >"$dir/enabled_plugins.erl"
  HOME=$DIR RABBITMQ_NODENAME=$(node_name "$n") RABBITMQ_NODE_PORT=$(amqp_port "$n") \
    RABBITMQ_DIST_PORT=$((25680 + n)) RABBITMQ_MNESIA_BASE=$dir/mnesia RABBITMQ_LOG_BASE=$dir/log \
    RABBITMQ_CONFIG_FILE=$dir/rabbitmq.conf RABBITMQ_ENABLED_PLUGINS_FILE=$dir/enabled_plugins.erl \
    RABBITMQ_PID_FILE=$dir/pid RABBITMQ_SERVER_ERL_ARGS="-setcookie $COOKIE" \
    setsid "$RABBIT_BIN/rabbitmq-server" </dev/null >"$dir/server.log" 2>&1 &
}

wait_running() {
  local n=$1 deadline=$((SECONDS + 60))
  until running "$n"; do
    [[ $SECONDS -lt $deadline ]] || die "node $(node_name "$n") not up in 60 s (see $DIR/node$n/server.log)"
    sleep 0.5
  done
  ctl "$n" -q await_startup >/dev/null
}

cmd_up() {
  [[ -x $RABBIT_BIN/rabbitmq-server ]] || die "rabbitmq-server is not installed (make services installs it)"
  mkdir -p "$DIR"
  local n
  for n in "${NODES[@]}"; do
    running "$n" || start_node "$n"
  done
  for n in "${NODES[@]}"; do wait_running "$n"; done
  for n in 2 3; do
    if ! ctl 1 -q cluster_status --formatter json | grep -q "\"$(node_name "$n")\""; then
      log "joining $(node_name "$n") to $(node_name 1)"
      ctl "$n" -q stop_app && ctl "$n" -q join_cluster "$(node_name 1)" && ctl "$n" -q start_app
    fi
  done
  local members
  members=$(ctl 1 -q cluster_status --formatter json |
    python3 -c 'import json,sys; print(len(json.load(sys.stdin)["running_nodes"]))')
  [[ $members == 3 ]] || die "the cluster runs $members nodes, not 3"
  log "cluster of 3 nodes up: $(cmd_urls)"
}

cmd_down() {
  local n
  for n in "${NODES[@]}"; do
    running "$n" && ctl "$n" -q stop >/dev/null 2>&1 || true
  done
  rm -rf "$DIR"
}

cmd_urls() {
  local n urls=()
  for n in "${NODES[@]}"; do urls+=("amqp://guest:guest@127.0.0.1:$(amqp_port "$n")/%2f"); done
  (IFS=,; echo "${urls[*]}")
}

case ${1:-} in
  up) cmd_up ;;
  down) cmd_down ;;
  urls) cmd_urls ;;
  ctl) shift; ctl "$@" ;;
  *)
    echo "usage: $0 up|down|urls|ctl NODE ARGS..." >&2
    exit 2
    ;;
esac
