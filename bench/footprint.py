"""Footprint benchmark for docs/scaling.md ("What grows with what"): the memory one queued task,
one worker child and one waiting sync call cost, and the CPU per call, on the real services.

Starts what ``bench/httpload.py`` starts (a private redis-server, ``fluxfunc-server --processes N``,
one ``fluxfunc-worker`` with ``--concurrency 2``, a SQLite store, a no-op published with a sync
and an async API), then:

  - **per child**: each worker child's USS (memory no other process shares: what one more
    child adds) and PSS, and the worker process itself;
  - **per queued task**: with the worker stopped (SIGSTOP), ``--tasks`` simultaneous callers of
    the async API (``bench/peers/burst.py``): Redis ``used_memory`` growth per queued task, and
    the time until every caller had its answer (all enqueued);
  - **per waiting call**: with the worker still stopped, ``--calls`` simultaneous callers of the
    sync API; once every call is queued, the Server's RSS growth per waiting call; then the
    worker resumes and every call must be answered.

    .venv/bin/python bench/footprint.py [--tasks 5000] [--calls 2000] [--processes 1] [--json]

Figures from a busy machine: the load average is printed with them.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil
import redis
import yaml
from httpload import deployment

BENCH = Path(__file__).resolve().parent
BODY = '{"kwargs": {"i": 1}}'


def mb(n: float) -> float:
    return round(n / 1e6, 2)


def children(pid: int) -> dict[str, Any]:
    worker = psutil.Process(pid)
    kids = [p.memory_full_info() for p in worker.children(recursive=True)]
    own = worker.memory_full_info()
    return {"worker_rss_mb": mb(own.rss), "worker_uss_mb": mb(own.uss), "children": len(kids),
            "child_uss_mb": [mb(k.uss) for k in kids], "child_pss_mb": [mb(k.pss) for k in kids]}


def burst(url: str, callers: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, str(BENCH / "peers" / "burst.py"), url, "--callers",
                             str(callers), "--body", BODY, "--timeout", "120"], stdout=subprocess.PIPE)


def summary(proc: subprocess.Popen[bytes]) -> dict[str, Any]:
    out, _ = proc.communicate(timeout=300)
    return dict(json.loads(out.decode().strip().splitlines()[-1]))


def queued(r: redis.Redis, namespace: str) -> int:
    """Entries in every stream of the namespace (queues, delayed and reply streams aside)."""
    return sum(int(r.xlen(k)) for k in r.scan_iter(match=f"{namespace}:queue:*", _type="stream"))


def server_rss(pid: int) -> int:
    """RSS of the Server: the supervisor and its processes (``--processes``)."""
    proc = psutil.Process(pid)
    return sum(p.memory_info().rss for p in [proc, *proc.children(recursive=True)])


def server_cpu(pid: int) -> float:
    proc = psutil.Process(pid)
    return sum(sum(p.cpu_times()[:2]) for p in [proc, *proc.children(recursive=True)])


def measure(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    report: dict[str, Any] = {"loadavg_before": os.getloadavg()}
    with deployment(workdir, processes=args.processes) as (base, entry, pids):
        config = yaml.safe_load((workdir / "fluxfunc.yaml").read_text())
        r = redis.Redis.from_url(config["redis"]["url"])
        stream = config["redis"]["namespace"]
        report["per_child"] = children(pids["worker"])
        os.killpg(pids["worker"], signal.SIGSTOP)
        try:  # waiting calls first: the enqueue burst's connections would grow the heap first
            rss0, cpu0 = server_rss(pids["server"]), server_cpu(pids["server"])
            start = queued(r, stream)
            waiting = burst(f"{base}/api/v1/sync/{entry['sync']}", args.calls)
            deadline = time.monotonic() + 120
            while queued(r, stream) - start < args.calls and time.monotonic() < deadline:
                time.sleep(0.2)
            time.sleep(1.0)
            rss1 = server_rss(pids["server"])
            report["per_waiting_call"] = {
                "calls_queued": queued(r, stream) - start, "server_rss_mb_before": mb(rss0),
                "server_rss_mb_waiting": mb(rss1),
                "server_bytes": round((rss1 - rss0) / max(args.calls, 1)),
                "server_cpu_ms_per_call_to_queue": round(
                    (server_cpu(pids["server"]) - cpu0) * 1000 / max(args.calls, 1), 3)}
            os.killpg(pids["worker"], signal.SIGCONT)
            report["waiting_calls_answered"] = summary(waiting)
            os.killpg(pids["worker"], signal.SIGSTOP)
            before = int(r.info("memory")["used_memory"])
            start = queued(r, stream)
            report["enqueue_burst"] = summary(burst(f"{base}/api/v1/async/{entry['async']}", args.tasks))
            tasks = queued(r, stream) - start
            grown = int(r.info("memory")["used_memory"]) - before
            report["per_queued_task"] = {"tasks": tasks, "redis_bytes": round(grown / max(tasks, 1))}
        finally:
            os.killpg(pids["worker"], signal.SIGCONT)
    report["loadavg_after"] = os.getloadavg()
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--processes", type=int, default=1, help="fluxfunc-server --processes")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="fluxfunc-bench-footprint-"))
    try:
        report = measure(args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(report, indent=None if args.json else 2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
