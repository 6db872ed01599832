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
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
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


SCENARIOS = {"startup": scenario_startup}


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
        "ratio = ours / baseline (for times and memory, lower is better).",
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
