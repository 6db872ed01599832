#!/usr/bin/env bash
# `make test-deploy`: build the four service images from deploy/Dockerfile and
# run the production compose stack (compose/docker-compose.yml + prod + tls)
# end to end on 127.0.0.1, through nginx, then stop every container with
# SIGTERM and remove it all. Also validates deploy/k8s/.
#
# These machines reach no container registry, so it makes what a user would
# pull (deploy/test/README.md): a debootstrapped bookworm base, a Rust image
# from the host's toolchain, and stand-ins for postgres, rabbitmq, nginx and
# the S3 server. It runs its own dockerd (docker.io, started by hand) on its
# own socket; the image store and build cache live in STOCKFLOW_DEPLOY_CACHE
# (default /var/cache/stockflow-deploy) so later runs are warm. Everything
# else it starts (dockerd, containers, networks, the bridge and firewall
# rules dockerd adds) is removed on exit, failed steps included.
#
# Prints each step with its time, and each image's size. Needs root (re-runs
# itself through sudo).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE=${STOCKFLOW_DEPLOY_CACHE:-/var/cache/stockflow-deploy}
PROJECT=sfdeploy
# Every service image must fit under this, on a bookworm-slim base.
MAX_IMAGE_MB=120
# A container must end within this after SIGTERM, with exit status 0.
STOP_SECS=10
LOCAL=localhost/stockflow-test
BASE_IMAGE=$LOCAL/debian:bookworm-slim

# The docker.io package's 20.10 client: the only one here that builds with
# BuildKit (a newer CLI without buildx may come first in PATH).
DOCKER=/usr/bin/docker
export PATH=/usr/bin:/usr/sbin:/bin:/sbin:/usr/local/bin:/usr/local/sbin:$HOME/.cargo/bin
export DOCKER_BUILDKIT=1

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'test-deploy: %s\n' "$*" >&2; exit 1; }

if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || die "needs root (dockerd, debootstrap, iptables)"
    exec sudo -E "$0" "$@"
fi

# ---------------------------------------------------------------------------
# steps, timed

STEPS=()
CURRENT_STEP=
SCRIPT_START=$SECONDS
step() {
    # step NAME COMMAND...: runs it, records its time.
    local name=$1 started=$SECONDS
    shift
    CURRENT_STEP=$name
    log "$name"
    "$@"
    STEPS+=("$(printf '%-58s %5d s' "$name" $((SECONDS - started)))")
    CURRENT_STEP=
}

summary() {
    echo
    echo "test-deploy steps:"
    local line
    for line in "${STEPS[@]}"; do echo "  $line"; done
    [ -z "$CURRENT_STEP" ] || echo "  FAILED: $CURRENT_STEP"
    echo "  total $((SECONDS - SCRIPT_START)) s"
}

# ---------------------------------------------------------------------------
# packages and dockerd

ensure_packages() {
    local missing=() pkg
    for pkg in docker.io docker-compose debootstrap curl iptables iproute2 openssl binutils nftables; do
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing+=("$pkg")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        log "installing ${missing[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null \
            || { apt-get update >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >/dev/null; }
    fi
    [ -x "$DOCKER" ] || die "$DOCKER missing after installing docker.io"
}

RUN_DIR=
DOCKERD_PID=
BRIDGES_BEFORE=
NFT_TABLES_BEFORE=
STACK_UP=false

bridges() { ip -o link show type bridge 2>/dev/null | awk -F': ' '{print $2}' | sed 's/@.*//' | sort; }
nft_tables() { nft list tables 2>/dev/null | sort || true; }

start_dockerd() {
    BRIDGES_BEFORE=$(bridges)
    NFT_TABLES_BEFORE=$(nft_tables)
    iptables-save >"$RUN_DIR/iptables.before" 2>/dev/null || true
    ip6tables-save >"$RUN_DIR/ip6tables.before" 2>/dev/null || true
    mkdir -p "$CACHE/docker"
    dockerd -H "unix://$RUN_DIR/docker.sock" --data-root "$CACHE/docker" --exec-root "$RUN_DIR/exec" \
        --pidfile "$RUN_DIR/dockerd.pid" >"$RUN_DIR/dockerd.log" 2>&1 &
    DOCKERD_PID=$!
    export DOCKER_HOST=unix://$RUN_DIR/docker.sock
    local deadline=$((SECONDS + 30))
    until "$DOCKER" info >/dev/null 2>&1; do
        kill -0 "$DOCKERD_PID" 2>/dev/null || { tail -20 "$RUN_DIR/dockerd.log" >&2; die "dockerd exited"; }
        [ "$SECONDS" -lt "$deadline" ] || { tail -20 "$RUN_DIR/dockerd.log" >&2; die "dockerd not ready in 30 s"; }
        sleep 0.2
    done
}

stop_dockerd() {
    [ -n "$DOCKERD_PID" ] || return 0
    kill -TERM "$DOCKERD_PID" 2>/dev/null || true
    local deadline=$((SECONDS + 30))
    while kill -0 "$DOCKERD_PID" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.2; done
    kill -KILL "$DOCKERD_PID" 2>/dev/null || true
    wait "$DOCKERD_PID" 2>/dev/null || true
    DOCKERD_PID=
    # What dockerd leaves behind: mounts under its roots, bridges, rules.
    findmnt -rn -o TARGET | grep -E "^($RUN_DIR|$CACHE/docker)/" | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
    local bridge
    for bridge in $(comm -13 <(echo "$BRIDGES_BEFORE") <(bridges)); do
        ip link delete "$bridge" 2>/dev/null || true
    done
    local table
    while read -r table; do
        # "table ip nat" -> nft delete table ip nat
        # shellcheck disable=SC2086 # split into nft's words on purpose
        [ -z "$table" ] || nft delete $table 2>/dev/null || true
    done < <(comm -13 <(echo "$NFT_TABLES_BEFORE") <(nft_tables))
    # Tables that were there before keep their rules as they were.
    [ ! -s "$RUN_DIR/iptables.before" ] || iptables-restore <"$RUN_DIR/iptables.before" 2>/dev/null || true
    [ ! -s "$RUN_DIR/ip6tables.before" ] || ip6tables-restore <"$RUN_DIR/ip6tables.before" 2>/dev/null || true
}

cleanup() {
    local status=$?
    set +e
    if [ "$STACK_UP" = true ]; then
        if [ "$status" -ne 0 ]; then
            log "logs of the stack (last 40 lines per container)"
            compose logs --no-color --tail 40 >&2 2>&1
        fi
        compose down -v -t "$STOP_SECS" --remove-orphans >/dev/null 2>&1
    fi
    stop_dockerd
    [ -z "$RUN_DIR" ] || rm -rf "$RUN_DIR"
    summary
    [ "$status" -eq 0 ] && echo "test-deploy: passed" || echo "test-deploy: FAILED (exit $status)"
    exit "$status"
}

# ---------------------------------------------------------------------------
# images

image_exists() { "$DOCKER" image inspect "$1" >/dev/null 2>&1; }

build() {
    # build LOGNAME docker-build-args...: quiet unless it fails.
    local name=$1
    shift
    if ! "$DOCKER" build --progress=plain "$@" >"$RUN_DIR/build-$name.log" 2>&1; then
        tail -40 "$RUN_DIR/build-$name.log" >&2
        die "docker build of $name failed"
    fi
}

make_base_image() {
    image_exists "$BASE_IMAGE" && return 0
    local tarball=$CACHE/bookworm-slim.tar
    if [ ! -s "$tarball" ]; then
        local rootfs=$CACHE/rootfs mirror
        mirror=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
        rm -rf "$rootfs"
        debootstrap --variant=minbase bookworm "$rootfs" "${mirror:-http://deb.debian.org/debian}" >"$CACHE/debootstrap.log" 2>&1 \
            || { tail -20 "$CACHE/debootstrap.log" >&2; die "debootstrap failed"; }
        # What makes the official image "slim": no docs, man pages or
        # locales, and apt keeps no package lists or archives.
        cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
EOF
        cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";
EOF
        echo 'APT::Install-Recommends "false";' >"$rootfs/etc/apt/apt.conf.d/docker-no-recommends"
        find "$rootfs/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
        rm -rf "$rootfs"/usr/share/{man,info,locale,lintian}/* "$rootfs"/var/lib/apt/lists/* \
            "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/log/*
        tar -C "$rootfs" -cf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
        rm -rf "$rootfs"
    fi
    "$DOCKER" import "$tarball" "$BASE_IMAGE" >/dev/null
}

RUST_IMAGE=
make_rust_image() {
    local version sysroot context
    version=$(rustc --version | awk '{print $2}')
    RUST_IMAGE=$LOCAL/rust:$version-slim-bookworm
    image_exists "$RUST_IMAGE" && return 0
    sysroot=$(rustc --print sysroot)
    context=$CACHE/rust-context
    rm -rf "$context"
    mkdir -p "$context/toolchain" "$context/ca"
    # Hard links where the toolchain is on the same filesystem; the docs
    # (share/) are not needed to build.
    cp -al "$sysroot/bin" "$sysroot/lib" "$context/toolchain/" 2>/dev/null \
        || cp -a "$sysroot/bin" "$sysroot/lib" "$context/toolchain/"
    cp /usr/local/share/ca-certificates/*.crt "$context/ca/" 2>/dev/null || true
    build rust -f "$ROOT/deploy/test/rust/Dockerfile" --build-arg "BASE=$BASE_IMAGE" -t "$RUST_IMAGE" "$context"
    rm -rf "$context"
}

make_standin_images() {
    local name
    for name in postgres rabbitmq nginx; do
        build "$name" --build-arg "BASE=$BASE_IMAGE" -t "$LOCAL/$name:test" "$ROOT/deploy/test/$name"
    done
    local s3s context=$RUN_DIR/s3-context
    s3s=$(command -v s3s-fs || true)
    [ -n "$s3s" ] || die "s3s-fs not found: run make services first (it installs it)"
    mkdir -p "$context"
    cp "$s3s" "$ROOT/deploy/test/s3/entrypoint.sh" "$ROOT/deploy/test/s3/Dockerfile" "$context/"
    build s3 --build-arg "BASE=$BASE_IMAGE" -t "$LOCAL/s3:test" "$context"
}

SERVICES=(api worker scheduler backup)
build_service_images() {
    local svc
    for svc in "${SERVICES[@]}"; do
        local started=$SECONDS
        build "$svc" -f "$ROOT/deploy/Dockerfile" --target "$svc" \
            --build-arg "RUST_IMAGE=$RUST_IMAGE" --build-arg "RUNTIME_IMAGE=$BASE_IMAGE" \
            -t "$LOCAL/stockflow-$svc:test" "$ROOT"
        log "  stockflow-$svc built in $((SECONDS - started)) s"
    done
}

check_image_sizes() {
    local svc bytes mb over=()
    for svc in "${SERVICES[@]}"; do
        bytes=$("$DOCKER" image inspect -f '{{.Size}}' "$LOCAL/stockflow-$svc:test")
        mb=$(awk -v b="$bytes" 'BEGIN{printf "%.1f", b/1000000}')
        STEPS+=("$(printf '  image stockflow-%-10s %38s MB' "$svc" "$mb")")
        log "  stockflow-$svc: $mb MB (limit $MAX_IMAGE_MB MB)"
        awk -v b="$bytes" -v max="$MAX_IMAGE_MB" 'BEGIN{exit !(b/1000000 >= max)}' && over+=("stockflow-$svc ($mb MB)")
    done
    [ "${#over[@]}" -eq 0 ] || die "images over $MAX_IMAGE_MB MB: ${over[*]}"
    # The shipped binaries carry no debug info; the images run as 10001.
    local container
    for svc in "${SERVICES[@]}"; do
        container=$("$DOCKER" create "$LOCAL/stockflow-$svc:test")
        "$DOCKER" cp "$container:/usr/local/bin/stockflow-$svc" "$RUN_DIR/stockflow-$svc" >/dev/null
        "$DOCKER" rm "$container" >/dev/null
        # .debug_gdb_scripts is loaded code (rustc's pretty-printer hook),
        # kept by strip; the DWARF sections are what must be gone.
        ! readelf -S -W "$RUN_DIR/stockflow-$svc" | grep -Eq '\.debug_(info|line|abbrev|str|ranges|rnglists|loc|loclists) ' \
            || die "stockflow-$svc ships debug info"
        [ "$("$DOCKER" image inspect -f '{{.Config.User}}' "$LOCAL/stockflow-$svc:test")" = 10001:10001 ] \
            || die "stockflow-$svc does not run as 10001:10001"
    done
}

# ---------------------------------------------------------------------------
# the stack

HTTP_PORT=
HTTPS_PORT=
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

compose() {
    docker-compose -p "$PROJECT" --env-file "$RUN_DIR/compose.env" \
        -f "$ROOT/compose/docker-compose.yml" -f "$ROOT/compose/docker-compose.prod.yml" \
        -f "$ROOT/compose/docker-compose.tls.yml" -f "$ROOT/deploy/test/compose.test.yml" "$@"
}

write_settings() {
    HTTP_PORT=$(free_port)
    HTTPS_PORT=$(free_port)
    local db_pass s3_pass amqp_pass
    db_pass=$(openssl rand -hex 12)
    amqp_pass=$(openssl rand -hex 12)
    s3_pass=$(openssl rand -hex 12)
    mkdir -p "$RUN_DIR/tls"
    openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost -addext subjectAltName=DNS:localhost \
        -keyout "$RUN_DIR/tls/tls.key" -out "$RUN_DIR/tls/tls.crt" 2>/dev/null
    chgrp 10001 "$RUN_DIR/tls/tls.key" && chmod 0640 "$RUN_DIR/tls/tls.key"
    chmod 0755 "$RUN_DIR" "$RUN_DIR/tls"
    cat >"$RUN_DIR/compose.env" <<EOF
POSTGRES_PASSWORD=$db_pass
RABBITMQ_DEFAULT_PASS=$amqp_pass
MINIO_ROOT_PASSWORD=$s3_pass
POSTGRES_IMAGE=$LOCAL/postgres:test
RABBITMQ_IMAGE=$LOCAL/rabbitmq:test
MINIO_IMAGE=$LOCAL/s3:test
NGINX_IMAGE=$LOCAL/nginx:test
STOCKFLOW_IMAGE_PREFIX=$LOCAL/stockflow
STOCKFLOW_IMAGE_TAG=test
STOCKFLOW_ENV_FILE=$RUN_DIR/stockflow.env
STOCKFLOW_HTTP_ADDRESS=127.0.0.1
STOCKFLOW_HTTP_PORT=$HTTP_PORT
STOCKFLOW_HTTPS_ADDRESS=127.0.0.1
STOCKFLOW_HTTPS_PORT=$HTTPS_PORT
STOCKFLOW_TLS_DIR=$RUN_DIR/tls
EOF
    # The operator's file as shipped, then what this deployment changes:
    # passwords, x-accel downloads, backups to the S3 server.
    {
        cat "$ROOT/.env.prod.example"
        cat <<EOF

# ---- make test-deploy ----
DATABASE_URL=postgres://stockflow:$db_pass@postgres:5432/stockflow
AMQP_URL=amqp://stockflow:$amqp_pass@rabbitmq:5672/%2f
ATTACHMENT_DELIVERY=x-accel
BACKUP_STORAGE_BACKEND=s3
BACKUP_S3_BUCKET=stockflow-backups
BACKUP_S3_ENDPOINT=http://minio:9000
BACKUP_S3_FORCE_PATH_STYLE=true
BACKUP_S3_ACCESS_KEY_ID=stockflow
BACKUP_S3_SECRET_ACCESS_KEY=$s3_pass
EOF
    } >"$RUN_DIR/stockflow.env"
}

# container IDS of a service
containers() { compose ps -q "$1"; }

wait_healthy() {
    # wait_healthy SECONDS: every container of the stack running and, where
    # it has a health check, healthy.
    local limit=$1 deadline=$((SECONDS + $1)) pending
    while :; do
        pending=$("$DOCKER" inspect -f '{{.Name}} {{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' \
            $(compose ps -q) | awk '$2 != "running" || ($3 != "healthy" && $3 != "none")')
        [ -n "$pending" ] || return 0
        if [ "$SECONDS" -ge "$deadline" ]; then
            echo "$pending" >&2
            die "not healthy within $limit s"
        fi
        sleep 1
    done
}

migrate() {
    compose up -d --no-build postgres rabbitmq minio >"$RUN_DIR/infra.log" 2>&1 || { cat "$RUN_DIR/infra.log" >&2; die "compose up of postgres, rabbitmq, minio failed"; }
    wait_healthy 120
    # Two at once on the new database: the advisory lock makes one wait for
    # the other, and both succeed.
    compose run --rm api migrate >"$RUN_DIR/migrate-1.log" 2>&1 &
    local first=$!
    compose run --rm api migrate >"$RUN_DIR/migrate-2.log" 2>&1 || { cat "$RUN_DIR/migrate-2.log" >&2; die "migrate failed"; }
    wait "$first" || { cat "$RUN_DIR/migrate-1.log" >&2; die "migrate failed"; }
}

up() {
    STACK_UP=true
    compose up -d --no-build >"$RUN_DIR/up.log" 2>&1 || { cat "$RUN_DIR/up.log" >&2; die "compose up failed"; }
    wait_healthy 180
}

check_readiness() {
    local svc c deadline
    for svc in "${SERVICES[@]}"; do
        for c in $(containers "$svc"); do
            deadline=$((SECONDS + 60))
            until "$DOCKER" exec "$c" "stockflow-$svc" healthcheck --ready 2>"$RUN_DIR/ready.err"; do
                [ "$SECONDS" -lt "$deadline" ] || { cat "$RUN_DIR/ready.err" >&2; die "$svc not ready in 60 s"; }
                sleep 1
            done
        done
    done
    expect_status 200 "$BASE_URL/healthz"
    expect_status 404 "$BASE_URL/readyz"
    expect_status 404 "$BASE_URL/metrics"
}

BASE_URL=
TOKEN=
expect_status() {
    # expect_status CODE URL [curl args...]
    local want=$1 url=$2 got
    shift 2
    got=$(curl -sS -o /dev/null -w '%{http_code}' "$@" "$url")
    [ "$got" = "$want" ] || die "$url: expected $want, got $got"
}

api() {
    # api METHOD PATH [curl args...]: the body on stdout; fails on >= 400.
    local method=$1 path=$2
    shift 2
    curl -sS --fail-with-body -X "$method" -H "Authorization: Bearer $TOKEN" "$@" "$BASE_URL$path"
}
json() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1], {}, {"d": d}))' "$1"; }

create_token() {
    TOKEN=$(compose run --rm -T api token create --org acme --role admin --operator 2>"$RUN_DIR/token.err" | tail -1)
    [ -n "$TOKEN" ] || { cat "$RUN_DIR/token.err" >&2; die "no token printed"; }
    api GET /v1/me >/dev/null
}

PRODUCT_ID=
BATCH_ID=
create_records() {
    PRODUCT_ID=$(api POST /v1/products -H 'Content-Type: application/json' \
        -d '{"sku": "DEPLOY-01", "name": "Deployed flour", "unit": "kg"}' | json 'd["id"]')
    BATCH_ID=$(api POST /v1/batches -H 'Content-Type: application/json' \
        -d "{\"product_id\": \"$PRODUCT_ID\", \"code\": \"B-DEPLOY\", \"quantity\": \"12.500\", \"produced_at\": \"2026-11-30T08:00:00Z\"}" \
        | json 'd["id"]')
}

upload_and_download() {
    local file=$RUN_DIR/lot-report.txt attachment
    { echo "Lot report for B-DEPLOY"; head -c 300000 /dev/urandom | base64; } >"$file"
    attachment=$(api POST "/v1/batches/$BATCH_ID/attachments" -F "file=@$file;type=text/plain" | json 'd["id"]')
    # Through nginx: the bytes uploaded.
    api GET "/v1/attachments/$attachment/content" -o "$RUN_DIR/downloaded.txt"
    cmp -s "$file" "$RUN_DIR/downloaded.txt" || die "the downloaded attachment differs from the upload"
    # From the api directly (inside the network): no body, an
    # X-Accel-Redirect for nginx; so nginx, not the api, sent the file.
    local headers
    headers=$(compose exec -T nginx curl -sS -D - -o /dev/null -H "Authorization: Bearer $TOKEN" \
        "http://api:8000/v1/attachments/$attachment/content")
    grep -qi '^x-accel-redirect: /_protected/media/' <<<"$headers" \
        || { echo "$headers" >&2; die "the api did not hand the download to nginx (X-Accel-Redirect)"; }
}

export_and_download() {
    local export_id status deadline=$((SECONDS + 120))
    export_id=$(api POST /v1/exports -H 'Content-Type: application/json' \
        -d '{"kind": "batches", "format": "csv"}' | json 'd["id"]')
    while :; do
        status=$(api GET "/v1/exports/$export_id" | json 'd["status"]')
        case "$status" in
            succeeded) break ;;
            failed | expired | missing) die "export $export_id ended $status" ;;
        esac
        [ "$SECONDS" -lt "$deadline" ] || die "export $export_id still $status after 120 s"
        sleep 1
    done
    api GET "/v1/exports/$export_id/content" -o "$RUN_DIR/export.csv"
    grep -q 'B-DEPLOY' "$RUN_DIR/export.csv" || { head -5 "$RUN_DIR/export.csv" >&2; die "the export lacks batch B-DEPLOY"; }
}

backup_to_s3() {
    # pg_dump of the image against the stack's PostgreSQL, media, and the
    # verify by restore; the run lands in the S3 server.
    local run_id
    run_id=$(compose run --rm -T backup run 2>"$RUN_DIR/backup.err" | tail -1) \
        || { tail -20 "$RUN_DIR/backup.err" >&2; die "stockflow-backup run failed"; }
    local run
    run=$(api GET "/v1/backups/$run_id")
    [ "$(json 'd["status"]' <<<"$run")" = succeeded ] || die "backup run $run_id: $run"
    # The dump is in the S3 server's bucket, not on a local volume.
    compose exec -T minio test -s "/data/stockflow-backups/backups/$run_id/database.dump" \
        || die "backup run $run_id: no backups/$run_id/database.dump in the S3 bucket"
}

scale_out() {
    compose up -d --no-build --scale api=2 --scale worker=3 >"$RUN_DIR/scale.log" 2>&1 \
        || { cat "$RUN_DIR/scale.log" >&2; die "scaling failed"; }
    wait_healthy 180
    [ "$(containers api | wc -l)" = 2 ] && [ "$(containers worker | wc -l)" = 3 ] || die "expected 2 api and 3 worker containers"
    # nginx spreads requests over both api replicas (its log names the
    # upstream of each).
    local i
    for i in $(seq 1 20); do api GET /v1/me -H "X-Request-Id: deploy-scale-$i" >/dev/null; done
    local upstreams
    upstreams=$(compose logs --no-color nginx | grep 'request_id=deploy-scale-' | grep -o 'upstream=[0-9.:]*' | sort -u | wc -l)
    [ "$upstreams" -ge 2 ] || die "nginx sent every request to one api replica ($upstreams upstream)"
    # The scheduler standby and the three workers are all ready.
    check_readiness
}

check_tls() {
    local headers
    headers=$(curl -sS -D - -o /dev/null --cacert "$RUN_DIR/tls/tls.crt" \
        --resolve "localhost:$HTTPS_PORT:127.0.0.1" "https://localhost:$HTTPS_PORT/healthz")
    grep -q '^HTTP/[0-9.]* 200' <<<"$headers" || { echo "$headers" >&2; die "HTTPS /healthz did not answer 200"; }
    grep -qi '^strict-transport-security: max-age=63072000' <<<"$headers" || die "no HSTS header over HTTPS"
}

stop_each_with_sigterm() {
    # Clients first, then what they use. `docker stop` sends SIGTERM and,
    # after STOP_SECS, SIGKILL: a container that needs the kill exits 137.
    local svc c started took code failures=()
    for svc in nginx api worker scheduler backup minio rabbitmq postgres; do
        for c in $(containers "$svc"); do
            started=$(date +%s.%N)
            "$DOCKER" stop -t "$STOP_SECS" "$c" >/dev/null
            took=$(awk -v a="$started" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
            code=$("$DOCKER" inspect -f '{{.State.ExitCode}}' "$c")
            STEPS+=("$(printf '  SIGTERM %-12s %-14s exit %3s in %5s s' "$svc" "${c:0:12}" "$code" "$took")")
            if [ "$code" != 0 ] || awk -v t="$took" -v max="$STOP_SECS" 'BEGIN{exit !(t >= max)}'; then
                failures+=("$svc ${c:0:12}: exit $code in $took s")
            fi
        done
    done
    [ "${#failures[@]}" -eq 0 ] || die "containers that did not stop cleanly on SIGTERM: ${failures[*]}"
}

down() {
    compose down -v -t "$STOP_SECS" --remove-orphans >"$RUN_DIR/down.log" 2>&1 || { cat "$RUN_DIR/down.log" >&2; die "compose down failed"; }
    STACK_UP=false
}

# ---------------------------------------------------------------------------

main() {
    step "install docker.io, docker-compose, debootstrap where missing" ensure_packages
    mkdir -p "$CACHE"
    # One run at a time per machine: they share the image store and docker0.
    exec 9>"$CACHE/lock"
    flock -w 3600 9 || die "another test-deploy holds $CACHE/lock"
    RUN_DIR=$(mktemp -d /tmp/sfdeploy.XXXXXX)
    trap cleanup EXIT
    trap 'exit 130' INT TERM

    step "validate deploy/k8s against the Kubernetes schemas" bash "$ROOT/scripts/k8s-validate.sh"
    step "start dockerd" start_dockerd
    step "base image (debootstrap bookworm, slim)" make_base_image
    step "Rust image from the host toolchain" make_rust_image
    step "stand-in images: postgres, rabbitmq, nginx, s3" make_standin_images
    step "build the four service images" build_service_images
    step "image sizes (limit $MAX_IMAGE_MB MB) and user" check_image_sizes
    step "settings and TLS certificate" write_settings
    BASE_URL=http://127.0.0.1:$HTTP_PORT
    STACK_UP=true
    step "postgres, rabbitmq, s3 healthy; migrate twice at once (run --rm api migrate)" migrate
    step "up -d: every container healthy" up
    step "readiness of every service; /healthz through nginx" check_readiness
    step "token (run --rm api token create)" create_token
    step "product and batch through nginx" create_records
    step "upload, and its x-accel download" upload_and_download
    step "export to succeeded, and its download" export_and_download
    step "backup run to the S3 server (run --rm backup run)" backup_to_s3
    step "HTTPS with HSTS" check_tls
    step "scale: api=2, worker=3; nginx uses both api replicas" scale_out
    step "SIGTERM each container: exit 0 within $STOP_SECS s" stop_each_with_sigterm
    step "down -v" down
}

main "$@"
