#!/usr/bin/env bash
# Local services for Stockflow's test-suite and `make run`, all on 127.0.0.1:
#
#   postgresql  :5432  role/db stockflow (password stockflow)
#   rabbitmq    :5672  guest/guest, >= 3.8 (quorum queues)
#   s3 (s3s-fs) :9000  S3-compatible object store, key stockflow / stockflow-dev-secret,
#                      buckets stockflow-media and stockflow-backups
#   nginx       :8088  reverse proxy to the API on :8000 (deploy/nginx/dev.conf)
#   pgbouncer   :6433  PgBouncer in transaction mode in front of :5432, any
#                      database, role stockflow (the PgBouncer tests)
#
# and the pinned schemathesis that `make contract` runs, in a virtualenv of
# its own under /opt/stockflow.
#
# Usage: scripts/services.sh up|down|status|clean-test-dbs
#   up      install what is missing (Debian 12, apt), start what is not running,
#           prepare the database; idempotent. Called by `make services`.
#   down    stop only what `up` started (see var/services/started/). Called by
#           `make services-stop`.
#   status  one line per service; exits 1 if any service is not reachable.
#   clean-test-dbs  drop per-test databases left behind by killed test runs,
#           and the migrated templates they are cloned from (the next test
#           run builds its own again) (`make clean-test-dbs`).
#
# up/down need root (the script re-runs itself through sudo when available).
# State lives in var/services/: pidfiles, logs, and started/<service> markers.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
STATE_DIR=$ROOT/var/services
MARKER_DIR=$STATE_DIR/started
LOG_DIR=$STATE_DIR/logs

PG_PORT=5432
PG_CLUSTER=main
PG_ROLE=stockflow
PG_PASSWORD=stockflow
PG_DB=stockflow

AMQP_PORT=5672
RABBITMQ_MIN_VERSION=3.8

S3_PORT=9000
S3_REGION=us-east-1
# Development-only credentials, also in scripts/run.sh and the storage tests.
S3_ACCESS_KEY=stockflow
S3_SECRET_KEY=stockflow-dev-secret
S3_BUCKETS="stockflow-media stockflow-backups"
# 0.14.1 is the newest release that builds with rustc 1.95.
S3S_FS_VERSION=0.14.1
S3_DATA=$STATE_DIR/s3-data
S3_PIDFILE=$STATE_DIR/s3s-fs.pid
S3_LOG=$LOG_DIR/s3s-fs.log

# The API contract check (`make contract`, scripts/contract.sh reads this pin).
SCHEMATHESIS_VERSION=4.32.5
SCHEMATHESIS_VENV=/opt/stockflow/schemathesis-$SCHEMATHESIS_VERSION

NGINX_PORT=8088
NGINX_CONF=$ROOT/deploy/nginx/dev.conf
NGINX_PREFIX=$STATE_DIR/nginx
NGINX_PIDFILE=$NGINX_PREFIX/nginx.pid # must match `pid` in dev.conf

# Not 6432: Debian's pgbouncer package starts its own there under systemd.
PGBOUNCER_PORT=6433
PGBOUNCER_DIR=$STATE_DIR/pgbouncer
PGBOUNCER_PIDFILE=$PGBOUNCER_DIR/pgbouncer.pid

SERVICES=(postgresql rabbitmq s3 nginx pgbouncer)
declare -A ADDRESS=(
  [postgresql]=127.0.0.1:$PG_PORT
  [rabbitmq]=127.0.0.1:$AMQP_PORT
  [s3]=127.0.0.1:$S3_PORT
  [nginx]=127.0.0.1:$NGINX_PORT
  [pgbouncer]=127.0.0.1:$PGBOUNCER_PORT
  [build-deps]=-
  [schemathesis]=-
  [bench-tools]=-
  [chromium]=-
)
declare -A RESULT=() # service -> what `up` did, for the final table

# Daemons and admin tools live in sbin, which is not always on PATH (e.g. under make).
PATH=$PATH:/usr/local/sbin:/usr/sbin:/sbin

# ---------------------------------------------------------------------------
# helpers

log() { printf '==> %s\n' "$*" >&2; }
die() {
  printf 'services.sh: error: %s\n' "$*" >&2
  exit 1
}
have() { command -v "$1" >/dev/null 2>&1; }

require_root() {
  ((EUID == 0)) && return 0
  if have sudo; then
    exec sudo -- bash "${BASH_SOURCE[0]}" "$@"
  fi
  die "must run as root and sudo is not available"
}

# port_open PORT: something accepts TCP connections on 127.0.0.1:PORT.
port_open() {
  # shellcheck disable=SC2016 # $1 is expanded by the inner bash
  timeout 2 bash -c ': >"/dev/tcp/127.0.0.1/$1"' _ "$1" 2>/dev/null
}

# wait_for SECONDS CMD...: poll CMD every 0.5 s until it succeeds or time is up.
wait_for() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@"; do
    ((SECONDS < deadline)) || return 1
    sleep 0.5
  done
}

# version_ge A B: version A >= version B.
version_ge() {
  [[ $(printf '%s\n%s\n' "$1" "$2" | sort -V | head -n1) == "$2" ]]
}

pkg_installed() {
  dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'
}

APT_UPDATED=0
# apt_install SERVICE PKG...: install packages, running `apt-get update` at most once.
apt_install() {
  local service=$1
  shift
  have apt-get || die "$service: apt-get not found, install $* by hand"
  mkdir -p "$LOG_DIR"
  local aptlog=$LOG_DIR/apt.log
  if ((!APT_UPDATED)); then
    log "apt-get update (log: $aptlog)"
    apt-get update >>"$aptlog" 2>&1 || die "$service: apt-get update failed (see $aptlog)"
    APT_UPDATED=1
  fi
  log "installing $* (log: $aptlog)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
    -o DPkg::Lock::Timeout=300 "$@" </dev/null >>"$aptlog" 2>&1 ||
    die "$service: apt-get install $* failed (see $aptlog)"
}

mark_started() { # mark_started SERVICE [DETAIL]
  mkdir -p "$MARKER_DIR"
  printf '%s\n' "${2:-}" >"$MARKER_DIR/$1"
}
marked() { [[ -f $MARKER_DIR/$1 ]]; }

# pid_running PIDFILE PATTERN: the pidfile names a live process whose command
# line contains PATTERN (guards against killing a recycled pid).
pid_running() {
  local pid
  [[ -s $1 ]] || return 1
  pid=$(<"$1")
  [[ $pid =~ ^[0-9]+$ ]] || return 1
  # /proc rather than `kill -0`, which fails for root's processes when `status` runs unprivileged.
  tr '\0' ' ' 2>/dev/null <"/proc/$pid/cmdline" | grep -q -- "$2"
}

pid_gone() { ! kill -0 "$1" 2>/dev/null; }

# stop_pid PIDFILE PATTERN: TERM, wait up to 10 s, then KILL.
stop_pid() {
  local pid
  pid_running "$1" "$2" || return 0
  pid=$(<"$1")
  kill -TERM "$pid" 2>/dev/null || true
  if ! wait_for 10 pid_gone "$pid"; then
    kill -KILL "$pid" 2>/dev/null || true
    wait_for 5 pid_gone "$pid"
  fi
}

# ---------------------------------------------------------------------------
# build prerequisites for the Rust workspace (diesel links libpq)

ensure_build_deps() {
  local pkg missing=()
  for pkg in libpq-dev pkg-config gcc curl ca-certificates; do
    pkg_installed "$pkg" || missing+=("$pkg")
  done
  if ((${#missing[@]})); then
    apt_install build-deps "${missing[@]}"
    RESULT[build-deps]="installed ${missing[*]}"
  else
    RESULT[build-deps]="present"
  fi
}

# The tools `make bench` measures with and against (wrk, GNU time, rsync;
# pgbench and psql come with postgresql-client). `make test` runs a quick round of
# every scenario, so they are needed there too; and nftables, with which a
# test silences one database connection (crates/db/tests/silent_holder.rs).
ensure_bench_tools() {
  local pkg missing=()
  for pkg in wrk time rsync nftables; do
    pkg_installed "$pkg" || missing+=("$pkg")
  done
  if ((${#missing[@]})); then
    apt_install bench-tools "${missing[@]}"
    RESULT[bench-tools]="installed ${missing[*]}"
  else
    RESULT[bench-tools]="present"
  fi
}

# Headless Chromium and its WebDriver, with which a test opens the GraphiQL
# page and runs a query through it (services/api/tests/graphiql.rs).
ensure_chromium() {
  local pkg missing=()
  for pkg in chromium chromium-driver; do
    pkg_installed "$pkg" || missing+=("$pkg")
  done
  if ((${#missing[@]})); then
    apt_install chromium "${missing[@]}"
    RESULT[chromium]="installed ${missing[*]}"
  else
    RESULT[chromium]="present"
  fi
}

# ---------------------------------------------------------------------------
# postgresql

# Newest PostgreSQL version that has a $PG_CLUSTER cluster (a fresh install has one).
pg_version() {
  local dir versions=()
  for dir in /etc/postgresql/*/"$PG_CLUSTER"; do
    [[ -d $dir ]] || continue
    dir=${dir#/etc/postgresql/}
    versions+=("${dir%%/*}")
  done
  ((${#versions[@]})) || return 1
  printf '%s\n' "${versions[@]}" | sort -V | tail -n1
}

pg_ready() { pg_isready -q -h 127.0.0.1 -p "$PG_PORT"; }

# Runs the SQL on stdin as the postgres superuser over the unix socket (peer
# auth on Debian), with :role, :password and :db set as psql variables.
# cd / because the postgres user may not be able to read the current directory.
pg_admin_psql() {
  (cd / && runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -p "$PG_PORT" -d postgres \
    -v role="$PG_ROLE" -v password="$PG_PASSWORD" -v db="$PG_DB" "$@")
}

pg_login_works() {
  PGPASSWORD=$PG_PASSWORD PGCONNECT_TIMEOUT=5 psql -X -q -At -h 127.0.0.1 -p "$PG_PORT" \
    -U "$PG_ROLE" -d "$PG_DB" -c 'select 1' >/dev/null 2>&1
}

# Role + database, created or fixed only when needed (no writes when already right).
pg_ensure_role_and_db() {
  pg_admin_psql <<'SQL' || die "postgresql: could not create role/database $PG_ROLE"
SELECT format('CREATE ROLE %I LOGIN CREATEDB PASSWORD %L', :'role', :'password')
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = :'role')
\gexec
SELECT format('ALTER ROLE %I LOGIN CREATEDB', :'role')
  FROM pg_roles WHERE rolname = :'role' AND NOT (rolcanlogin AND rolcreatedb)
\gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'role')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'db')
\gexec
SELECT format('ALTER DATABASE %I OWNER TO %I', :'db', :'role')
  FROM pg_database WHERE datname = :'db' AND pg_get_userbyid(datdba) <> :'role'
\gexec
SQL
  pg_login_works && return 0
  # The role existed with another password: reset it once and retry.
  log "postgresql: resetting password of role $PG_ROLE"
  pg_admin_psql <<<"ALTER ROLE :\"role\" PASSWORD :'password';" ||
    die "postgresql: could not set password of role $PG_ROLE"
  pg_login_works ||
    die "postgresql: cannot log in as $PG_ROLE to 127.0.0.1:$PG_PORT/$PG_DB (check pg_hba.conf)"
}

ensure_postgresql() {
  local installed=0 started=0 ver
  if ! have pg_ctlcluster || ! have psql || ! have pg_isready; then
    apt_install postgresql postgresql postgresql-client
    installed=1
  fi
  if ! ver=$(pg_version); then
    # The Debian package normally creates the cluster; create it if that was skipped.
    ver=$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort -V | tail -n1)
    [[ -n $ver ]] || die "postgresql: no server version found under /usr/lib/postgresql"
    log "postgresql: creating cluster $ver/$PG_CLUSTER"
    pg_createcluster "$ver" "$PG_CLUSTER" -p "$PG_PORT" >>"$LOG_DIR/postgresql.log" 2>&1 ||
      die "postgresql: pg_createcluster $ver $PG_CLUSTER failed (see $LOG_DIR/postgresql.log)"
  fi

  # Markers are written before anything is launched, so that `down` can still
  # clean up if `up` dies while waiting. A service that is running right after
  # we installed it counts as ours too (the package may have autostarted it).
  if ((installed)); then
    mark_started postgresql "$ver $PG_CLUSTER"
  fi
  if ! pg_ready; then
    if ! pg_ctlcluster "$ver" "$PG_CLUSTER" status >/dev/null 2>&1; then
      log "postgresql: starting cluster $ver/$PG_CLUSTER"
      mark_started postgresql "$ver $PG_CLUSTER"
      # --skip-systemctl-redirect: there is no systemd on these machines.
      pg_ctlcluster --skip-systemctl-redirect "$ver" "$PG_CLUSTER" start </dev/null ||
        die "postgresql: pg_ctlcluster $ver $PG_CLUSTER start failed (see /var/log/postgresql/)"
      started=1
    fi
    wait_for 30 pg_ready ||
      die "postgresql: not accepting connections on 127.0.0.1:$PG_PORT after 30 s (see /var/log/postgresql/)"
  fi

  pg_ensure_role_and_db
  RESULT[postgresql]=$(result_word "$installed" "$started")
}

stop_postgresql() {
  local ver cluster
  read -r ver cluster <"$MARKER_DIR/postgresql" || true
  [[ -n ${ver:-} ]] || ver=$(pg_version) || return 0
  cluster=${cluster:-$PG_CLUSTER}
  pg_ctlcluster "$ver" "$cluster" status >/dev/null 2>&1 || return 0
  log "postgresql: stopping cluster $ver/$cluster"
  pg_ctlcluster --skip-systemctl-redirect "$ver" "$cluster" stop
}

# ---------------------------------------------------------------------------
# rabbitmq

# Prints `rabbitmqctl status` as JSON; fails when the node is not running.
rabbit_status() { timeout 60 rabbitmqctl -q status --formatter json 2>/dev/null; }

rabbit_version() {
  local v
  v=$(grep -o '"rabbitmq_version":"[^"]*"' <<<"$1" | cut -d'"' -f4) || true
  [[ -n $v ]] || v=$(rabbitmqctl -q version 2>/dev/null) || true
  printf '%s\n' "$v"
}

# One bounded `await_startup` attempt. It fails at once while the freshly
# started node has not registered with epmd yet, hence the retry loop around it.
rabbit_booted() {
  timeout 15 rabbitmqctl -q await_startup --timeout 10 >/dev/null 2>&1
}

ensure_rabbitmq() {
  local installed=0 started=0 status version
  if ! have rabbitmq-server || ! have rabbitmqctl; then
    apt_install rabbitmq rabbitmq-server
    installed=1
    mark_started rabbitmq # see ensure_postgresql
  fi

  if status=$(rabbit_status); then
    if ! port_open "$AMQP_PORT"; then
      # Node is up but AMQP is not listening (yet): it may still be booting.
      wait_for 90 rabbit_booted || true
      wait_for 5 port_open "$AMQP_PORT" ||
        die "rabbitmq: node is running but nothing listens on 127.0.0.1:$AMQP_PORT (check /etc/rabbitmq/rabbitmq.conf)"
    fi
  else
    port_open "$AMQP_PORT" &&
      die "rabbitmq: 127.0.0.1:$AMQP_PORT is open but rabbitmqctl cannot reach a node (foreign broker?)"
    log "rabbitmq: starting (log: /var/log/rabbitmq/)"
    # Keep AMQP on loopback unless the admin configured listeners explicitly.
    if ! grep -qsE '^[[:space:]]*listeners\.tcp' /etc/rabbitmq/rabbitmq.conf; then
      export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
    fi
    mark_started rabbitmq
    rabbitmq-server -detached </dev/null >>"$LOG_DIR/rabbitmq.log" 2>&1 ||
      die "rabbitmq: rabbitmq-server -detached failed (see $LOG_DIR/rabbitmq.log)"
    started=1
    wait_for 90 rabbit_booted ||
      die "rabbitmq: node did not finish booting within 90 s (see /var/log/rabbitmq/)"
    wait_for 10 port_open "$AMQP_PORT" ||
      die "rabbitmq: node booted but nothing listens on 127.0.0.1:$AMQP_PORT"
    status=$(rabbit_status) || die "rabbitmq: rabbitmqctl status fails after startup"
  fi

  version=$(rabbit_version "$status")
  [[ -n $version ]] || die "rabbitmq: could not determine the broker version"
  version_ge "$version" "$RABBITMQ_MIN_VERSION" ||
    die "rabbitmq: version $version is too old, quorum queues need >= $RABBITMQ_MIN_VERSION"
  RESULT[rabbitmq]="$(result_word "$installed" "$started") ($version)"
}

stop_rabbitmq() {
  rabbit_status >/dev/null || return 0
  log "rabbitmq: stopping"
  timeout 120 rabbitmqctl -q stop
}

# ---------------------------------------------------------------------------
# s3 (s3s-fs)

# 127.0.0.1:$S3_PORT answers a bucket listing signed with our credentials
# (curl signs SigV4 itself), so a server that refuses them does not count.
# --noproxy: an http_proxy in the environment must not intercept loopback.
s3_answers() {
  # s3s-fs requires x-amz-content-sha256, which curl does not add: this is the
  # digest of the empty body.
  curl --noproxy '*' -s -m 3 --aws-sigv4 "aws:amz:$S3_REGION:s3" --user "$S3_ACCESS_KEY:$S3_SECRET_KEY" \
    -H "x-amz-content-sha256: e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855" \
    "http://127.0.0.1:$S3_PORT/" 2>/dev/null | grep -q ListAllMyBucketsResult
}

# cargo may live in the invoking user's rustup home when we run under sudo.
find_cargo() {
  local candidate
  for candidate in "$(command -v cargo || true)" "${CARGO_HOME:-$HOME/.cargo}/bin/cargo" \
    ${SUDO_USER:+"$(getent passwd "$SUDO_USER" | cut -d: -f6)/.cargo/bin/cargo"}; do
    [[ -n $candidate && -x $candidate ]] && { printf '%s\n' "$candidate"; return 0; }
  done
  return 1
}

# Prints the s3s-fs to run: the one on PATH or in cargo's bin directory, if it
# is the pinned version.
find_s3s_fs() {
  local candidate cargo_bin
  cargo_bin=$(dirname "$(find_cargo 2>/dev/null || echo "${CARGO_HOME:-$HOME/.cargo}/bin/cargo")")
  for candidate in "$(command -v s3s-fs || true)" "$cargo_bin/s3s-fs"; do
    [[ -n $candidate && -x $candidate ]] || continue
    if [[ $("$candidate" --version 2>/dev/null) == "s3s-fs $S3S_FS_VERSION" ]]; then
      printf '%s\n' "$candidate"
      return 0
    fi
  done
  return 1
}

# Into cargo's own bin directory (~/.cargo/bin), where the tests look for it
# too: one build per machine, shared by every clone.
install_s3s_fs() {
  local cargo log=$LOG_DIR/s3s-fs-install.log
  cargo=$(find_cargo) || die "s3: cargo is needed to install s3s-fs (install Rust with rustup first)"
  log "s3: cargo install s3s-fs $S3S_FS_VERSION (log: $log; about 2 minutes, once per machine)"
  "$cargo" install --quiet --locked --force --features binary --version "$S3S_FS_VERSION" s3s-fs \
    >>"$log" 2>&1 || die "s3: cargo install s3s-fs failed (see $log)"
}

# Why s3s-fs: an S3-compatible server from crates.io (which these machines
# reach), no Docker, that checks SigV4 signatures, expires presigned URLs,
# honours If-None-Match and response-content-disposition, and supports
# multipart upload, ranges and paged listings: all the storage contract
# needs, so the conformance suite can fail for real.
ensure_s3() {
  local installed=0 bucket s3s_fs
  # The storage tests start private s3s-fs servers, so the binary must be
  # here even when a server already answers on :9000.
  if ! s3s_fs=$(find_s3s_fs); then
    install_s3s_fs
    installed=1
    s3s_fs=$(find_s3s_fs) || die "s3: s3s-fs $S3S_FS_VERSION is not where cargo installed it"
  fi
  if s3_answers; then
    RESULT[s3]="already running"
    ((installed)) && RESULT[s3]="installed, already running"
    return 0
  fi
  port_open "$S3_PORT" && die "s3: 127.0.0.1:$S3_PORT is in use by something that does not accept our S3 credentials"
  mkdir -p "$S3_DATA"
  # s3s-fs keeps a bucket as a directory of its root.
  for bucket in $S3_BUCKETS; do mkdir -p "$S3_DATA/$bucket"; done
  log "s3: starting s3s-fs on $S3_DATA (log: $S3_LOG)"
  mark_started s3
  # setsid detaches it from our session so it outlives make/the terminal; the
  # inner sh writes its own pid and then execs, so the pidfile is exact.
  # shellcheck disable=SC2016 # $$ and $1 are for the inner sh
  setsid sh -c 'echo $$ >"$1"; shift; exec nohup "$@"' sh "$S3_PIDFILE" \
    "$s3s_fs" --host 127.0.0.1 --port "$S3_PORT" --access-key "$S3_ACCESS_KEY" --secret-key "$S3_SECRET_KEY" \
    "$S3_DATA" </dev/null >>"$S3_LOG" 2>&1 &
  if ! wait_for 30 s3_answers; then
    # A server we cannot reach is no use; stop it so the next `up` starts afresh.
    stop_s3 >/dev/null 2>&1 || true
    rm -f "$MARKER_DIR/s3"
    die "s3: s3s-fs did not answer on 127.0.0.1:$S3_PORT within 30 s (see $S3_LOG)"
  fi
  RESULT[s3]="$(result_word "$installed" 1) (s3s-fs)"
}

stop_s3() {
  pid_running "$S3_PIDFILE" s3s-fs || return 0
  log "s3: stopping s3s-fs (pid $(<"$S3_PIDFILE"))"
  stop_pid "$S3_PIDFILE" s3s-fs || return 1
  rm -f "$S3_PIDFILE"
}

# ---------------------------------------------------------------------------
# nginx (our own instance; the system one, if any, is left alone)

nginx_ours() {
  nginx -p "$NGINX_PREFIX/" -c "$NGINX_CONF" -e "$NGINX_PREFIX/logs/error.log" "$@"
}
nginx_running() { pid_running "$NGINX_PIDFILE" nginx; }
# Our dev.conf answers a path no route serves with nginx's own header.
nginx_answers() {
  curl --noproxy '*' -s -o /dev/null -D - -m 3 "http://127.0.0.1:$NGINX_PORT/_protected/media/x" 2>/dev/null |
    grep -qi '^server: nginx'
}

ensure_nginx() {
  local installed=0 dir
  if ! have nginx; then
    apt_install nginx nginx
    installed=1
  fi
  [[ -f $NGINX_CONF ]] || die "nginx: $NGINX_CONF is missing"
  if nginx_running; then
    RESULT[nginx]="already running"
    return 0
  fi
  # Another checkout's `make services` (a CI clone beside a working copy)
  # started one: it serves the same dev.conf, so use it.
  if nginx_answers; then
    RESULT[nginx]="already running (started elsewhere)"
    return 0
  fi
  port_open "$NGINX_PORT" && die "nginx: 127.0.0.1:$NGINX_PORT is in use by another process"

  # nginx creates only the last component of temp paths; dev.conf points them here.
  for dir in logs tmp/client_body tmp/proxy tmp/fastcgi tmp/uwsgi tmp/scgi; do
    mkdir -p "$NGINX_PREFIX/$dir"
  done
  local startlog=$NGINX_PREFIX/logs/startup.log
  nginx_ours -t >>"$startlog" 2>&1 || die "nginx: config test of $NGINX_CONF failed (see $startlog)"
  log "nginx: starting on 127.0.0.1:$NGINX_PORT (logs: $NGINX_PREFIX/logs/)"
  mark_started nginx
  nginx_ours </dev/null >>"$startlog" 2>&1 || die "nginx: failed to start (see $startlog)"
  wait_for 10 port_open "$NGINX_PORT" || die "nginx: not listening on 127.0.0.1:$NGINX_PORT (see $startlog)"
  wait_for 5 nginx_running || die "nginx: no live pid in $NGINX_PIDFILE"
  RESULT[nginx]=$(result_word "$installed" 1)
}

stop_nginx() {
  nginx_running || return 0
  local pid
  pid=$(<"$NGINX_PIDFILE")
  log "nginx: stopping our instance (pid $pid)"
  nginx_ours -s quit 2>/dev/null || kill -QUIT "$pid"
  wait_for 10 pid_gone "$pid" && return 0
  kill -TERM "$pid" 2>/dev/null || true
  wait_for 5 pid_gone "$pid"
}

# ---------------------------------------------------------------------------
# pgbouncer: transaction pooling in front of the local PostgreSQL, for the
# tests that run the services through a pooler (DATABASE_STATEMENT_CACHE).

pgbouncer_running() { pid_running "$PGBOUNCER_PIDFILE" pgbouncer; }
pgbouncer_answers() {
  PGPASSWORD=$PG_PASSWORD PGCONNECT_TIMEOUT=3 psql -h 127.0.0.1 -p "$PGBOUNCER_PORT" -U "$PG_ROLE" -d "$PG_DB" \
    -Atc 'select 1' 2>/dev/null | grep -qx 1
}

ensure_pgbouncer() {
  local installed=0
  if ! have pgbouncer; then
    apt_install pgbouncer pgbouncer
    installed=1
  fi
  if pgbouncer_running; then
    RESULT[pgbouncer]="already running"
    return 0
  fi
  # Another checkout's `make services` started one with the same settings.
  if pgbouncer_answers; then
    RESULT[pgbouncer]="already running (started elsewhere)"
    return 0
  fi
  port_open "$PGBOUNCER_PORT" && die "pgbouncer: 127.0.0.1:$PGBOUNCER_PORT is in use by another process"
  # pgbouncer refuses to run as root: it runs as postgres, in a directory
  # of its own. The role's password is in the auth file in plain text, so
  # pgbouncer checks clients (md5) and logs in to PostgreSQL with it.
  mkdir -p "$PGBOUNCER_DIR"
  printf '"%s" "%s"\n' "$PG_ROLE" "$PG_PASSWORD" >"$PGBOUNCER_DIR/userlist.txt"
  cat >"$PGBOUNCER_DIR/pgbouncer.ini" <<EOF
[databases]
* = host=127.0.0.1 port=$PG_PORT

[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $PGBOUNCER_PORT
unix_socket_dir =
auth_type = md5
auth_file = $PGBOUNCER_DIR/userlist.txt
pool_mode = transaction
default_pool_size = 20
max_client_conn = 1000
max_db_connections = 40
server_idle_timeout = 10
# A client whose link goes silent inside a transaction holds that
# transaction's locks until PgBouncer drops it: the same checks as the
# services' own (docs/operations.md, "Links that die without closing").
tcp_keepalive = 1
tcp_keepidle = 10
tcp_keepintvl = 5
tcp_keepcnt = 3
tcp_user_timeout = 30000
logfile = $PGBOUNCER_DIR/pgbouncer.log
pidfile = $PGBOUNCER_PIDFILE
EOF
  chown -R postgres:postgres "$PGBOUNCER_DIR"
  chmod 0700 "$PGBOUNCER_DIR"
  log "pgbouncer: starting on 127.0.0.1:$PGBOUNCER_PORT, transaction mode (log: $PGBOUNCER_DIR/pgbouncer.log)"
  mark_started pgbouncer
  runuser -u postgres -- pgbouncer -d "$PGBOUNCER_DIR/pgbouncer.ini" >>"$LOG_DIR/pgbouncer-start.log" 2>&1 ||
    die "pgbouncer: failed to start (see $LOG_DIR/pgbouncer-start.log and $PGBOUNCER_DIR/pgbouncer.log)"
  wait_for 10 pgbouncer_answers || die "pgbouncer: no answer through 127.0.0.1:$PGBOUNCER_PORT (see $PGBOUNCER_DIR/pgbouncer.log)"
  RESULT[pgbouncer]=$(result_word "$installed" 1)
}

stop_pgbouncer() {
  pgbouncer_running || return 0
  log "pgbouncer: stopping (pid $(<"$PGBOUNCER_PIDFILE"))"
  stop_pid "$PGBOUNCER_PIDFILE" pgbouncer
}

# ---------------------------------------------------------------------------
# schemathesis (PyPI), in a virtualenv per pinned version, so neither the
# system's Python packages nor another version are touched.

schemathesis_installed() {
  [[ -x $SCHEMATHESIS_VENV/bin/schemathesis ]] &&
    [[ $("$SCHEMATHESIS_VENV/bin/schemathesis" --version 2>/dev/null) == "schemathesis, version $SCHEMATHESIS_VERSION" ]]
}

ensure_schemathesis() {
  if schemathesis_installed; then
    RESULT[schemathesis]="present ($SCHEMATHESIS_VERSION)"
    return 0
  fi
  local log=$LOG_DIR/schemathesis-install.log
  have python3 || apt_install schemathesis python3
  # Debian's python3 keeps venv and pip in a package of their own.
  python3 -c 'import ensurepip, venv' 2>/dev/null || apt_install schemathesis python3-venv
  log "schemathesis: pip install schemathesis==$SCHEMATHESIS_VERSION into $SCHEMATHESIS_VENV (log: $log)"
  rm -rf "$SCHEMATHESIS_VENV"
  python3 -m venv "$SCHEMATHESIS_VENV" >>"$log" 2>&1 || die "schemathesis: python3 -m venv failed (see $log)"
  "$SCHEMATHESIS_VENV/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION" \
    >>"$log" 2>&1 || die "schemathesis: pip install failed (see $log)"
  schemathesis_installed || die "schemathesis: $SCHEMATHESIS_VENV/bin/schemathesis is not version $SCHEMATHESIS_VERSION"
  RESULT[schemathesis]="installed ($SCHEMATHESIS_VERSION)"
}

# ---------------------------------------------------------------------------
# commands

result_word() { # result_word INSTALLED STARTED
  if (($1)); then
    echo "installed+started"
  elif (($2)); then
    echo "started"
  else
    echo "already running"
  fi
}

cmd_up() {
  mkdir -p "$STATE_DIR" "$MARKER_DIR" "$LOG_DIR"
  ensure_build_deps # first: provides curl, used to probe the S3 server
  ensure_postgresql
  ensure_rabbitmq
  ensure_s3
  ensure_nginx
  ensure_pgbouncer
  ensure_schemathesis
  ensure_bench_tools
  ensure_chromium

  local name
  printf '\n%-13s %-16s %s\n' SERVICE ADDRESS STATE
  for name in "${SERVICES[@]}" build-deps schemathesis bench-tools chromium; do
    printf '%-13s %-16s %s\n' "$name" "${ADDRESS[$name]}" "${RESULT[$name]}"
  done
}

cmd_down() {
  local name failed=() stopped=0
  # Reverse start order; only services with a marker, i.e. started by `up`.
  for name in pgbouncer nginx s3 rabbitmq postgresql; do
    marked "$name" || continue
    stopped=1
    if "stop_$name"; then
      rm -f "$MARKER_DIR/$name"
      echo "$name: stopped"
    else
      failed+=("$name")
    fi
  done
  ((stopped)) || echo "nothing to stop: no service was started by \`$0 up\`"
  ((${#failed[@]} == 0)) || die "could not stop: ${failed[*]} (markers kept, retry \`$0 down\`)"
}

# Per-test databases are named stockflow_test_<uuid> (crates/testkit). They are
# dropped without FORCE, so one with open connections is kept; still, run this
# when no test run is active (a live run's database may be momentarily idle).
# The migrated templates (stockflow_tpl_*) are a cache and stay.
cmd_clean_test_dbs() {
  local names name dropped=0 kept=0
  if ! have pg_isready || ! pg_ready; then
    die "postgresql: not reachable on 127.0.0.1:$PG_PORT (run \`make services\`)"
  fi
  names=$(pg_admin_psql -At <<<"SELECT datname FROM pg_database
    WHERE datname ~ '^stockflow_(test_[0-9a-f]{32}|tpl_[0-9a-f]{12}(_building)?)\$' ORDER BY 1") ||
    die "postgresql: could not list test databases"
  for name in $names; do
    if pg_admin_psql -v name="$name" <<<'DROP DATABASE :"name";' 2>/dev/null; then
      dropped=$((dropped + 1))
    else
      echo "kept $name (in use)"
      kept=$((kept + 1))
    fi
  done
  echo "test databases: $dropped dropped, $kept kept"
}

# service_up SERVICE: cheap reachability probe used by `status`.
service_up() {
  case $1 in
    postgresql) if have pg_isready; then pg_ready; else port_open "$PG_PORT"; fi ;;
    rabbitmq) port_open "$AMQP_PORT" ;;
    s3) s3_answers ;;
    nginx) nginx_running || nginx_answers ;;
    pgbouncer) pgbouncer_running || pgbouncer_answers ;;
  esac
}

cmd_status() {
  local name state ok=1 ours
  printf '%-11s %-16s %s\n' SERVICE ADDRESS STATE
  for name in "${SERVICES[@]}"; do
    if service_up "$name"; then
      state=running
    else
      ok=0
      state=stopped
      if [[ $name == nginx ]] && port_open "$NGINX_PORT"; then
        state="stopped (port used by another process)"
      fi
    fi
    ours=""
    marked "$name" && ours=" (started by services.sh)"
    printf '%-11s %-16s %s\n' "$name" "${ADDRESS[$name]}" "$state$ours"
  done
  ((ok))
}

main() {
  local cmd=${1:-}
  case $cmd in
    up | down | status | clean-test-dbs) ;;
    *)
      echo "usage: $0 up|down|status|clean-test-dbs" >&2
      exit 2
      ;;
  esac
  # `status` only probes ports and pidfiles, so it also works unprivileged.
  [[ $cmd == status ]] || require_root "$@"
  "cmd_${cmd//-/_}"
}

main "$@"
