#!/usr/bin/env python3
"""Stockflow benchmarks: `make bench` (or `python3 bench/run.py [SCENARIO...]`).

Each scenario measures our figure and, in the same run on the same machine, a
baseline from a standard tool, and reports their ratio. Results accumulate in
bench/results.json (one entry per scenario, replaced when it runs again) and
docs/benchmarks.md is rendered from that file, so running one scenario keeps
the others' last results.

Needs `make services` and release binaries (`make bench` does both), and
for some scenarios GNU time, wrk and pgbench (`apt-get install time wrk
postgresql-client`); a scenario missing one says so. STOCKFLOW_BIN_DIR
points at other binaries than target/release.
"""

import argparse
import atexit
import datetime
import hashlib
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("STOCKFLOW_BIN_DIR", os.path.join(ROOT, "target", "release"))
RESULTS = os.path.join(ROOT, "bench", "results.json")
REPORT = os.path.join(ROOT, "docs", "benchmarks.md")
DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://stockflow:stockflow@127.0.0.1:5432/stockflow")
AMQP_URL = os.environ.get("BENCH_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f")
PSQL = ["psql", "-X", "-q", "-h", "127.0.0.1", "-U", "stockflow", "-d", "stockflow"]
SERVICES = {"api": "API_BIND", "worker": "WORKER_HEALTH_BIND", "scheduler": "SCHEDULER_HEALTH_BIND", "backup": "BACKUP_HEALTH_BIND"}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Stores of services that a scenario starts without stores of its own
# (startup); removed at exit.
SCRATCH_STORES = tempfile.mkdtemp(prefix="stockflow-bench-stores-")
atexit.register(shutil.rmtree, SCRATCH_STORES, True)


def service_env(extra=None):
    env = {
        "PATH": os.environ.get("PATH", ""),
        "DATABASE_URL": DATABASE_URL,
        "AMQP_URL": AMQP_URL,
        "AMQP_NAMESPACE": "bench",
        "LOG_LEVEL": "warn",
        "LOG_FORMAT": "json",
        "MEDIA_ROOT": os.path.join(SCRATCH_STORES, "media"),
        "BACKUP_ROOT": os.path.join(SCRATCH_STORES, "backups"),
    }
    env.update(extra or {})
    return env


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def ready(port):
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def start_until_ready(service, timeout=30.0):
    """Spawns a service; returns (process, seconds from spawn to /readyz 200)."""
    port = free_port()
    env = service_env({SERVICES[service]: f"127.0.0.1:{port}"})
    started = time.perf_counter()
    proc = subprocess.Popen([os.path.join(BIN, f"stockflow-{service}")], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    while not ready(port):
        if proc.poll() is not None:
            raise RuntimeError(f"{service} exited: {proc.stderr.read().decode()}")
        if time.perf_counter() - started > timeout:
            proc.kill()
            raise RuntimeError(f"{service} not ready within {timeout}s")
        time.sleep(0.002)
    return proc, time.perf_counter() - started


def stop(proc):
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def psql_roundtrip():
    started = time.perf_counter()
    subprocess.run(PSQL + ["-c", "SELECT 1"], check=True, stdout=subprocess.DEVNULL, env={**os.environ, "PGPASSWORD": "stockflow"})
    return time.perf_counter() - started


def psql_idle_rss():
    """RSS of a psql session that is connected and waiting for input."""
    proc = subprocess.Popen(PSQL, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, env={**os.environ, "PGPASSWORD": "stockflow"})
    try:
        proc.stdin.write(b"SELECT 1;\n")
        proc.stdin.flush()
        time.sleep(1.0)
        return rss_kib(proc.pid)
    finally:
        proc.stdin.close()
        proc.wait(timeout=10)


def scenario_startup(runs):
    """Cold start to /readyz 200, and idle RSS, per service.

    Baselines: the wall time of `psql -c 'SELECT 1'` (a process that starts,
    connects and authenticates to the same PostgreSQL, and answers), and the
    RSS of an idle connected psql session. Each service also connects to
    RabbitMQ before it is ready, which psql does not: the ratio is an upper
    bound on our own overhead.
    """
    subprocess.run([os.path.join(BIN, "stockflow-api"), "migrate"], env=service_env(), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    psql_roundtrip()  # warm the server's caches as the services' runs will be
    baseline_start = statistics.median(psql_roundtrip() for _ in range(runs))
    baseline_rss = psql_idle_rss()
    rows = []
    for service in SERVICES:
        times, rss = [], []
        for _ in range(runs):
            proc, took = start_until_ready(service)
            time.sleep(2.0)  # idle: let start-up allocations settle
            rss.append(rss_kib(proc.pid))
            stop(proc)
            times.append(took)
        ours_start, ours_rss = statistics.median(times), statistics.median(rss)
        rows.append({
            "figure": f"{service} cold start to /readyz 200 (ms, median of {runs})",
            "ours": round(ours_start * 1000, 1),
            "baseline": round(baseline_start * 1000, 1),
            "baseline_tool": "psql -c 'SELECT 1' wall time",
            "ratio": round(ours_start / baseline_start, 2),
        })
        rows.append({
            "figure": f"{service} idle RSS (MiB, median of {runs})",
            "ours": round(ours_rss / 1024, 1),
            "baseline": round(baseline_rss / 1024, 1),
            "baseline_tool": "idle connected psql RSS",
            "ratio": round(ours_rss / baseline_rss, 2),
        })
    return rows


PUT_BYTES = 1 << 30
TIME = "/usr/bin/time"


def zeros_sha256(size):
    """sha256 of `size` zero bytes, hashed in 1 MiB blocks."""
    block = bytes(1 << 20)
    digest = hashlib.sha256()
    for _ in range(size // len(block)):
        digest.update(block)
    digest.update(bytes(size % len(block)))
    return digest.hexdigest()


def run_measured(argv, scratch):
    """Runs argv to completion; returns (wall seconds, peak RSS KiB, stdout).

    The peak RSS is ru_maxrss from wait4, taken by GNU time rather than by
    this script: Linux carries the parent's RSS at exec into the child's
    ru_maxrss, so os.wait4 here would report at least this Python process's
    own RSS (about 14 MiB) for any child. GNU time's floor is about 1 MiB.
    """
    rss_file = os.path.join(scratch, "maxrss")
    started = time.perf_counter()
    proc = subprocess.run([TIME, "-o", rss_file, "-f", "%M"] + argv, capture_output=True, text=True)
    took = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    with open(rss_file) as f:
        rss = int(f.read().split()[-1])
    return took, rss, proc.stdout


def scenario_storage_put(runs):
    """A 1 GiB streamed put to LocalFs, and its peak RSS.

    Ours: `put_file` (crates/storage/examples) streams 1 GiB read from
    /dev/zero into `LocalFs::put` (PutMode::CreateNew), which hashes it
    (sha256), writes it to a temp file, fsyncs it and links it into place.
    Baseline: `dd if=/dev/zero bs=1M count=1024 conv=fsync` to the same
    filesystem (a temp dir under var/bench/), which writes and fsyncs but does
    not hash. Figures are wall time from spawn to exit, as MiB/s, so here a
    higher ratio is better. Runs alternate between the two (which goes first
    swaps each round), after one untimed warm-up of each; before each run the
    previous file is removed and `sync` runs. Peak RSS is wait4's ru_maxrss,
    the largest of the runs. The sha256 our put reports is checked against
    that of 1 GiB of zeros. Target (issue 3): ratio >= 0.7, peak RSS under
    64 MiB.
    """
    if not os.access(TIME, os.X_OK):
        raise RuntimeError(f"{TIME} is missing: apt-get install time")
    put_file = os.path.join(BIN, "examples", "put_file")
    if not os.access(put_file, os.X_OK):
        raise RuntimeError(f"{put_file} is missing: cargo build --release --locked -p stockflow-storage --examples")
    expected_sha256 = zeros_sha256(PUT_BYTES)
    count = PUT_BYTES >> 20
    mib = PUT_BYTES / (1 << 20)
    os.makedirs(os.path.join(ROOT, "var", "bench"), exist_ok=True)
    scratch = tempfile.mkdtemp(prefix="storage-put-", dir=os.path.join(ROOT, "var", "bench"))
    store, dd_file = os.path.join(scratch, "store"), os.path.join(scratch, "dd.bin")
    puts = 0

    def dd():
        os.sync()
        took, rss, _ = run_measured(["dd", "if=/dev/zero", f"of={dd_file}", "bs=1M", f"count={count}", "conv=fsync"], scratch)
        if os.path.getsize(dd_file) != PUT_BYTES:
            raise RuntimeError(f"dd wrote {os.path.getsize(dd_file)} bytes, not {PUT_BYTES}")
        os.remove(dd_file)
        return took, rss

    def ours():
        nonlocal puts
        puts += 1
        key = f"bench/{puts}"
        os.sync()
        took, rss, out = run_measured([put_file, store, key, "/dev/zero", "--bytes", str(PUT_BYTES)], scratch)
        stored = json.loads(out)
        if stored["bytes"] != PUT_BYTES or stored["sha256"] != expected_sha256:
            raise RuntimeError(f"put_file stored {stored}, expected {PUT_BYTES} bytes with sha256 {expected_sha256}")
        os.remove(os.path.join(store, key))
        return took, rss

    try:
        dd(), ours()  # warm-up, untimed
        dd_runs, our_runs = [], []
        for round_ in range(runs):
            pair = [(dd, dd_runs), (ours, our_runs)]
            for measure, into in pair if round_ % 2 == 0 else reversed(pair):
                into.append(measure())
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    dd_rate = mib / statistics.median(took for took, _ in dd_runs)
    our_rate = mib / statistics.median(took for took, _ in our_runs)
    dd_rss, our_rss = max(rss for _, rss in dd_runs), max(rss for _, rss in our_runs)
    return [
        {
            "figure": f"1 GiB put to LocalFs, wall clock (MiB/s, median of {runs})",
            "ours": round(our_rate, 1),
            "baseline": round(dd_rate, 1),
            "baseline_tool": "dd if=/dev/zero bs=1M count=1024 conv=fsync",
            "ratio": round(our_rate / dd_rate, 2),
        },
        {
            "figure": f"1 GiB put peak RSS (MiB, max of {runs})",
            "ours": round(our_rss / 1024, 1),
            "baseline": round(dd_rss / 1024, 1),
            "baseline_tool": "peak RSS of that dd",
            "ratio": round(our_rss / dd_rss, 2),
        },
    ]


# ---------------------------------------------------------------------------
# The API under load: api-list and upload run the real release stockflow-api
# as a process, on a database of their own, against a standard tool's figure
# for the same work measured in the same run.

WRK = "wrk"
PGBENCH = "pgbench"
# Seconds of load per measurement (wrk -d, pgbench -T).
LOAD_SECONDS = int(os.environ.get("BENCH_LOAD_SECONDS", "15"))
WARMUP_SECONDS = 5
CONNECTIONS, THREADS = 32, 2
LIST_DB = os.environ.get("BENCH_LIST_DATABASE", "stockflow_bench_list")
UPLOAD_DB = os.environ.get("BENCH_UPLOAD_DATABASE", "stockflow_bench_upload")
SEED_ORGS = ("bench-a", "bench-b")
SEED_PRODUCTS_PER_ORG = 20
SEED_BATCHES_PER_ORG = 500_000
# Kept as the database's comment once seeding has finished: a database with
# this comment and these row counts is reused, anything else is re-seeded.
# Change the version when the seed changes.
SEED_MARKER = f"stockflow bench seed v1: {len(SEED_ORGS)} orgs x {SEED_PRODUCTS_PER_ORG} products x {SEED_BATCHES_PER_ORG} batches"

# What GET /v1/batches?limit=50 sends PostgreSQL for each request, as the
# api's log_statement=all log shows it (Diesel's SQL, parameters as pgbench
# variables): the token lookup of the auth extractor, api_tokens::find_holder,
# and the first page of batches::list (limit + 1 rows, to learn whether a
# next page exists). The pool pings (`SELECT 1`) only a connection whose
# last query is over a second old, which never happens under this load.
# Keep these in step with crates/db.
TOKEN_LOOKUP_SQL = """\
SELECT "api_tokens"."id", "api_tokens"."user_id", "api_tokens"."name", "api_tokens"."created_at", "api_tokens"."last_used_at", "api_tokens"."expires_at", "api_tokens"."revoked_at", "users"."id", "users"."org_id", "users"."email", "users"."role", "users"."created_at", "organizations"."id", "organizations"."slug", "organizations"."name", "organizations"."created_at" FROM ("api_tokens" INNER JOIN ("users" INNER JOIN "organizations" ON ("users"."org_id" = "organizations"."id")) ON ("api_tokens"."user_id" = "users"."id")) WHERE ((("api_tokens"."token_sha256" = :digest) AND ("api_tokens"."revoked_at" IS NULL)) AND (("api_tokens"."expires_at" IS NULL) OR ("api_tokens"."expires_at" > :now))) LIMIT :one;
"""
LIST_SQL = """\
SELECT "batches"."id", "batches"."org_id", "batches"."product_id", "batches"."code", "batches"."quantity", "batches"."produced_at", "batches"."status", "batches"."notes", "batches"."metadata", "batches"."created_at", "batches"."updated_at" FROM "batches" WHERE ("batches"."org_id" = :org) ORDER BY "batches"."produced_at" DESC, "batches"."id" DESC LIMIT :fetch;
"""


def db_url(name):
    """DATABASE_URL with another database name."""
    parts = urllib.parse.urlsplit(DATABASE_URL)
    return urllib.parse.urlunsplit(parts._replace(path="/" + name))


# The PgBouncer of `make services`: transaction mode, in front of DATABASE_URL's server.
PGBOUNCER_PORT = int(os.environ.get("BENCH_PGBOUNCER_PORT", "6433"))


def via_pgbouncer(url):
    """The same database and role, through PgBouncer."""
    parts = urllib.parse.urlsplit(url)
    host = parts.netloc.rsplit("@", 1)
    netloc = f"{host[0]}@127.0.0.1:{PGBOUNCER_PORT}" if len(host) == 2 else f"127.0.0.1:{PGBOUNCER_PORT}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


def sql(url, script):
    """Runs an SQL script with psql (statement by statement, stopping at the
    first error); returns its unaligned output."""
    proc = subprocess.run(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", url, "-f", "-"], input=script, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"psql failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout.strip()


def literal(value):
    return "'" + value.replace("'", "''") + "'"


def recreate_database(name):
    """Drops the database `name` if it exists and creates it empty, owned by
    DATABASE_URL's role, with the migrations applied."""
    if not all(c.isalnum() or c == "_" for c in name):
        raise RuntimeError(f"refusing database name {name!r}")
    admin = db_url("postgres")
    sql(admin, f"DROP DATABASE IF EXISTS {name} WITH (FORCE);")
    sql(admin, f"CREATE DATABASE {name};")
    migrate(db_url(name))


def migrate(url):
    proc = subprocess.run([os.path.join(BIN, "stockflow-api"), "migrate"], env=service_env({"DATABASE_URL": url}), capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"stockflow-api migrate failed ({proc.returncode}): {proc.stderr.strip()}")


def create_token(url, org, role, name):
    """`stockflow-api token create`: the organization is created if needed."""
    proc = subprocess.run(
        [os.path.join(BIN, "stockflow-api"), "token", "create", "--org", org, "--role", role, "--name", name],
        env=service_env({"DATABASE_URL": url}), capture_output=True, text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"stockflow-api token create failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout.strip()


class Service:
    """A release service (`binary`) serving on a free port (`bind_var`),
    MEDIA_ROOT and its log in `scratch`; returns once /readyz answers 200."""

    binary, bind_var = None, None

    def __init__(self, url, scratch, extra=None, timeout=30.0):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        media = os.path.join(scratch, "media")
        os.makedirs(media, exist_ok=True)
        env = service_env({"DATABASE_URL": url, self.bind_var: f"127.0.0.1:{self.port}", "STORAGE_BACKEND": "local", "MEDIA_ROOT": media, **(extra or {})})
        self.log_path = os.path.join(scratch, self.binary.removeprefix("stockflow-") + ".log")
        self.log = open(self.log_path, "wb")
        self.proc = subprocess.Popen([os.path.join(BIN, self.binary)], env=env, stdout=self.log, stderr=self.log)
        started = time.perf_counter()
        while not ready(self.port):
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.binary} exited: {self.tail()}")
            if time.perf_counter() - started > timeout:
                self.stop()
                raise RuntimeError(f"{self.binary} not ready within {timeout}s: {self.tail()}")
            time.sleep(0.01)

    def tail(self):
        self.log.flush()
        with open(self.log_path, "rb") as f:
            return f.read()[-2000:].decode(errors="replace")

    def peak_rss_kib(self):
        """VmHWM: the largest RSS the process has had since it started."""
        with open(f"/proc/{self.proc.pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        raise RuntimeError(f"no VmHWM for pid {self.proc.pid}")

    def stop(self):
        stop(self.proc)
        self.log.close()


class Api(Service):
    """A release stockflow-api serving on a free port, its log in `scratch`."""

    binary, bind_var = "stockflow-api", "API_BIND"

    def call(self, method, path, token, body=None):
        """Returns (status, parsed JSON body or None)."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.base + path, data=data, method=method, headers={"Authorization": f"Bearer {token}"})
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                raw = response.read()
                return response.status, json.loads(raw) if raw else None
        except urllib.error.HTTPError as error:
            raw = error.read()
            return error.code, json.loads(raw) if raw else None

    def expect(self, status, method, path, token, body=None):
        got, answer = self.call(method, path, token, body)
        if got != status:
            raise RuntimeError(f"{method} {path} answered {got}, not {status}: {answer}")
        return answer


class Worker(Service):
    """A release stockflow-worker, its /healthz, /readyz and /metrics on a
    free port, its log in `scratch`; ready once both consumers subscribed."""

    binary, bind_var = "stockflow-worker", "WORKER_HEALTH_BIND"

    def metric(self, sample):
        """The value of one sample of /metrics, such as
        `stockflow_jobs_succeeded_total{type="maintenance.ping"}`; 0 while
        the worker has not rendered it yet."""
        with urllib.request.urlopen(f"{self.base}/metrics", timeout=10) as response:
            text = response.read().decode()
        found = re.search(rf"^{re.escape(sample)} (\S+)$", text, re.M)
        return float(found.group(1)) if found else 0.0


def seed_products(url, scratch, name_suffixes, count):
    """Makes `count` products in each organization of `name_suffixes`
    through the API (P-000..., "Product <n><suffix>"), with a member token."""
    tokens = {org: create_token(url, org, "member", "bench-seed") for org in name_suffixes}
    api = Api(url, scratch)
    try:
        for org, token in tokens.items():
            for n in range(count):
                api.expect(201, "POST", "/v1/products", token, {
                    "sku": f"P-{n:03d}", "name": f"Product {n}{name_suffixes[org]}", "unit": ["kg", "l", "pcs"][n % 3],
                    "custom_fields": {"line": n % 4, "supplier": f"S{n % 7}"},
                })
    finally:
        api.stop()


def seed_list_database(scratch):
    """The database of api-list: SEED_ORGS each with SEED_PRODUCTS_PER_ORG
    products (made through the API) and SEED_BATCHES_PER_ORG batches (bulk
    inserted with SQL). Reused when its comment says it was seeded so and the
    counts agree; returns whether it was reused."""
    url = db_url(LIST_DB)
    admin = db_url("postgres")
    if sql(admin, f"SELECT 1 FROM pg_database WHERE datname = {literal(LIST_DB)};") == "1":
        migrate(url)
        comment = sql(url, "SELECT coalesce(shobj_description(oid, 'pg_database'), '') FROM pg_database WHERE datname = current_database();")
        counts = sql(url, f"""SELECT count(DISTINCT o.id), count(DISTINCT p.id), (SELECT count(*) FROM batches b JOIN organizations bo ON bo.id = b.org_id WHERE bo.slug IN ({', '.join(map(literal, SEED_ORGS))}))
            FROM organizations o JOIN products p ON p.org_id = o.id WHERE o.slug IN ({', '.join(map(literal, SEED_ORGS))});""")
        expected = f"{len(SEED_ORGS)}|{len(SEED_ORGS) * SEED_PRODUCTS_PER_ORG}|{len(SEED_ORGS) * SEED_BATCHES_PER_ORG}"
        if comment == SEED_MARKER and counts == expected:
            return True
        print(f"  {LIST_DB} is not the expected seed ({comment!r}, counts {counts}): seeding it again", flush=True)
    else:
        print(f"  seeding {LIST_DB}: {len(SEED_ORGS) * SEED_BATCHES_PER_ORG:,} batches (once; later runs reuse it)", flush=True)
    started = time.perf_counter()
    recreate_database(LIST_DB)
    seed_products(url, scratch, {org: f" of {org}" for org in SEED_ORGS}, SEED_PRODUCTS_PER_ORG)
    # Distinct codes per org; produced_at spread over three years, mostly
    # increasing with the code but jittered by up to a day, so the list order
    # is not the insertion order; statuses, notes and metadata mixed as a
    # plant's would be. setseed keeps the data the same from seed to seed.
    sql(url, f"""
SET maintenance_work_mem = '256MB';
SELECT setseed(0.42);
INSERT INTO batches (org_id, product_id, code, quantity, produced_at, status, notes, metadata, created_at, updated_at)
SELECT o.id,
       p.ids[1 + (g % array_length(p.ids, 1))],
       format('LOT-%s-%s', upper(substr(o.slug, 7)), lpad(g::text, 7, '0')),
       round((random() * 5000)::numeric, 3),
       t.produced_at,
       (ARRAY['completed', 'completed', 'completed', 'completed', 'in_progress', 'planned', 'cancelled'])[1 + (g % 7)],
       CASE WHEN g % 5 = 0 THEN format('Checked by QA, moisture %s%%. Pallet %s.', 8 + g % 9, g % 40) ELSE '' END,
       jsonb_build_object('line', 1 + g % 4, 'shift', (ARRAY['early', 'late', 'night'])[1 + g % 3], 'operator', format('op-%s', g % 57)),
       t.produced_at + interval '2 hours',
       t.produced_at + interval '2 hours'
FROM organizations o
CROSS JOIN LATERAL (SELECT array_agg(id ORDER BY sku) AS ids FROM products WHERE org_id = o.id) p
CROSS JOIN generate_series(1, {SEED_BATCHES_PER_ORG}) g
CROSS JOIN LATERAL (SELECT timestamptz '2023-01-01 00:00:00+00' + (g * interval '3 years') / {SEED_BATCHES_PER_ORG}
                           + (random() - 0.5) * interval '1 day' AS produced_at) t
WHERE o.slug IN ({', '.join(map(literal, SEED_ORGS))});
VACUUM (ANALYZE) batches;
ANALYZE;
COMMENT ON DATABASE {LIST_DB} IS {literal(SEED_MARKER)};
""")
    print(f"  seeded {LIST_DB} in {time.perf_counter() - started:.0f} s", flush=True)
    return False


def p99(values):
    """The 99th percentile by the nearest-rank method."""
    ordered = sorted(values)
    return ordered[max(0, -(-99 * len(ordered) // 100) - 1)]


def run_wrk(url, token, seconds, script=None):
    """Returns (requests/s, p99 latency in ms) of a wrk run; `script` is a
    wrk Lua script (a POST body)."""
    # wrk leaves a request slower than --timeout (default 2 s) out of its
    # latencies and counts it as a socket error. The api does answer a few
    # requests after more than 2 s under this load; 10 s keeps them in the
    # p99 instead of dropping them.
    argv = [WRK, f"-t{THREADS}", f"-c{CONNECTIONS}", f"-d{seconds}s", "--timeout", "10s", "--latency", "-H", f"Authorization: Bearer {token}"]
    argv += ["-s", script] if script else []
    proc = subprocess.run(argv + [url], capture_output=True, text=True)
    out = proc.stdout
    if proc.returncode != 0 or "Non-2xx" in out or "Socket errors" in out:
        raise RuntimeError(f"wrk failed or saw errors ({proc.returncode}):\n{out}{proc.stderr}")
    rps = float(re.search(r"^Requests/sec:\s+([\d.]+)", out, re.M).group(1))
    value, unit = re.search(r"^\s+99%\s+([\d.]+)(us|ms|s)\s*$", out, re.M).groups()
    return rps, float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def run_pgbench(url, script, variables, seconds, scratch, mode="prepared"):
    """Returns (transactions/s, p99 latency in ms, peak RSS KiB) of a pgbench
    run of `script`. The p99 comes from pgbench's per-transaction log (-l),
    whose third field is each transaction's latency in microseconds. `mode`
    is pgbench's -M: `extended` (unnamed statements) through a transaction
    pooler, where named ones would not survive."""
    prefix = os.path.join(scratch, "pgbench-log")
    for name in os.listdir(scratch):
        if name.startswith("pgbench-log."):
            os.remove(os.path.join(scratch, name))
    argv = [PGBENCH, "-n", "-M", mode, "-c", str(CONNECTIONS), "-j", str(THREADS), "-T", str(seconds), "-f", script, "-l", f"--log-prefix={prefix}"]
    argv += [f"-D{name}={value}" for name, value in variables.items()]
    _, rss, out = run_measured(argv + [url], scratch)
    tps = float(re.search(r"^tps = ([\d.]+) \(without initial connection time\)", out, re.M).group(1))
    failed = re.search(r"^number of failed transactions: (\d+)", out, re.M)
    if failed and int(failed.group(1)) != 0:
        raise RuntimeError(f"pgbench saw failed transactions:\n{out}")
    latencies = []
    for name in os.listdir(scratch):
        if name.startswith("pgbench-log."):
            with open(os.path.join(scratch, name)) as log:
                latencies += [int(line.split()[2]) for line in log]
    return tps, p99(latencies) / 1000.0, rss


def tool(name, hint):
    if shutil.which(name) is None:
        raise RuntimeError(f"{name} is missing: {hint}")


def scenario_api_list(runs):
    """`GET /v1/batches?limit=50` under load, against pgbench running the same SQL.

    The database (its own, stockflow_bench_list) holds 1,000,000 batches,
    500,000 in each of two organizations, with 20 products each: the products
    are made through the API, the batches bulk-inserted with SQL (distinct
    codes, produced_at spread over three years), then VACUUM ANALYZE. Seeding
    takes under a minute here; the database is kept, marked by its comment,
    and reused while the comment and the row counts match. Ours: the release
    stockflow-api (defaults: WEB_WORKERS = CPUs, DATABASE_POOL_SIZE 2 x CPUs),
    loaded by `wrk -t2 -c32 --timeout 10s --latency` with a viewer token of
    one organization; each request authenticates the token and reads the first
    page, 50 batches and a next_cursor (about 17 KiB of JSON). Baseline:
    `pgbench -M prepared -c 32 -j 2` on the same database running, per
    transaction, the two statements the endpoint sends per request, as Diesel
    writes them: the token lookup and the first-page query (`WHERE org_id = $1
    ORDER BY produced_at DESC, id DESC LIMIT 51`). A second baseline runs
    the page query alone.
    Before the runs, the api's first item is checked against that query's
    first row; wrk must see no error and no status other than 200, pgbench no
    failed transaction. One untimed 5 s warm-up of each, then runs of 15 s
    (BENCH_LOAD_SECONDS) alternate, which goes first swapping each round;
    figures are medians. p99s: wrk's latency distribution, and the 99th
    percentile of pgbench's per-transaction log (-l); both are closed-loop, as
    32 clients each wait for their answer before sending again. Load, clients,
    API and PostgreSQL share the machine's CPUs. API peak RSS is the api's
    VmHWM after all runs (a fresh process for this scenario); beside it, the
    peak RSS of pgbench, the client holding 32 connections, for scale. Target
    (issue 4): req/s ratio >= 0.6, p99 under 25 ms.

    Through PgBouncer (transaction mode, `make services`'s on :6433): a second
    api, DATABASE_STATEMENT_CACHE=false, loaded the same way in the same
    rounds, against `pgbench -M extended` through the same PgBouncer
    (unnamed statements, as ours: -M prepared fails in transaction mode), and
    against the direct api (issue 16's figure, the pooler's cost to us;
    target >= 0.8).
    """
    tool(WRK, "apt-get install wrk")
    tool(PGBENCH, "apt-get install postgresql-client")
    if not os.access(TIME, os.X_OK):
        raise RuntimeError(f"{TIME} is missing: apt-get install time")
    os.makedirs(os.path.join(ROOT, "var", "bench"), exist_ok=True)
    scratch = tempfile.mkdtemp(prefix="api-list-", dir=os.path.join(ROOT, "var", "bench"))
    url = db_url(LIST_DB)
    try:
        seed_list_database(scratch)
        org = SEED_ORGS[0]
        sql(url, "DELETE FROM api_tokens WHERE name = 'bench-api-list';")
        token = create_token(url, org, "viewer", "bench-api-list")
        org_id = sql(url, f"SELECT id FROM organizations WHERE slug = {literal(org)};")
        variables = {
            "digest": "\\x" + hashlib.sha256(token.encode()).hexdigest(),
            "now": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "one": 1,
            "org": org_id,
            "fetch": 51,
        }
        both, alone = os.path.join(scratch, "endpoint.sql"), os.path.join(scratch, "list.sql")
        with open(both, "w") as f:
            f.write(TOKEN_LOOKUP_SQL + LIST_SQL)
        with open(alone, "w") as f:
            f.write(LIST_SQL)
        pooled_url = via_pgbouncer(url)
        pooled_scratch = os.path.join(scratch, "pgbouncer")
        api = Api(url, scratch)
        pooled = None
        try:
            pooled = Api(pooled_url, pooled_scratch, extra={"DATABASE_DIRECT_URL": url, "DATABASE_STATEMENT_CACHE": "false"})
            target = f"{api.base}/v1/batches?limit=50"
            pooled_target = f"{pooled.base}/v1/batches?limit=50"
            page = api.expect(200, "GET", "/v1/batches?limit=50", token)
            first = sql(url, f"""SELECT id FROM batches WHERE org_id = {literal(org_id)} ORDER BY produced_at DESC, id DESC LIMIT 1;""")
            if len(page["items"]) != 50 or not page.get("next_cursor") or page["items"][0]["id"] != first:
                raise RuntimeError(f"unexpected first page: {len(page['items'])} items, first {page['items'][0]['id']}, expected {first}")
            if pooled.expect(200, "GET", "/v1/batches?limit=50", token) != page:
                raise RuntimeError("the api through PgBouncer answered another first page than the direct one")
            measures = {
                "ours": lambda seconds: run_wrk(target, token, seconds),
                "endpoint": lambda seconds: run_pgbench(url, both, variables, seconds, scratch),
                "list": lambda seconds: run_pgbench(url, alone, variables, seconds, scratch),
                "pooled": lambda seconds: run_wrk(pooled_target, token, seconds),
                "pooled_endpoint": lambda seconds: run_pgbench(pooled_url, both, variables, seconds, scratch, mode="extended"),
            }
            for measure in measures.values():
                measure(WARMUP_SECONDS)
            results = {name: [] for name in measures}
            for round_ in range(runs):
                order = list(measures) if round_ % 2 == 0 else list(reversed(measures))
                for name in order:
                    results[name].append(measures[name](LOAD_SECONDS))
                    print(f"  round {round_ + 1}/{runs} {name}: {results[name][-1][0]:.0f}/s, p99 {results[name][-1][1]:.2f} ms", flush=True)
            api_rss = api.peak_rss_kib()
        finally:
            api.stop()
            if pooled is not None:
                pooled.stop()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    median = {name: (statistics.median(r[0] for r in rs), statistics.median(r[1] for r in rs)) for name, rs in results.items()}
    pgbench_rss = max(r[2] for name in ("endpoint", "list", "pooled_endpoint") for r in results[name])
    endpoint_tool = f"pgbench -M prepared -c {CONNECTIONS} -j {THREADS}: token lookup + first-page query"
    return [
        {
            "figure": f"GET /v1/batches?limit=50, {CONNECTIONS} connections (req/s, median of {runs})",
            "ours": round(median["ours"][0], 1),
            "baseline": round(median["endpoint"][0], 1),
            "baseline_tool": endpoint_tool + " (tps)",
            "ratio": round(median["ours"][0] / median["endpoint"][0], 2),
        },
        {
            "figure": f"GET /v1/batches?limit=50 p99 latency (ms, median of {runs})",
            "ours": round(median["ours"][1], 2),
            "baseline": round(median["endpoint"][1], 2),
            "baseline_tool": endpoint_tool + " (p99 from -l)",
            "ratio": round(median["ours"][1] / median["endpoint"][1], 2),
        },
        {
            "figure": f"GET /v1/batches?limit=50 against the page query alone (req/s, median of {runs})",
            "ours": round(median["ours"][0], 1),
            "baseline": round(median["list"][0], 1),
            "baseline_tool": f"pgbench -M prepared -c {CONNECTIONS} -j {THREADS}: first-page query only (tps)",
            "ratio": round(median["ours"][0] / median["list"][0], 2),
        },
        {
            "figure": f"GET /v1/batches?limit=50 through PgBouncer, transaction mode (req/s, median of {runs})",
            "ours": round(median["pooled"][0], 1),
            "baseline": round(median["pooled_endpoint"][0], 1),
            "baseline_tool": f"pgbench -M extended -c {CONNECTIONS} -j {THREADS} through the same PgBouncer: token lookup + first-page query (tps)",
            "ratio": round(median["pooled"][0] / median["pooled_endpoint"][0], 2),
        },
        {
            "figure": f"GET /v1/batches?limit=50 through PgBouncer p99 latency (ms, median of {runs})",
            "ours": round(median["pooled"][1], 2),
            "baseline": round(median["pooled_endpoint"][1], 2),
            "baseline_tool": "that pgbench through PgBouncer (p99 from -l)",
            "ratio": round(median["pooled"][1] / median["pooled_endpoint"][1], 2),
        },
        {
            "figure": f"GET /v1/batches?limit=50, the api through PgBouncer against the api direct (req/s, median of {runs})",
            "ours": round(median["pooled"][0], 1),
            "baseline": round(median["ours"][0], 1),
            "baseline_tool": "the same api build straight to PostgreSQL, same rounds (the pooler's cost; not a tool baseline)",
            "ratio": round(median["pooled"][0] / median["ours"][0], 2),
        },
        {
            "figure": "api peak RSS over all runs (MiB, VmHWM)",
            "ours": round(api_rss / 1024, 1),
            "baseline": round(pgbench_rss / 1024, 1),
            "baseline_tool": f"peak RSS of pgbench (client, {CONNECTIONS} connections)",
            "ratio": round(api_rss / pgbench_rss, 2),
        },
    ]


UPLOAD_BYTES = 1 << 30
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def upload_source():
    """var/bench/upload-<size>MiB.png: the PNG signature then random bytes,
    made once and kept; returns (path, sha256)."""
    path = os.path.join(ROOT, "var", "bench", f"upload-{UPLOAD_BYTES >> 20}MiB.png")
    digest_path = path + ".sha256"
    if os.path.exists(path) and os.path.getsize(path) == UPLOAD_BYTES and os.path.exists(digest_path):
        with open(path, "rb") as f:
            if f.read(len(PNG_MAGIC)) == PNG_MAGIC:
                with open(digest_path) as d:
                    return path, d.read().strip()
    print(f"  writing {os.path.relpath(path, ROOT)} (once)", flush=True)
    digest = hashlib.sha256()
    with open(path + ".tmp", "wb") as f:
        block = PNG_MAGIC + os.urandom((1 << 20) - len(PNG_MAGIC))
        for _ in range(UPLOAD_BYTES >> 20):
            f.write(block)
            digest.update(block)
            block = os.urandom(1 << 20)
    os.replace(path + ".tmp", path)
    with open(digest_path, "w") as d:
        d.write(digest.hexdigest() + "\n")
    return path, digest.hexdigest()


def files_under(root):
    return [os.path.join(d, name) for d, _, names in os.walk(root) for name in names]


def scenario_upload(runs):
    """A 1 GiB attachment uploaded with curl, against dd writing the same file.

    Ours: `curl -F file=@...` posts a 1 GiB file (the PNG signature, then
    random bytes; var/bench/upload-1GiB.png, made once) as multipart to
    `POST /v1/batches/{id}/attachments` of the release stockflow-api on
    127.0.0.1 (MAX_UPLOAD_BYTES 2 GiB, STORAGE_BACKEND=local with MEDIA_ROOT
    in a temp dir under var/bench/, a fresh database stockflow_bench_upload).
    The api sniffs the type, streams the body into LocalFs (sha256, write,
    fsync, link) and records the attachment before it answers. Each upload
    must answer 201 with the file's size and sha256, leave one file of that
    size under MEDIA_ROOT, and is then deleted (204, nothing left). Baseline:
    `dd if=<same file> of=<same filesystem> bs=1M conv=fsync`, a copy with
    no HTTP, parsing or hashing. The source file is in the page cache for
    both. Figures are wall time from spawn to exit as MiB/s, so a higher
    ratio is better. One untimed warm-up of each, then runs alternate (which
    goes first swaps each round), `sync` before each. API peak RSS is the
    api's VmHWM after all runs (a fresh process for this scenario); dd's is
    wait4's ru_maxrss. Target (issue 4): ratio >= 0.6, API peak RSS under
    64 MiB.
    """
    tool("curl", "apt-get install curl")
    if not os.access(TIME, os.X_OK):
        raise RuntimeError(f"{TIME} is missing: apt-get install time")
    os.makedirs(os.path.join(ROOT, "var", "bench"), exist_ok=True)
    source, source_sha256 = upload_source()
    scratch = tempfile.mkdtemp(prefix="upload-", dir=os.path.join(ROOT, "var", "bench"))
    media, dd_file = os.path.join(scratch, "media"), os.path.join(scratch, "dd.bin")
    mib = UPLOAD_BYTES / (1 << 20)
    url = db_url(UPLOAD_DB)
    recreate_database(UPLOAD_DB)
    try:
        token = create_token(url, "bench-upload", "member", "bench-upload")
        api = Api(url, scratch, {"MAX_UPLOAD_BYTES": str(2 * UPLOAD_BYTES)})
        try:
            product = api.expect(201, "POST", "/v1/products", token, {"sku": "UP-1", "name": "Upload target", "unit": "pcs"})
            batch = api.expect(201, "POST", "/v1/batches", token, {
                "product_id": product["id"], "code": "UP-BATCH-1", "quantity": "1", "produced_at": "2026-01-01T00:00:00Z",
            })
            endpoint = f"{api.base}/v1/batches/{batch['id']}/attachments"
            answer = os.path.join(scratch, "answer.json")

            def ours():
                os.sync()
                argv = ["curl", "-sS", "-o", answer, "-w", "%{http_code}", "-H", f"Authorization: Bearer {token}",
                        "-F", f"file=@{source};filename=bench.png", endpoint]
                started = time.perf_counter()
                proc = subprocess.run(argv, capture_output=True, text=True)
                took = time.perf_counter() - started
                with open(answer) as f:
                    body = f.read()
                if proc.returncode != 0 or proc.stdout != "201":
                    raise RuntimeError(f"upload answered {proc.stdout} ({proc.returncode}): {body}{proc.stderr}")
                attachment = json.loads(body)
                stored = files_under(media)
                if attachment["size_bytes"] != UPLOAD_BYTES or attachment["sha256"] != source_sha256 \
                        or [os.path.getsize(path) for path in stored] != [UPLOAD_BYTES]:
                    raise RuntimeError(f"upload stored {attachment}, files {stored}; expected {UPLOAD_BYTES} bytes with sha256 {source_sha256}")
                api.expect(204, "DELETE", f"/v1/attachments/{attachment['id']}", token)
                if files_under(media):
                    raise RuntimeError(f"files left after the delete: {files_under(media)}")
                return took, None

            def dd():
                os.sync()
                took, rss, _ = run_measured(["dd", f"if={source}", f"of={dd_file}", "bs=1M", "conv=fsync"], scratch)
                if os.path.getsize(dd_file) != UPLOAD_BYTES:
                    raise RuntimeError(f"dd wrote {os.path.getsize(dd_file)} bytes, not {UPLOAD_BYTES}")
                os.remove(dd_file)
                return took, rss

            dd(), ours()  # warm-up, untimed
            dd_runs, our_runs = [], []
            for round_ in range(runs):
                pair = [("dd", dd, dd_runs), ("ours", ours, our_runs)]
                for name, measure, into in pair if round_ % 2 == 0 else reversed(pair):
                    into.append(measure())
                    print(f"  round {round_ + 1}/{runs} {name}: {mib / into[-1][0]:.0f} MiB/s", flush=True)
            api_rss = api.peak_rss_kib()
        finally:
            api.stop()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
        sql(db_url("postgres"), f"DROP DATABASE IF EXISTS {UPLOAD_DB} WITH (FORCE);")
    dd_rate = mib / statistics.median(took for took, _ in dd_runs)
    our_rate = mib / statistics.median(took for took, _ in our_runs)
    dd_rss = max(rss for _, rss in dd_runs)
    return [
        {
            "figure": f"1 GiB multipart upload over HTTP, wall clock (MiB/s, median of {runs})",
            "ours": round(our_rate, 1),
            "baseline": round(dd_rate, 1),
            "baseline_tool": "dd if=<same file> bs=1M conv=fsync",
            "ratio": round(our_rate / dd_rate, 2),
        },
        {
            "figure": "api peak RSS over all uploads (MiB, VmHWM)",
            "ours": round(api_rss / 1024, 1),
            "baseline": round(dd_rss / 1024, 1),
            "baseline_tool": f"peak RSS of that dd (max of {runs})",
            "ratio": round(api_rss / dd_rss, 2),
        },
    ]


# ---------------------------------------------------------------------------
# Jobs through the broker: export and jobs run the release stockflow-api and
# stockflow-worker as processes, on a database and an AMQP namespace of their
# own, against a standard tool doing the same work in the same run.

EXPORT_DB = os.environ.get("BENCH_EXPORT_DATABASE", "stockflow_bench_export")
EXPORT_ORG = "bench-export"
EXPORT_PRODUCTS = 20
EXPORT_BATCHES = 1_000_000
# As SEED_MARKER, for the export database.
EXPORT_MARKER = f"stockflow bench seed v1: 1 org x {EXPORT_PRODUCTS} products x {EXPORT_BATCHES} batches"
# Longest wait for one export to succeed.
EXPORT_TIMEOUT = 600.0
JOBS_DB = os.environ.get("BENCH_JOBS_DATABASE", "stockflow_bench_jobs")
JOBS = 20_000
JOBS_TIMEOUT = 300.0
# The worker's own default, set explicitly so the baseline gets the same prefetch.
WORKER_CONCURRENCY = int(os.environ.get("BENCH_WORKER_CONCURRENCY", "4"))
PINGS_SUCCEEDED = 'stockflow_jobs_succeeded_total{type="maintenance.ping"}'


def delete_namespace(namespace):
    """Deletes the queues of an AMQP namespace a scenario made, with
    rabbitmqctl when it is installed and the broker is this machine's; its
    exchanges stay (rabbitmqctl cannot delete them; they hold nothing)."""
    host = urllib.parse.urlsplit(AMQP_URL).hostname
    if shutil.which("rabbitmqctl") is None or host not in ("127.0.0.1", "localhost"):
        print(f"  queues {namespace}.* left on the broker: no local rabbitmqctl to delete them", flush=True)
        return
    vhost = urllib.parse.unquote(urllib.parse.urlsplit(AMQP_URL).path[1:] or "/")
    try:
        listed = subprocess.run(["rabbitmqctl", "-q", "-p", vhost, "list_queues", "name", "--no-table-headers"],
                                capture_output=True, text=True, timeout=120)
        queues = [name for name in listed.stdout.split() if name.startswith(namespace + ".")]
        # One rabbitmqctl per queue, at once: each takes about a second to start.
        deletes = [subprocess.Popen(["rabbitmqctl", "-q", "-p", vhost, "delete_queue", name], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                   for name in queues]
        failed = listed.returncode != 0 or [proc for proc in deletes if proc.wait(timeout=120) != 0]
    except (OSError, subprocess.SubprocessError) as error:
        failed = error
    if failed:
        print(f"  could not delete every queue {namespace}.* with rabbitmqctl", flush=True)


def seed_export_database(scratch):
    """The database of export: one organization, EXPORT_ORG, with
    EXPORT_PRODUCTS products (made through the API) and EXPORT_BATCHES
    batches (bulk inserted with SQL). Reused like api-list's; returns whether
    it was reused."""
    url = db_url(EXPORT_DB)
    admin = db_url("postgres")
    if sql(admin, f"SELECT 1 FROM pg_database WHERE datname = {literal(EXPORT_DB)};") == "1":
        migrate(url)
        comment = sql(url, "SELECT coalesce(shobj_description(oid, 'pg_database'), '') FROM pg_database WHERE datname = current_database();")
        counts = sql(url, f"""SELECT count(DISTINCT o.id), count(DISTINCT p.id), (SELECT count(*) FROM batches b JOIN organizations bo ON bo.id = b.org_id WHERE bo.slug = {literal(EXPORT_ORG)})
            FROM organizations o JOIN products p ON p.org_id = o.id WHERE o.slug = {literal(EXPORT_ORG)};""")
        if comment == EXPORT_MARKER and counts == f"1|{EXPORT_PRODUCTS}|{EXPORT_BATCHES}":
            return True
        print(f"  {EXPORT_DB} is not the expected seed ({comment!r}, counts {counts}): seeding it again", flush=True)
    else:
        print(f"  seeding {EXPORT_DB}: {EXPORT_BATCHES:,} batches (once; later runs reuse it)", flush=True)
    started = time.perf_counter()
    recreate_database(EXPORT_DB)
    seed_products(url, scratch, {EXPORT_ORG: ""}, EXPORT_PRODUCTS)
    # As api-list's seed, and notes that CSV must quote: commas, double
    # quotes, and now and then a line break inside the field.
    sql(url, f"""
SET maintenance_work_mem = '256MB';
SELECT setseed(0.42);
INSERT INTO batches (org_id, product_id, code, quantity, produced_at, status, notes, metadata, created_at, updated_at)
SELECT o.id,
       p.ids[1 + (g % array_length(p.ids, 1))],
       format('LOT-EXP-%s', lpad(g::text, 7, '0')),
       round((random() * 5000)::numeric, 3),
       t.produced_at,
       (ARRAY['completed', 'completed', 'completed', 'completed', 'in_progress', 'planned', 'cancelled'])[1 + (g % 7)],
       CASE WHEN g % 97 = 0 THEN format(E'Re-weighed: "%s kg", not %s.\\nSee the line log.', 10 + g % 90, 9 + g % 90)
            WHEN g % 11 = 0 THEN format('Supplier says "dry", lot %s', g % 300)
            WHEN g % 5 = 0 THEN format('Checked by QA, moisture %s%%. Pallet %s.', 8 + g % 9, g % 40)
            ELSE '' END,
       jsonb_build_object('line', 1 + g % 4, 'shift', (ARRAY['early', 'late', 'night'])[1 + g % 3], 'operator', format('op-%s', g % 57)),
       t.produced_at + interval '2 hours',
       t.produced_at + interval '2 hours'
FROM organizations o
CROSS JOIN LATERAL (SELECT array_agg(id ORDER BY sku) AS ids FROM products WHERE org_id = o.id) p
CROSS JOIN generate_series(1, {EXPORT_BATCHES}) g
CROSS JOIN LATERAL (SELECT timestamptz '2023-01-01 00:00:00+00' + (g * interval '3 years') / {EXPORT_BATCHES}
                           + (random() - 0.5) * interval '1 day' AS produced_at) t
WHERE o.slug = {literal(EXPORT_ORG)};
VACUUM (ANALYZE) batches;
ANALYZE;
COMMENT ON DATABASE {EXPORT_DB} IS {literal(EXPORT_MARKER)};
""")
    print(f"  seeded {EXPORT_DB} in {time.perf_counter() - started:.0f} s", flush=True)
    return False


def file_sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


# The baseline of export, written by hand as one would to get the export's
# columns: a plain join, in the export's order. Not the statement our code
# builds (`stockflow-worker export-query` prints that).
EXPORT_BASELINE_SELECT = """SELECT b.id, b.code, b.product_id, p.sku AS product_sku, b.quantity::text AS quantity, p.unit,
       b.status, b.produced_at, b.notes, b.metadata, b.created_at, b.updated_at
FROM batches b JOIN products p ON (p.org_id, p.id) = (b.org_id, b.product_id)
WHERE b.org_id = {org}
ORDER BY b.produced_at, b.id"""
# JSON lines with \copy: row_to_json per row, in CSV mode with a quote and a
# delimiter that JSON text never holds, so nothing is quoted or escaped.
EXPORT_BASELINE = {
    "csv": ("{select}", "FORMAT csv, HEADER"),
    "jsonl": ("SELECT row_to_json(r)::text FROM ({select}) r", "FORMAT csv, QUOTE E'\\x01', DELIMITER E'\\x02'"),
}


def scenario_export(runs):
    """A 1,000,000-row export of batches, CSV and JSON lines, through API, broker and worker, against `psql \\copy` of a plain join written by hand.

    The database (its own, stockflow_bench_export) holds one organization
    with 20 products (made through the API) and 1,000,000 batches (bulk
    inserted with SQL, as api-list's, some notes holding commas, double quotes
    or a line break, so CSV has to quote them); it is kept and reused as
    api-list's. Ours: `POST /v1/exports` `{"kind":"batches","format":...}`
    to the release stockflow-api, whose outbox relay publishes the job to a
    namespace of this run (`bench_export_<pid>`); the release stockflow-worker
    (WORKER_CONCURRENCY default) builds the statement for the filters given
    (none here: the organization only), runs `COPY (<statement>) TO STDOUT`
    and streams it into LocalFs (MEDIA_ROOT in a temp dir under var/bench/:
    sha256, write, fsync, link), then records the export; the figure is the
    wall time from the POST until `GET /v1/exports/{id}` (polled every 20 ms)
    says `succeeded`. Baseline: `psql -f` setting TimeZone UTC and DateStyle
    ISO, YMD, then `\\copy (<query>) TO '<file>' WITH (...)` where the query
    is the plain join one would write by hand for the same columns, `SELECT
    b.id, ..., p.sku AS product_sku, ... FROM batches b JOIN products p ON
    (p.org_id, p.id) = (b.org_id, b.product_id) WHERE b.org_id = '<org>'
    ORDER BY b.produced_at, b.id` (written in bench/run.py, not taken from
    our code), wrapped in `row_to_json` for JSON lines; to the same
    filesystem, without hashing or fsync; its wall time from spawn to exit.
    The seeded text has no cell a spreadsheet would run, so our CSV, which
    neutralises such cells, must equal the baseline's byte for byte: every
    run compares the sha256 of both files and stops if they differ. Each
    export must also report row_count 1,000,000 and a size_bytes equal to its
    file's; files are deleted after each run. Per format, one untimed warm-up
    of each, then runs alternate, which goes first swapping each round;
    figures are medians. Worker peak RSS is its VmHWM after all runs (a fresh
    process for this scenario); beside it, psql's wait4 ru_maxrss, the
    largest of the runs. Target (issue 12): time ratio <= 1.3 for both
    formats, worker peak RSS under 64 MiB.
    """
    tool("psql", "apt-get install postgresql-client")
    if not os.access(TIME, os.X_OK):
        raise RuntimeError(f"{TIME} is missing: apt-get install time")
    os.makedirs(os.path.join(ROOT, "var", "bench"), exist_ok=True)
    scratch = tempfile.mkdtemp(prefix="export-", dir=os.path.join(ROOT, "var", "bench"))
    url = db_url(EXPORT_DB)
    namespace = f"bench_export_{os.getpid()}"
    formats = list(EXPORT_BASELINE)
    try:
        seed_export_database(scratch)
        sql(url, "DELETE FROM exports; DELETE FROM outbox; DELETE FROM api_tokens WHERE name = 'bench-export';")
        token = create_token(url, EXPORT_ORG, "member", "bench-export")
        org_id = sql(url, f"SELECT id FROM organizations WHERE slug = {literal(EXPORT_ORG)};")
        for format_ in formats:
            proc = subprocess.run([os.path.join(BIN, "stockflow-worker"), "export-query", "--org", org_id, "--kind", "batches", "--format", format_],
                                  env=service_env({"DATABASE_URL": url}), capture_output=True, text=True)
            if proc.returncode != 0 or "COPY (" not in proc.stdout:
                raise RuntimeError(f"stockflow-worker export-query failed ({proc.returncode}): {proc.stderr.strip()}")
            print(f"  ours ({format_}): {proc.stdout.strip().splitlines()[-1][:400]}", flush=True)
        psql_file = os.path.join(scratch, "psql.out")
        scripts = {}
        for format_, (wrapper, options) in EXPORT_BASELINE.items():
            query = wrapper.format(select=EXPORT_BASELINE_SELECT.format(org=literal(org_id)))
            scripts[format_] = os.path.join(scratch, f"copy-{format_}.sql")
            with open(scripts[format_], "w") as f:
                f.write("SET TimeZone = 'UTC';\nSET DateStyle = 'ISO, YMD';\n")
                f.write(f"\\copy ({' '.join(query.split())}) TO {literal(psql_file)} WITH ({options})\n")
        exports_dir = os.path.join(scratch, "media", org_id, "exports")
        services = {"AMQP_NAMESPACE": namespace}
        api = Api(url, scratch, services)
        try:
            worker = Worker(url, scratch, services)
            try:
                def psql(format_):
                    took, rss, _ = run_measured(["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-f", scripts[format_]], scratch)
                    size, digest = os.path.getsize(psql_file), file_sha256(psql_file)
                    os.remove(psql_file)
                    return took, rss, size, digest

                def ours(format_):
                    started = time.perf_counter()
                    export = api.expect(202, "POST", "/v1/exports", token, {"kind": "batches", "format": format_})
                    while export["status"] != "succeeded":
                        if export["status"] == "failed":
                            raise RuntimeError(f"export failed: {export['error']}\n{worker.tail()}")
                        if time.perf_counter() - started > EXPORT_TIMEOUT:
                            raise RuntimeError(f"export not done within {EXPORT_TIMEOUT}s: {export}\n{worker.tail()}")
                        time.sleep(0.02)
                        export = api.expect(200, "GET", f"/v1/exports/{export['id']}", token)
                    took = time.perf_counter() - started
                    files = files_under(exports_dir)
                    sizes = [os.path.getsize(path) for path in files]
                    if export["row_count"] != EXPORT_BATCHES or sizes != [export["size_bytes"]]:
                        raise RuntimeError(f"export {export['id']} reports {export['row_count']} rows, {export['size_bytes']} bytes; "
                                           f"expected {EXPORT_BATCHES} rows and one file of that size, found {dict(zip(files, sizes))}")
                    for path in files:
                        os.remove(path)
                    return took, None, export["size_bytes"], export["sha256"]

                def identical(format_, ours_, psql_):
                    if ours_[3] != psql_[3]:
                        raise RuntimeError(f"{format_}: the export's file (sha256 {ours_[3]}, {ours_[2]:,} bytes) differs from "
                                           f"psql's (sha256 {psql_[3]}, {psql_[2]:,} bytes)")

                results = {format_: {"psql": [], "ours": []} for format_ in formats}
                for format_ in formats:
                    warm_psql, warm_ours = psql(format_), ours(format_)  # warm-up, untimed
                    identical(format_, warm_ours, warm_psql)
                    print(f"  {format_}: files identical (sha256 {warm_ours[3]}, {warm_ours[2]:,} bytes)", flush=True)
                    measures = {"psql": psql, "ours": ours}
                    for round_ in range(runs):
                        order = list(measures) if round_ % 2 == 0 else list(reversed(measures))
                        for name in order:
                            results[format_][name].append(measures[name](format_))
                            print(f"  {format_} round {round_ + 1}/{runs} {name}: {results[format_][name][-1][0]:.2f} s", flush=True)
                        identical(format_, results[format_]["ours"][-1], results[format_]["psql"][-1])
                worker_rss = worker.peak_rss_kib()
            finally:
                worker.stop()
        finally:
            api.stop()
    finally:
        delete_namespace(namespace)
        shutil.rmtree(scratch, ignore_errors=True)
    rows = []
    for format_ in formats:
        ours_s = statistics.median(r[0] for r in results[format_]["ours"])
        psql_s = statistics.median(r[0] for r in results[format_]["psql"])
        mib = results[format_]["ours"][-1][2] / (1 << 20)
        name = {"csv": "CSV", "jsonl": "JSON lines"}[format_]
        copy_tool = f"psql -f: \\copy (plain join) TO file WITH ({EXPORT_BASELINE[format_][1]})"
        rows += [
            {
                "figure": f"{EXPORT_BATCHES:,}-row {name} export, POST to succeeded (s, median of {runs})",
                "ours": round(ours_s, 2),
                "baseline": round(psql_s, 2),
                "baseline_tool": copy_tool + " wall time",
                "ratio": round(ours_s / psql_s, 2),
            },
            {
                "figure": f"{EXPORT_BATCHES:,}-row {name} export throughput (rows/s, median of {runs})",
                "ours": round(EXPORT_BATCHES / ours_s),
                "baseline": round(EXPORT_BATCHES / psql_s),
                "baseline_tool": "that psql \\copy",
                "ratio": round(psql_s / ours_s, 2),
            },
            {
                "figure": f"{name} export file size (MiB; sha256 identical in every run)",
                "ours": round(mib, 1),
                "baseline": round(mib, 1),
                "baseline_tool": "the file of that psql \\copy",
                "ratio": 1.0,
            },
        ]
    psql_rss = max(r[1] for format_ in formats for r in results[format_]["psql"])
    rows.append({
        "figure": "worker peak RSS over all exports (MiB, VmHWM)",
        "ours": round(worker_rss / 1024, 1),
        "baseline": round(psql_rss / 1024, 1),
        "baseline_tool": f"peak RSS of that psql (max of {runs} per format)",
        "ratio": round(worker_rss / psql_rss, 2),
    })
    return rows


# 20,000 maintenance.ping envelopes in one statement; each message's id is
# its row's, as outbox::insert writes them.
def pings_sql():
    return PINGS_SQL.replace("{JOBS}", str(JOBS))


PINGS_SQL = """
WITH pings AS (SELECT gen_random_uuid() AS id FROM generate_series(1, {JOBS}))
INSERT INTO outbox (id, routing_key, message)
SELECT id, 'maintenance.ping',
       jsonb_build_object('id', id, 'type', 'maintenance.ping', 'version', 1,
                          'occurred_at', to_char(now() AT TIME ZONE 'utc', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                          'correlation_id', 'bench', 'payload', jsonb_build_object('note', 'bench'))
FROM pings;
"""


def scenario_jobs(runs):
    """20,000 trivial jobs end to end, outbox to ack, against raw publish and consume on the same broker.

    Ours: the release stockflow-api (OUTBOX_SWEEP_INTERVAL_MS=100) and
    stockflow-worker (WORKER_CONCURRENCY set to 4, its default, or to
    BENCH_WORKER_CONCURRENCY) on a fresh migrated database
    (stockflow_bench_jobs, dropped after) and a namespace of this run
    (`bench_jobs_<pid>`). One SQL statement inserts
    20,000 `maintenance.ping` envelopes into `outbox`; the api's relay finds
    them at its next sweep and publishes them 500 per transaction (confirms
    awaited, rows marked published), the worker takes them from the quorum
    queue `<ns>.maintenance`, runs the no-op handler and acks each. The figure
    is 20,000 over the wall time from the INSERT's commit until the worker's
    /metrics (polled every 50 ms) shows
    `stockflow_jobs_succeeded_total{type="maintenance.ping"}` 20,000 higher;
    it includes up to one sweep interval (100 ms) before the relay starts.
    Baseline: `raw_throughput` (crates/queue/examples), a lapin program that
    declares a quorum queue, publishes 20,000 persistent, mandatory messages
    of the same size as those envelopes to it with publisher confirms, in
    batches of 500 whose confirms are all awaited before the next (as the
    relay does), while a consumer on a second connection with the same
    prefetch acks each; it reports the time from the first publish to the
    last ack. Published outbox rows are deleted before each run. One untimed
    warm-up of each, then runs alternate, which goes first swapping each
    round; figures are medians, in messages per second, so a higher ratio is
    better.
    """
    raw = os.path.join(BIN, "examples", "raw_throughput")
    if not os.access(raw, os.X_OK):
        raise RuntimeError(f"{raw} is missing: cargo build --release --locked -p stockflow-queue --examples")
    if not os.access(TIME, os.X_OK):
        raise RuntimeError(f"{TIME} is missing: apt-get install time")
    os.makedirs(os.path.join(ROOT, "var", "bench"), exist_ok=True)
    scratch = tempfile.mkdtemp(prefix="jobs-", dir=os.path.join(ROOT, "var", "bench"))
    url = db_url(JOBS_DB)
    namespace = f"bench_jobs_{os.getpid()}"
    recreate_database(JOBS_DB)
    try:
        api = Api(url, scratch, {"AMQP_NAMESPACE": namespace, "OUTBOX_SWEEP_INTERVAL_MS": "100"})
        try:
            worker = Worker(url, scratch, {"AMQP_NAMESPACE": namespace, "WORKER_CONCURRENCY": str(WORKER_CONCURRENCY)})
            try:
                def ours():
                    sql(url, "DELETE FROM outbox WHERE published_at IS NOT NULL;")
                    target = worker.metric(PINGS_SUCCEEDED) + JOBS
                    sql(url, pings_sql())
                    started = time.perf_counter()
                    while worker.metric(PINGS_SUCCEEDED) < target:
                        if time.perf_counter() - started > JOBS_TIMEOUT:
                            raise RuntimeError(f"{JOBS} pings not done within {JOBS_TIMEOUT}s: {worker.metric(PINGS_SUCCEEDED)} of {target}\n"
                                               f"api: {api.tail()}\nworker: {worker.tail()}")
                        time.sleep(0.05)
                    return time.perf_counter() - started

                def baseline():
                    _, _, out = run_measured([raw, "--amqp-url", AMQP_URL, "--messages", str(JOBS), "--prefetch", str(WORKER_CONCURRENCY)], scratch)
                    measured = json.loads(out)
                    if measured["messages"] != JOBS or measured["message_bytes"] != ping_bytes:
                        raise RuntimeError(f"raw_throughput sent {measured}; expected {JOBS} messages of {ping_bytes} bytes")
                    return measured["seconds"]

                ours()  # warm-up, untimed; also gives the size of an envelope as the relay sends it
                message = json.loads(sql(url, "SELECT message::text FROM outbox LIMIT 1;"))
                ping_bytes = len(json.dumps(message, separators=(",", ":")).encode())
                baseline()
                results = {"raw": [], "ours": []}
                measures = {"raw": baseline, "ours": ours}
                for round_ in range(runs):
                    order = list(measures) if round_ % 2 == 0 else list(reversed(measures))
                    for name in order:
                        results[name].append(measures[name]())
                        print(f"  round {round_ + 1}/{runs} {name}: {JOBS / results[name][-1]:.0f} msgs/s ({results[name][-1]:.2f} s)", flush=True)
                unpublished = sql(url, "SELECT count(*) FROM outbox WHERE published_at IS NULL;")
                if unpublished != "0":
                    raise RuntimeError(f"{unpublished} outbox rows left unpublished")
            finally:
                worker.stop()
        finally:
            api.stop()
    finally:
        delete_namespace(namespace)
        shutil.rmtree(scratch, ignore_errors=True)
        sql(db_url("postgres"), f"DROP DATABASE IF EXISTS {JOBS_DB} WITH (FORCE);")
    ours_rate = JOBS / statistics.median(results["ours"])
    raw_rate = JOBS / statistics.median(results["raw"])
    return [
        {
            "figure": f"{JOBS:,} maintenance.ping, outbox to ack, WORKER_CONCURRENCY {WORKER_CONCURRENCY} (msgs/s, median of {runs})",
            "ours": round(ours_rate, 1),
            "baseline": round(raw_rate, 1),
            "baseline_tool": f"raw_throughput: lapin, quorum queue, persistent, confirms per 500, prefetch {WORKER_CONCURRENCY}, ack each ({ping_bytes} B messages)",
            "ratio": round(ours_rate / raw_rate, 2),
        },
    ]


SCHEDULER_DB = os.environ.get("BENCH_SCHEDULER_DATABASE", "stockflow_bench_scheduler")
SCHEDULES = 10_000
SCHEDULER_TICK_MS = 100
SCHEDULER_TIMEOUT = 300.0
IDLE_SECONDS = 60

# SCHEDULES installation schedules on a yearly pattern, all due at the
# instant given; each fires one maintenance.ping when it comes.
SCHEDULES_SQL = """
INSERT INTO schedules (name, cron, timezone, routing_key, payload, next_run_at)
SELECT 'bench-' || lpad(n::text, 6, '0'), '0 0 1 1 *', 'UTC', 'maintenance.ping', '{"note": "bench"}', {DUE}
FROM generate_series(1, {SCHEDULES}) AS n;
"""

# The same outbox rows, written the plainest way: one INSERT ... SELECT.
OUTBOX_BASELINE_SQL = """
WITH pings AS (SELECT gen_random_uuid() AS id, n FROM generate_series(1, {SCHEDULES}) AS n)
INSERT INTO outbox (id, routing_key, message)
SELECT id, 'maintenance.ping',
       jsonb_build_object('id', id, 'type', 'maintenance.ping', 'version', 1,
                          'occurred_at', to_char(now() AT TIME ZONE 'utc', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                          'correlation_id', 'schedule:' || gen_random_uuid() || ':' || to_char(now() AT TIME ZONE 'utc', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                          'payload', jsonb_build_object('note', 'bench'))
FROM pings;
"""

# Every write a tick must make, the plainest way: one statement that locks
# the due schedules, records a run per slot (the UNIQUE (schedule_id, slot)
# that makes a second firing impossible), advances each schedule (a yearly
# pattern needs no cron reader: one year on) and writes the same outbox rows.
PLAIN_TICK_SQL = """
WITH due AS (
    SELECT id, next_run_at, gen_random_uuid() AS job FROM schedules
    WHERE enabled AND NOT paused AND next_run_at <= now() FOR UPDATE),
runs AS (
    INSERT INTO schedule_runs (id, schedule_id, slot, trigger, fired_at, job_id)
    SELECT job, id, next_run_at, 'scheduled', now(), job FROM due
    ON CONFLICT (schedule_id, slot) DO NOTHING RETURNING job_id, schedule_id, slot),
moved AS (
    UPDATE schedules s SET next_run_at = s.next_run_at + interval '1 year', last_run_at = now(), last_status = 'enqueued'
    FROM due WHERE s.id = due.id)
INSERT INTO outbox (id, routing_key, message)
SELECT job_id, 'maintenance.ping',
       jsonb_build_object('id', job_id, 'type', 'maintenance.ping', 'version', 1,
                          'occurred_at', to_char(now() AT TIME ZONE 'utc', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                          'correlation_id', 'schedule:' || schedule_id || ':' || to_char(slot AT TIME ZONE 'utc', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
                          'payload', jsonb_build_object('note', 'bench'))
FROM runs;
"""


def cpu_seconds(pid):
    """User plus system CPU time a process has used so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class PsqlSession:
    """One psql connection kept open, for polls every few milliseconds
    (a psql per poll would cost more than the interval)."""

    def __init__(self, url):
        self.proc = subprocess.Popen(["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", url],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def row(self, query):
        """Runs a query that returns one row; returns its columns."""
        self.proc.stdin.write(query.strip().rstrip(";") + ";\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"psql ended while running: {query}")
        return line.rstrip("\n").split("|")

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=10)


class Scheduler(Service):
    """A release stockflow-scheduler, its /healthz, /readyz and /metrics on a
    free port, its log in `scratch`."""

    binary, bind_var = "stockflow-scheduler", "SCHEDULER_HEALTH_BIND"


def scenario_scheduler(runs):
    """10,000 schedules due in the same second, from their slot until all their jobs are in the outbox and published; an idle scheduler's CPU and memory.

    Ours: the release stockflow-scheduler (SCHEDULER_TICK_MS=100, every
    system schedule switched off) leading on a fresh migrated database
    (stockflow_bench_scheduler, dropped after) and a namespace of this run.
    One INSERT writes 10,000 schedules (`0 0 1 1 *`, job
    `maintenance.ping`) whose `next_run_at` is the same instant 2 s ahead.
    The scheduler claims them 5,000 per transaction, records 10,000 runs,
    writes 10,000 outbox rows and advances each schedule; its relay publishes
    them with confirms. Figures, from the slot, on the database's clock
    (`clock_timestamp()`, polled every 5 ms on one open psql session): until
    all 10,000 outbox rows are committed, and until all are marked published;
    both include up to one tick (100 ms) before the leader looks. Baseline
    of the first: psql's `\\timing` of one bare `INSERT ... SELECT` of the
    same 10,000 outbox rows (same envelope, generated by SQL), the least work
    that puts those jobs in the outbox. Baseline of the second: that INSERT
    plus `raw_throughput` (crates/queue/examples: lapin alone) moving 10,000
    persistent messages of the same kind through a quorum queue with
    confirms per 500, as the relay publishes, to a consumer that acks each
    (its time runs to the last ack): the broker's share, which no scheduler
    can beat. A third baseline for the first figure: every write a tick must
    make (lock the due schedules, insert a run per slot, move each schedule
    on, insert the outbox rows) as one plain SQL statement timed by psql,
    with the statement's commit, over the same 10,000 schedules written in
    its own transaction so the running scheduler never sees them. Runs alternate; medians. Idle, measured first: the scheduler
    leading with no schedule due, over 60 s: CPU time (user + system, /proc/pid/stat)
    as a share of one core, and RSS; baseline: psql polling the database at
    the same rate (`SELECT now() \\watch 0.1`), the simplest thing that
    looks for due work every tick.
    """
    os.makedirs(os.path.join(ROOT, "var", "bench"), exist_ok=True)
    scratch = tempfile.mkdtemp(prefix="scheduler-", dir=os.path.join(ROOT, "var", "bench"))
    url = db_url(SCHEDULER_DB)
    namespace = f"bench_scheduler_{os.getpid()}"
    recreate_database(SCHEDULER_DB)
    off = {var: "off" for var in ("DB_BACKUP_CRON", "MEDIA_BACKUP_CRON", "CLEANUP_UPLOADS_INTERVAL_HOURS", "EXPORT_EXPIRY_CRON", "STORAGE_RECONCILE_CRON")}
    raw = os.path.join(BIN, "examples", "raw_throughput")
    if not os.access(raw, os.X_OK):
        raise RuntimeError(f"{raw} is missing: cargo build --release --locked -p stockflow-queue --examples")
    results = {"insert": [], "raw": [], "outbox": [], "published": [], "plain": []}
    try:
        scheduler = Scheduler(url, scratch, {"AMQP_NAMESPACE": namespace, "SCHEDULER_TICK_MS": str(SCHEDULER_TICK_MS), **off})
        try:
            started = time.perf_counter()
            while not re.search(r"^stockflow_scheduler_leader 1$", metrics_text(scheduler), re.M):
                if time.perf_counter() - started > 30:
                    raise RuntimeError(f"the scheduler did not lead within 30 s: {scheduler.tail()}")
                time.sleep(0.05)

            poller = subprocess.Popen(["psql", "-X", "-q", "-d", url], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            poller.stdin.write(b"SELECT now() \\watch 0.1\n")
            poller.stdin.flush()
            try:
                time.sleep(1)
                if poller.poll() is not None:
                    raise RuntimeError(f"psql \\watch stopped: {poller.stderr.read().decode()}")
                # Both measured over the same seconds, side by side.
                sched_before, psql_before = cpu_seconds(scheduler.proc.pid), cpu_seconds(poller.pid)
                time.sleep(IDLE_SECONDS)
                sched_cpu = (cpu_seconds(scheduler.proc.pid) - sched_before) / IDLE_SECONDS * 100
                psql_cpu = (cpu_seconds(poller.pid) - psql_before) / IDLE_SECONDS * 100
                sched_rss, psql_rss = rss_kib(scheduler.proc.pid) / 1024, rss_kib(poller.pid) / 1024
            finally:
                poller.terminate()
                poller.wait(timeout=10)
                poller.stdin.close()

            def clean():
                # Every round starts from the same tables: deleted rows left
                # for autovacuum would slow each round more than the last.
                sql(url, "TRUNCATE schedule_runs, outbox; DELETE FROM schedules WHERE name LIKE 'bench-%'; VACUUM ANALYZE schedules;")

            def ours():
                clean()
                due = sql(url, "SELECT (now() + interval '2 seconds')::text;")
                sql(url, SCHEDULES_SQL.replace("{DUE}", literal(due) + "::timestamptz").replace("{SCHEDULES}", str(SCHEDULES)))
                deadline = time.perf_counter() + SCHEDULER_TIMEOUT
                in_outbox = None
                poll = PsqlSession(url)
                try:
                    while True:
                        count, published, elapsed = poll.row(
                            f"SELECT count(*), count(published_at), extract(epoch FROM clock_timestamp() - {literal(due)}::timestamptz) FROM outbox")
                        if int(count) > SCHEDULES:
                            raise RuntimeError(f"{count} outbox rows for {SCHEDULES} schedules: a slot fired twice")
                        if in_outbox is None and int(count) == SCHEDULES:
                            in_outbox = float(elapsed)
                        if int(published) == SCHEDULES:
                            break
                        if time.perf_counter() > deadline:
                            raise RuntimeError(f"{published} of {SCHEDULES} published within {SCHEDULER_TIMEOUT}s: {scheduler.tail()}")
                        time.sleep(0.005)
                finally:
                    poll.close()
                runs_ = sql(url, "SELECT count(*) FROM schedule_runs;")
                if runs_ != str(SCHEDULES):
                    raise RuntimeError(f"{runs_} runs recorded for {SCHEDULES} schedules")
                return in_outbox, float(elapsed)

            def insert():
                sql(url, "DELETE FROM outbox;")
                out = sql(url, "\\timing on\n" + OUTBOX_BASELINE_SQL.replace("{SCHEDULES}", str(SCHEDULES)))
                found = re.search(r"Time: ([0-9.]+) ms", out)
                if not found:
                    raise RuntimeError(f"psql printed no timing: {out}")
                return float(found.group(1)) / 1000

            def plain():
                """The plain statement over the same 10,000 due schedules,
                written in its own transaction so the running scheduler
                never sees them; its time is the statement's and the
                commit's."""
                clean()
                out = sql(url, "BEGIN;\n" + SCHEDULES_SQL.replace("{DUE}", "now() - interval '1 second'").replace("{SCHEDULES}", str(SCHEDULES))
                          + "\\timing on\n" + PLAIN_TICK_SQL + "COMMIT;\n")
                times = [float(t) for t in re.findall(r"Time: ([0-9.]+) ms", out)]
                if len(times) != 2:
                    raise RuntimeError(f"psql printed no timing of the statement and the commit: {out}")
                fired = sql(url, "SELECT count(*) FROM outbox o JOIN schedule_runs r ON r.job_id = o.id;")
                if fired != str(SCHEDULES):
                    raise RuntimeError(f"the plain statement wrote {fired} runs with their jobs, not {SCHEDULES}")
                return sum(times) / 1000

            for round_ in range(runs):
                order = ["ours", "baseline"] if round_ % 2 == 0 else ["baseline", "ours"]
                for name in order:
                    if name == "ours":
                        outbox_s, published_s = ours()
                        results["outbox"].append(outbox_s)
                        results["published"].append(published_s)
                        print(f"  round {round_ + 1}/{runs} ours: all in the outbox {outbox_s:.3f} s, all published {published_s:.3f} s after the slot", flush=True)
                    else:
                        results["insert"].append(insert())
                        results["plain"].append(plain())
                        _, _, out = run_measured([raw, "--amqp-url", AMQP_URL, "--messages", str(SCHEDULES), "--prefetch", "4"], scratch)
                        results["raw"].append(json.loads(out)["seconds"])
                        print(f"  round {round_ + 1}/{runs} INSERT ... SELECT: {results['insert'][-1]:.3f} s; the tick's writes in plain SQL: {results['plain'][-1]:.3f} s; raw_throughput: {results['raw'][-1]:.3f} s", flush=True)
            clean()

        finally:
            scheduler.stop()
    finally:
        delete_namespace(namespace)
        shutil.rmtree(scratch, ignore_errors=True)
        sql(db_url("postgres"), f"DROP DATABASE IF EXISTS {SCHEDULER_DB} WITH (FORCE);")
    insert = statistics.median(results["insert"])
    through_broker = statistics.median([i + r for i, r in zip(results["insert"], results["raw"])])
    baseline_tool = f"psql \\timing: one INSERT ... SELECT of the same {SCHEDULES:,} outbox rows"
    outbox, published = statistics.median(results["outbox"]), statistics.median(results["published"])
    # A psql that used less than a clock tick of CPU (a short quick run)
    # still counts as one tick, so the ratio stays a number.
    psql_cpu = max(psql_cpu, 100 / os.sysconf("SC_CLK_TCK") / IDLE_SECONDS)
    return [
        {"figure": f"{SCHEDULES:,} schedules due at once, slot to all jobs in the outbox (s, median of {runs})",
         "ours": round(outbox, 3), "baseline": round(insert, 3), "baseline_tool": baseline_tool, "ratio": round(outbox / insert, 2)},
        {"figure": f"{SCHEDULES:,} schedules due at once, slot to all jobs in the outbox, against the same writes in plain SQL (s, median of {runs})",
         "ours": round(outbox, 3), "baseline": round(statistics.median(results["plain"]), 3),
         "baseline_tool": "psql \\timing: one statement locking the due schedules, inserting their runs, moving each on a year, inserting the outbox rows",
         "ratio": round(outbox / statistics.median(results["plain"]), 2)},
        {"figure": f"{SCHEDULES:,} schedules due at once, slot to all jobs published (s, median of {runs})",
         "ours": round(published, 3), "baseline": round(through_broker, 3),
         "baseline_tool": f"the same INSERT, plus raw_throughput: {SCHEDULES:,} persistent messages through a quorum queue, confirms per 500",
         "ratio": round(published / through_broker, 2)},
        {"figure": f"idle scheduler CPU over {IDLE_SECONDS} s (% of one core)",
         "ours": round(sched_cpu, 3), "baseline": round(psql_cpu, 3), "baseline_tool": f"psql, SELECT now() \\watch 0.1, same {IDLE_SECONDS} s",
         "ratio": round(sched_cpu / psql_cpu, 2)},
        {"figure": "idle scheduler RSS (MiB)",
         "ours": round(sched_rss, 1), "baseline": round(psql_rss, 1), "baseline_tool": "psql, SELECT now() \\watch 0.1",
         "ratio": round(sched_rss / psql_rss, 2)},
    ]


BACKUP_DB = os.environ.get("BENCH_BACKUP_DATABASE", "stockflow_bench_backup")
BACKUP_MEDIA_DB = os.environ.get("BENCH_BACKUP_MEDIA_DATABASE", "stockflow_bench_backup_media")
BACKUP_MEDIA_FILES = 2_000
# The size of a scanned certificate or a photo: what attachments are.
BACKUP_MEDIA_FILE_BYTES = 1024 * 1024
BACKUP_COMPRESS = "3"


def seed_backup_media(url, media_root):
    """BACKUP_MEDIA_FILES stored attachments of BACKUP_MEDIA_FILE_BYTES random
    bytes each, on one batch, their files in `media_root` under the keys the
    api gives them, their rows with the sha256 of each file."""
    sql(url, """
INSERT INTO organizations (slug, name) VALUES ('bench-media', 'bench-media');
INSERT INTO products (org_id, sku, name, unit) SELECT id, 'P-1', 'Flour', 'kg' FROM organizations WHERE slug = 'bench-media';
INSERT INTO batches (org_id, product_id, code, quantity, produced_at, status)
SELECT o.id, p.id, 'LOT-1', 1, now(), 'completed' FROM organizations o JOIN products p ON p.org_id = o.id WHERE o.slug = 'bench-media';
""")
    org, batch = sql(url, "SELECT o.id, b.id FROM organizations o JOIN batches b ON b.org_id = o.id WHERE o.slug = 'bench-media';").split("|")
    rows = []
    for _ in range(BACKUP_MEDIA_FILES):
        attachment = str(uuid.uuid4())
        key = f"{org}/attachments/{attachment}"
        body = os.urandom(BACKUP_MEDIA_FILE_BYTES)
        path = os.path.join(media_root, key)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "wb") as f:
            f.write(body)
        rows.append(f"{attachment}\t{org}\t{batch}\t{key}\tfile.bin\tapplication/octet-stream\t{len(body)}\t\\\\x{hashlib.sha256(body).hexdigest()}\tstored")
    sql(url, "COPY attachments (id, org_id, batch_id, storage_key, filename, content_type, size_bytes, sha256, state) FROM STDIN;\n"
        + "\n".join(rows) + "\n\\.\n")


def scenario_backup(runs):
    """Backups of the 1,000,000-batch database against plain `pg_dump -Fc`, restores against plain `pg_restore`, and a media backup over unchanged media against the first one.

    Database: a copy of export's (stockflow_bench_export, 1,000,000 batches,
    seeded once and reused) without its export rows, stockflow_bench_backup,
    dropped after. Ours: `stockflow-backup run` (release, the CLI an
    operator or cron runs, BACKUP_COMPRESS=3, BACKUP_VERIFY_AFTER_RUN=false
    so the figure is the backup alone): it opens a REPEATABLE READ snapshot,
    counts every table in it, streams `pg_dump --format=custom --compress=3
    --snapshot` into LocalFs (BACKUP_ROOT under var/bench/: sha256, write,
    fsync, link), lists the referenced media (none) and records the run;
    wall time of the whole command. Baseline: `pg_dump --format=custom
    --compress=3 --file=<file in the same directory>` of the same database,
    the plain way to get the same dump. Restore: ours is `stockflow-backup
    restore <run> --target-database-url <empty database>` (sha256 of the
    stored dump checked, pg_restore fed from backup storage, every table
    counted and compared); baseline `pg_restore --no-owner
    --exit-on-error --dbname=<empty database> <the same dump file>`. Peak
    RSS of our backup command (GNU time; the largest of the process and the
    children it waited for, pg_dump included) beside pg_dump's own. Media: a
    database of its own (stockflow_bench_backup_media, dropped after) with
    2,000 stored attachments of 1 MiB random bytes (2 GiB) in MEDIA_ROOT;
    the first `stockflow-backup run` into an empty BACKUP_ROOT copies them
    all (hashing each as it streams), the second, with nothing changed,
    copies nothing; the figure is the second's time against the first's, as
    the issue sets it. Beside it, the plain tool for an incremental copy of
    the same files: `rsync -a` of MEDIA_ROOT into a directory it filled
    once already, over the same unchanged files (it compares sizes and
    times; ours compares the rows' sizes with backup storage and writes a
    manifest).
    Both include what every run does whatever the media (process start,
    snapshot and counts, pg_dump of the small database): a run of a database
    without media took 0.14-0.17 s by hand here (`/usr/bin/time
    stockflow-backup run`), most of the second run.
    Runs alternate; medians.
    """
    os.makedirs(os.path.join(ROOT, "var", "bench"), exist_ok=True)
    scratch = tempfile.mkdtemp(prefix="backup-", dir=os.path.join(ROOT, "var", "bench"))
    seed_export_database(scratch)
    # A copy of export's database without its exports, whose files went
    # with export's scratch directory (a backup refuses rows whose media
    # are missing).
    sql(db_url("postgres"), f"DROP DATABASE IF EXISTS {BACKUP_DB} WITH (FORCE); CREATE DATABASE {BACKUP_DB} TEMPLATE {EXPORT_DB};")
    url = db_url(BACKUP_DB)
    sql(url, "DELETE FROM exports; DELETE FROM backup_runs; VACUUM ANALYZE;")
    binary = os.path.join(BIN, "stockflow-backup")
    results = {"ours": [], "pg_dump": [], "restore": [], "pg_restore": [], "ours_rss": [], "pg_dump_rss": [],
               "media_first": [], "media_second": [], "media_rss": [], "rsync_second": []}

    def backup_env(database_url, backup_root, media_root):
        return service_env({"DATABASE_URL": database_url, "BACKUP_ROOT": backup_root, "MEDIA_ROOT": media_root,
                            "BACKUP_COMPRESS": BACKUP_COMPRESS, "BACKUP_VERIFY_AFTER_RUN": "false"})

    def measured(argv, env):
        rss_file = os.path.join(scratch, "maxrss")
        started = time.perf_counter()
        proc = subprocess.run([TIME, "-o", rss_file, "-f", "%M"] + argv, env=env, capture_output=True, text=True)
        took = time.perf_counter() - started
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
        with open(rss_file) as f:
            return took, int(f.read().split()[-1]), proc.stdout.strip()

    def empty_database(name):
        sql(db_url("postgres"), f"DROP DATABASE IF EXISTS {name} WITH (FORCE); CREATE DATABASE {name};")
        return db_url(name)

    media_db_made = False
    try:
        # MEDIA_ROOT of the api that seeded products, when it ran: empty.
        media_root = os.path.join(scratch, "media")
        os.makedirs(media_root, exist_ok=True)
        last_run = None
        for round_ in range(runs):
            order = ["ours", "baseline"] if round_ % 2 == 0 else ["baseline", "ours"]
            for name in order:
                root = os.path.join(scratch, f"backups-{round_}-{name}")
                os.makedirs(root)
                if name == "ours":
                    took, rss, run_id = measured([binary, "run"], backup_env(url, root, media_root))
                    results["ours"].append(took)
                    results["ours_rss"].append(rss / 1024)
                    last_run = (root, run_id)
                    print(f"  round {round_ + 1}/{runs} stockflow-backup run: {took:.2f} s, peak RSS {rss / 1024:.1f} MiB", flush=True)
                else:
                    dump = os.path.join(root, "plain.dump")
                    took, rss, _ = measured(["pg_dump", "--format=custom", f"--compress={BACKUP_COMPRESS}", f"--file={dump}", url], service_env())
                    results["pg_dump"].append(took)
                    results["pg_dump_rss"].append(rss / 1024)
                    print(f"  round {round_ + 1}/{runs} pg_dump -Fc: {took:.2f} s, peak RSS {rss / 1024:.1f} MiB", flush=True)
            # Restores of this round's run, ours and the plain one, into empty databases.
            root, run_id = last_run
            key = sql(url, f"SELECT db_key FROM backup_runs WHERE id = {literal(run_id)};")
            for name in order:
                target = empty_database("stockflow_bench_restore")
                if name == "ours":
                    took, _, _ = measured([binary, "restore", run_id, "--target-database-url", target], backup_env(url, root, media_root))
                    results["restore"].append(took)
                else:
                    took, _, _ = measured(["pg_restore", "--no-owner", "--exit-on-error", f"--dbname={target}", os.path.join(root, key)], service_env())
                    results["pg_restore"].append(took)
                print(f"  round {round_ + 1}/{runs} restore {'stockflow-backup restore' if name == 'ours' else 'pg_restore'}: {took:.2f} s", flush=True)
            for name in order:
                shutil.rmtree(os.path.join(scratch, f"backups-{round_}-{name}"), ignore_errors=True)

        print(f"  seeding {BACKUP_MEDIA_DB}: {BACKUP_MEDIA_FILES:,} files of {BACKUP_MEDIA_FILE_BYTES // 1024} KiB", flush=True)
        recreate_database(BACKUP_MEDIA_DB)
        media_db_made = True
        media_url = db_url(BACKUP_MEDIA_DB)
        seed_backup_media(media_url, media_root)
        for round_ in range(runs):
            root = os.path.join(scratch, f"media-backups-{round_}")
            os.makedirs(root)
            first, first_rss, _ = measured([binary, "run"], backup_env(media_url, root, media_root))
            second, _, _ = measured([binary, "run"], backup_env(media_url, root, media_root))
            mirror = os.path.join(scratch, f"rsync-{round_}")
            measured(["rsync", "-a", media_root + "/", mirror + "/"], service_env())
            rsync_second, _, _ = measured(["rsync", "-a", media_root + "/", mirror + "/"], service_env())
            results["rsync_second"].append(rsync_second)
            shutil.rmtree(mirror, ignore_errors=True)
            new_bytes = sql(media_url, "SELECT media_new_bytes FROM backup_runs ORDER BY started_at DESC LIMIT 1;")
            if new_bytes != "0":
                raise RuntimeError(f"the second media backup copied {new_bytes} bytes over unchanged media")
            results["media_first"].append(first)
            results["media_second"].append(second)
            results["media_rss"].append(first_rss / 1024)
            print(f"  round {round_ + 1}/{runs} media: first run {first:.2f} s, second (unchanged) {second:.2f} s; rsync -a again {rsync_second:.2f} s", flush=True)
            shutil.rmtree(root, ignore_errors=True)
    finally:
        sql(db_url("postgres"), f"DROP DATABASE IF EXISTS stockflow_bench_restore WITH (FORCE); DROP DATABASE IF EXISTS {BACKUP_DB} WITH (FORCE);")
        if media_db_made:
            sql(db_url("postgres"), f"DROP DATABASE IF EXISTS {BACKUP_MEDIA_DB} WITH (FORCE);")
        shutil.rmtree(scratch, ignore_errors=True)
    med = {name: statistics.median(values) for name, values in results.items()}
    rss = max(max(results["ours_rss"]), max(results["media_rss"]))
    return [
        {"figure": f"database backup of {EXPORT_BATCHES:,} batches, -Z{BACKUP_COMPRESS} (s, median of {runs})",
         "ours": round(med["ours"], 2), "baseline": round(med["pg_dump"], 2),
         "baseline_tool": f"pg_dump --format=custom --compress={BACKUP_COMPRESS} --file=<local file>",
         "ratio": round(med["ours"] / med["pg_dump"], 2)},
        {"figure": f"restore of that dump into an empty database (s, median of {runs})",
         "ours": round(med["restore"], 2), "baseline": round(med["pg_restore"], 2),
         "baseline_tool": "pg_restore --no-owner --exit-on-error of the same dump file",
         "ratio": round(med["restore"] / med["pg_restore"], 2)},
        {"figure": f"media backup, second run over unchanged media ({BACKUP_MEDIA_FILES:,} files) (s, median of {runs})",
         "ours": round(med["media_second"], 3), "baseline": round(med["media_first"], 3),
         "baseline_tool": f"our first run, copying all {BACKUP_MEDIA_FILES * BACKUP_MEDIA_FILE_BYTES / 2**20:.1f} MiB",
         "ratio": round(med["media_second"] / med["media_first"], 3)},
        {"figure": f"media backup, second run over unchanged media ({BACKUP_MEDIA_FILES:,} files) (s, median of {runs})",
         "ours": round(med["media_second"], 3), "baseline": round(med["rsync_second"], 3),
         "baseline_tool": "rsync -a of the same files into a copy it made before",
         "ratio": round(med["media_second"] / med["rsync_second"], 2)},
        {"figure": "backup command peak RSS (MiB, the largest of its runs)",
         "ours": round(rss, 1), "baseline": round(max(results["pg_dump_rss"]), 1),
         "baseline_tool": "pg_dump's own peak RSS, same dump",
         "ratio": round(rss / max(results["pg_dump_rss"]), 2)},
    ]


GRAPHQL_PAGE = ("{ batches(first: 50) { edges { cursor node { id productId code quantity producedAt status notes "
                "metadata createdAt updatedAt product { sku } } } pageInfo { hasNextPage endCursor } } }")
# The page and each batch's product SKU, as one would write it by hand.
PAGE_WITH_SKU_SQL = """\
SELECT b.id, b.product_id, b.code, b.quantity, b.produced_at, b.status, b.notes, b.metadata, b.created_at, b.updated_at, p.sku FROM batches b JOIN products p ON p.id = b.product_id WHERE b.org_id = :org ORDER BY b.produced_at DESC, b.id DESC LIMIT :fetch;
"""


def scenario_graphql_list(runs):
    """api-list through GraphQL: `POST /graphql` with `{ batches(first: 50)
    { edges { cursor node { every field, product { sku } } } pageInfo {
    hasNextPage endCursor } } }` against REST's `GET /v1/batches?limit=50`
    on the same api in the same rounds (issue 17's figure: the cost of the
    GraphQL layer, target >= 0.8 of REST's req/s and p99 within 1.5x), and
    against `pgbench -M prepared -c 32 -j 2` running the token lookup and
    the page with each batch's SKU as one plain join written by hand (the
    tool baseline). Same database, token, wrk settings, warm-up, 15 s runs
    alternating and medians as api-list; wrk POSTs the query with a Lua
    script. GraphQL answers 200 even with errors, so before the runs the
    GraphQL page is checked against REST's: the same 50 ids in the same
    order, the same cursor, and every product's SKU.
    """
    tool(WRK, "apt-get install wrk")
    tool(PGBENCH, "apt-get install postgresql-client")
    if not os.access(TIME, os.X_OK):
        raise RuntimeError(f"{TIME} is missing: apt-get install time")
    os.makedirs(os.path.join(ROOT, "var", "bench"), exist_ok=True)
    scratch = tempfile.mkdtemp(prefix="graphql-list-", dir=os.path.join(ROOT, "var", "bench"))
    url = db_url(LIST_DB)
    try:
        seed_list_database(scratch)
        org = SEED_ORGS[0]
        sql(url, "DELETE FROM api_tokens WHERE name = 'bench-graphql-list';")
        token = create_token(url, org, "viewer", "bench-graphql-list")
        org_id = sql(url, f"SELECT id FROM organizations WHERE slug = {literal(org)};")
        variables = {
            "digest": "\\x" + hashlib.sha256(token.encode()).hexdigest(),
            "now": datetime.datetime.now(datetime.timezone.utc).isoformat(),
            "one": 1,
            "org": org_id,
            "fetch": 51,
        }
        plain = os.path.join(scratch, "page-with-sku.sql")
        with open(plain, "w") as f:
            f.write(TOKEN_LOOKUP_SQL + PAGE_WITH_SKU_SQL)
        script = os.path.join(scratch, "graphql.lua")
        body = json.dumps({"query": GRAPHQL_PAGE})
        with open(script, "w") as f:
            f.write(f'wrk.method = "POST"\nwrk.body = {json.dumps(body)}\nwrk.headers["Content-Type"] = "application/json"\n')
        api = Api(url, scratch)
        try:
            rest = api.expect(200, "GET", "/v1/batches?limit=50", token)
            answer = api.expect(200, "POST", "/graphql", token, {"query": GRAPHQL_PAGE})
            if answer.get("errors"):
                raise RuntimeError(f"the GraphQL page has errors: {answer['errors']}")
            connection = answer["data"]["batches"]
            ids = [edge["node"]["id"] for edge in connection["edges"]]
            skus = {product["id"]: product["sku"] for product in api.expect(200, "GET", "/v1/products?limit=200", token)["items"]}
            if ids != [item["id"] for item in rest["items"]] or connection["pageInfo"]["endCursor"] != rest["next_cursor"]:
                raise RuntimeError("the GraphQL page is not REST's first page")
            if any(edge["node"]["product"]["sku"] != skus[edge["node"]["productId"]] for edge in connection["edges"]):
                raise RuntimeError("a batch's product SKU differs from REST's")
            measures = {
                "graphql": lambda seconds: run_wrk(f"{api.base}/graphql", token, seconds, script),
                "rest": lambda seconds: run_wrk(f"{api.base}/v1/batches?limit=50", token, seconds),
                "plain": lambda seconds: run_pgbench(url, plain, variables, seconds, scratch),
            }
            for measure in measures.values():
                measure(WARMUP_SECONDS)
            results = {name: [] for name in measures}
            for round_ in range(runs):
                order = list(measures) if round_ % 2 == 0 else list(reversed(measures))
                for name in order:
                    results[name].append(measures[name](LOAD_SECONDS))
                    print(f"  round {round_ + 1}/{runs} {name}: {results[name][-1][0]:.0f}/s, p99 {results[name][-1][1]:.2f} ms", flush=True)
        finally:
            api.stop()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    median = {name: (statistics.median(r[0] for r in rs), statistics.median(r[1] for r in rs)) for name, rs in results.items()}
    plain_tool = f"pgbench -M prepared -c {CONNECTIONS} -j {THREADS}: token lookup + the page joined to its SKUs, by hand"
    return [
        {
            "figure": f"POST /graphql batches(first: 50) with product {{ sku }}, {CONNECTIONS} connections (req/s, median of {runs})",
            "ours": round(median["graphql"][0], 1),
            "baseline": round(median["rest"][0], 1),
            "baseline_tool": "REST's GET /v1/batches?limit=50 on the same api, same rounds (issue 17's comparison; not a tool baseline)",
            "ratio": round(median["graphql"][0] / median["rest"][0], 2),
        },
        {
            "figure": f"POST /graphql p99 latency (ms, median of {runs})",
            "ours": round(median["graphql"][1], 2),
            "baseline": round(median["rest"][1], 2),
            "baseline_tool": "that REST run's p99",
            "ratio": round(median["graphql"][1] / median["rest"][1], 2),
        },
        {
            "figure": f"POST /graphql batches(first: 50) with product {{ sku }} (req/s, median of {runs})",
            "ours": round(median["graphql"][0], 1),
            "baseline": round(median["plain"][0], 1),
            "baseline_tool": plain_tool + " (tps)",
            "ratio": round(median["graphql"][0] / median["plain"][0], 2),
        },
    ]


def metrics_text(service):
    with urllib.request.urlopen(f"{service.base}/metrics", timeout=10) as response:
        return response.read().decode()


SCENARIOS = {"startup": scenario_startup, "storage-put": scenario_storage_put, "api-list": scenario_api_list,
             "graphql-list": scenario_graphql_list, "upload": scenario_upload,
             "export": scenario_export, "jobs": scenario_jobs, "scheduler": scenario_scheduler, "backup": scenario_backup}


def machine():
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as info:
            cpu = next(line.split(":", 1)[1].strip() for line in info if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    commit = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    return {"cpus": os.cpu_count(), "cpu": cpu, "kernel": platform.release(), "commit": commit}


def render(results):
    lines = [
        "# Benchmarks",
        "",
        "Written by `make bench` (`bench/run.py`) from `bench/results.json`; do not edit by hand.",
        "Each figure stands beside a baseline measured in the same run on the same machine;",
        "ratio = ours / baseline (for times and memory, lower is better; for throughput, higher is better).",
        "",
    ]
    for name, result in sorted(results.items()):
        doc = " ".join(line.strip() for line in (SCENARIOS[name].__doc__ or "").strip().splitlines()) if name in SCENARIOS else ""
        m = result["machine"]
        lines += [
            f"## {name}",
            "",
            doc,
            "",
            f"Run {result['at']} at commit `{m['commit']}` on {m['cpus']} CPUs ({m['cpu']}), kernel {m['kernel']}.",
            "",
            "| figure | ours | baseline | ratio | baseline tool |",
            "|---|---:|---:|---:|---|",
        ]
        lines += [f"| {r['figure']} | {r['ours']} | {r['baseline']} | {r['ratio']} | {r['baseline_tool']} |" for r in result["rows"]]
        lines.append("")
    return "\n".join(lines)


def shrink_for_quick_run():
    """`--quick`: every scenario at a size that takes seconds, on databases
    of their own (so the full seeds are kept), to prove each still runs from
    start to end. `make test` runs it on debug binaries; its figures say
    nothing and are not kept."""
    global PUT_BYTES, LOAD_SECONDS, WARMUP_SECONDS, SEED_BATCHES_PER_ORG, SEED_MARKER, LIST_DB, UPLOAD_DB
    global UPLOAD_BYTES, EXPORT_BATCHES, EXPORT_MARKER, EXPORT_DB, JOBS, JOBS_DB, SCHEDULES, SCHEDULER_DB, IDLE_SECONDS
    global BACKUP_MEDIA_FILES, BACKUP_MEDIA_FILE_BYTES, BACKUP_MEDIA_DB, BACKUP_DB
    PUT_BYTES = UPLOAD_BYTES = 16 << 20
    LOAD_SECONDS, WARMUP_SECONDS = 2, 1
    SEED_BATCHES_PER_ORG = 2_000
    SEED_MARKER = SEED_MARKER.rsplit(" x ", 1)[0] + f" x {SEED_BATCHES_PER_ORG} batches"
    EXPORT_BATCHES = 2_000
    EXPORT_MARKER = EXPORT_MARKER.rsplit(" x ", 1)[0] + f" x {EXPORT_BATCHES} batches"
    JOBS = 200
    SCHEDULES, IDLE_SECONDS = 500, 3
    BACKUP_MEDIA_FILES, BACKUP_MEDIA_FILE_BYTES = 20, 16 * 1024
    BACKUP_MEDIA_DB, BACKUP_DB = f"{BACKUP_MEDIA_DB}_quick", f"{BACKUP_DB}_quick"
    LIST_DB, UPLOAD_DB, EXPORT_DB, JOBS_DB, SCHEDULER_DB = (
        f"{name}_quick" for name in (LIST_DB, UPLOAD_DB, EXPORT_DB, JOBS_DB, SCHEDULER_DB))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenarios", nargs="*", help=f"any of {', '.join(SCENARIOS)} (default: all)")
    parser.add_argument("--runs", type=int, default=5, help="repetitions per figure (default 5)")
    parser.add_argument("--quick", action="store_true",
                        help="one short round of each scenario at a small size, to check they run; figures are printed, not kept")
    args = parser.parse_args()
    unknown = [name for name in args.scenarios if name not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)}")
    if args.quick:
        shrink_for_quick_run()
        args.runs = 1
    results = {}
    if os.path.exists(RESULTS):
        with open(RESULTS) as f:
            results = json.load(f)
    for name in args.scenarios or SCENARIOS:
        print(f"== {name} (load average before: {os.getloadavg()[0]:.2f})", flush=True)
        started = time.perf_counter()
        rows = SCENARIOS[name](args.runs)
        for r in rows:
            print(f"  {r['figure']:<54} ours {r['ours']:>8}  baseline {r['baseline']:>8}  ratio {r['ratio']:>6}  ({r['baseline_tool']})")
        print(f"  ({name} took {time.perf_counter() - started:.0f} s)", flush=True)
        results[name] = {"at": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(), "rows": rows}
    if args.quick:
        print("quick run: every scenario ran; its figures are not kept")
        return
    with open(RESULTS, "w") as f:
        json.dump(results, f, indent=2)
        f.write("\n")
    with open(REPORT, "w") as f:
        f.write(render(results))
    print(f"wrote {os.path.relpath(RESULTS, ROOT)} and {os.path.relpath(REPORT, ROOT)}")


if __name__ == "__main__":
    sys.exit(main())
