#!/usr/bin/env python3
"""Stockflow benchmarks: `make bench` (or `python3 bench/run.py [SCENARIO...]`).

Each scenario measures our figure and, in the same run on the same machine, a
baseline from a standard tool, and reports their ratio. Results accumulate in
bench/results.json (one entry per scenario, replaced when it runs again) and
docs/benchmarks.md is rendered from that file, so running one scenario keeps
the others' last results.

Needs `make services` and release binaries (`make bench` does both).
"""

import argparse
import datetime
import hashlib
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

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


def service_env(extra=None):
    env = {
        "PATH": os.environ.get("PATH", ""),
        "DATABASE_URL": DATABASE_URL,
        "AMQP_URL": AMQP_URL,
        "AMQP_NAMESPACE": "bench",
        "LOG_LEVEL": "warn",
        "LOG_FORMAT": "json",
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


SCENARIOS = {"startup": scenario_startup, "storage-put": scenario_storage_put}


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


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("scenarios", nargs="*", help=f"any of {', '.join(SCENARIOS)} (default: all)")
    parser.add_argument("--runs", type=int, default=5, help="repetitions per figure (default 5)")
    args = parser.parse_args()
    unknown = [name for name in args.scenarios if name not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(unknown)}")
    results = {}
    if os.path.exists(RESULTS):
        with open(RESULTS) as f:
            results = json.load(f)
    for name in args.scenarios or SCENARIOS:
        print(f"== {name}", flush=True)
        rows = SCENARIOS[name](args.runs)
        for r in rows:
            print(f"  {r['figure']:<54} ours {r['ours']:>8}  baseline {r['baseline']:>8}  ratio {r['ratio']:>6}  ({r['baseline_tool']})")
        results[name] = {"at": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "machine": machine(), "rows": rows}
    with open(RESULTS, "w") as f:
        json.dump(results, f, indent=2)
        f.write("\n")
    with open(REPORT, "w") as f:
        f.write(render(results))
    print(f"wrote {os.path.relpath(RESULTS, ROOT)} and {os.path.relpath(REPORT, ROOT)}")


if __name__ == "__main__":
    sys.exit(main())
