"""Benchmark of the Worker: tasks/s of ONE ``fluxfunc-worker`` process, records included.

Scenarios (each on a fresh namespace and SQLite store):
  * ``noop``: a function that returns ``None``, ``--concurrency 2``;
  * ``sleep10``: a function doing ``time.sleep(0.01)``, ``--concurrency 8``.

For each: publish the script straight into the store, enqueue N tasks (one pipeline per 500),
then start a real worker process and time from the first task's start (its record's
``startTime``) until the N-th task record is visible in the store. Worker start-up (spawning
children) is therefore not counted; completions, results, reply-free ``complete`` scripts and
batched task records are.

Starts its own private redis-server (from PATH) on a free port. The machine's load matters a
lot (2 cores shared by Redis, the worker, its children and this script): report the load.

    .venv/bin/python bench/worker.py [--tasks 20000] [--scenario noop|sleep10|all] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

import psutil
import yaml

from fluxfunc_common.envelope import Origin
from fluxfunc_common.proc.localredis import private_redis
from fluxfunc_common.redisconn import open_redis
from fluxfunc_common.scripts import analyse
from fluxfunc_common.settings import Settings
from fluxfunc_common.store import Entity, open_store
from fluxfunc_common.streams import StreamProtocol
from fluxfunc_common.tasks import build_envelope

CODE = '''
import time

@DFF.API("No-op")
def noop(i=0):
    return None

@DFF.API("Sleep 10 ms")
def sleep10(i=0):
    time.sleep(0.01)
'''

BENCH_SECRET = "bench-secret-0123456789abcdef0123456789"  # fluxfunc refuses < 32 bytes
SCENARIOS = {"noop": ("demo__bench.noop", 2), "sleep10": ("demo__bench.sleep10", 8)}
WORKER = str(Path(sys.executable).parent / "fluxfunc-worker")
PY_SPY = shutil.which("py-spy", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")


def worker_cpu(pid: int) -> tuple[float, float, float]:
    """CPU seconds (user, system) of the worker process and of its children, live or reaped
    (the zygote included): figures that, unlike tasks/s, hardly depend on what else the
    machine is doing."""
    proc = psutil.Process(pid)
    if proc.name().startswith("py-spy"):
        proc = proc.children()[0]
    own = proc.cpu_times()
    kids = own.children_user + own.children_system
    for child in proc.children():
        with suppress(psutil.Error):
            kids += sum(child.cpu_times()[:2])
    return own.user, own.system, kids


def cpu_seconds(pid: int) -> float:
    return float(sum(psutil.Process(pid).cpu_times()[:2]))


def record_count(db: Path) -> int:
    """Records so far, straight from the SQLite file: ``max(rowid)``, which a fresh table of
    inserts keeps equal to the count (``COUNT(*)`` scans the table: polled every 20 ms it would
    take a good part of a core from the worker being measured)."""
    with sqlite3.connect(db, timeout=10) as conn:
        (last,) = conn.execute("SELECT MAX(rowid) FROM task_records").fetchone()
    return int(last or 0)


def record_stats(db: Path) -> tuple[int, float | None]:
    """(records, earliest startTime)."""
    with sqlite3.connect(db, timeout=10) as conn:
        count, first = conn.execute("SELECT COUNT(*), MIN(start_time) FROM task_records").fetchone()
    return int(count), first


async def prepare(settings: Settings, func_id: str, tasks: int) -> None:
    async with open_redis(settings.redis) as clients, open_store(settings.store) as store:
        await store.create(Entity.SCRIPT_SET, {"id": "demo", "title": "demo"})
        await store.create(Entity.SCRIPT, {"id": "demo__bench", "scriptSetId": "demo", "code": CODE})
        await store.publish_script("demo__bench", CODE, analyse("demo__bench", CODE).funcs)
        await clients.main.incr(clients.keys.scripts_version())
        func = await store.get(Entity.FUNC, func_id)
        streams = StreamProtocol(clients.main, clients.keys)
        now = time.time()
        for start in range(0, tasks, 500):
            envs = [build_envelope(func, {"i": i}, origin=Origin.DIRECT, now=now, settings=settings.tasks)
                    for i in range(start, min(start + 500, tasks))]
            await streams.enqueue_many(envs, max_len=10**9)


def run_scenario(redis: tuple[str, int], name: str, tasks: int, log_level: str,
                 profile: str | None = None) -> dict[str, Any]:
    redis_url, redis_pid = redis
    func_id, concurrency = SCENARIOS[name]
    workdir = Path(tempfile.mkdtemp(prefix="fluxfunc-bench-worker-"))
    db = workdir / "store.db"
    settings = Settings.model_validate({
        "secret": BENCH_SECRET, "redis": {"url": redis_url, "namespace": "bench" + secrets.token_hex(4)},
        "store": {"url": f"sqlite:///{db}"}, "log": {"level": log_level, "format": "json"},
        "worker": {"queues": ["default"], "concurrency": concurrency},
    })
    asyncio.run(prepare(settings, func_id, tasks))
    config = workdir / "worker.yaml"
    data = settings.model_dump(mode="json")
    data["secret"] = BENCH_SECRET
    config.write_text(yaml.safe_dump(data))
    log = (workdir / "worker.log").open("wb")
    env = {**os.environ, "FLUXFUNC_STATE_DIR": str(workdir)}
    command = [WORKER, "--config", str(config), "--concurrency", str(concurrency)]
    if profile:  # py-spy (pip install py-spy): collapsed stacks of the worker process only
        if not PY_SPY:
            raise SystemExit("--profile needs py-spy (pip install py-spy)")
        command = [PY_SPY, "record", "--gil", "--format", "raw", "--rate", "250",
                   "-o", f"{profile}.{name}.txt", "--", *command]
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 60 + tasks / 100
        count, first = 0, None
        steady: tuple[int, tuple[float, float, float], float] | None = None
        while count < tasks:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit(f"{name}: only {count}/{tasks} records (see {workdir / 'worker.log'})")
            time.sleep(0.02)
            try:
                count = record_count(db)
            except sqlite3.OperationalError:
                continue
            if count and steady is None:  # running: CPU from here on excludes the start-up
                steady = count, worker_cpu(proc.pid), cpu_seconds(redis_pid)
        done = time.time()
        cpu = worker_cpu(proc.pid)
        redis_cpu = cpu_seconds(redis_pid)
        count, first = record_stats(db)
        if count != tasks:
            raise SystemExit(f"{name}: {count} records for {tasks} tasks")
    finally:
        proc.send_signal(signal.SIGINT if profile else signal.SIGTERM)
        proc.wait(30)
        log.close()
    elapsed = done - (first or done)
    shutil.rmtree(workdir, ignore_errors=True)
    n0, cpu0, redis0 = steady or (0, (0.0, 0.0, 0.0), 0.0)
    n = max(1, tasks - n0)
    return {"scenario": name, "tasks": tasks, "concurrency": concurrency,
            "seconds": round(elapsed, 3), "tasks_per_second": round(tasks / elapsed, 1),
            # whole life of the worker process (start-up included), as measured before
            "worker_cpu_us_per_task": round((cpu[0] + cpu[1]) / tasks * 1e6, 1),
            "worker_sys_us_per_task": round(cpu[1] / tasks * 1e6, 1),
            # while running (from the first record on): worker, its children, Redis
            "steady_worker_us_per_task": round((cpu[0] + cpu[1] - cpu0[0] - cpu0[1]) / n * 1e6, 1),
            "steady_children_us_per_task": round((cpu[2] - cpu0[2]) / n * 1e6, 1),
            "steady_redis_us_per_task": round((redis_cpu - redis0) / n * 1e6, 1),
            "load_average": [round(x, 2) for x in os.getloadavg()]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--scenario", choices=[*SCENARIOS, "all"], default="all")
    parser.add_argument("--log-level", default="INFO", help="worker log level (INFO logs every task)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each scenario (the machine is noisy)")
    parser.add_argument("--profile", metavar="PREFIX",
                        help="record the worker with py-spy into PREFIX.<scenario>.txt")
    args = parser.parse_args()
    names = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    results = []
    with private_redis(prefix="fluxfunc-bench-redis-") as server:
        assert server.proc is not None
        redis = (server.url, server.proc.pid)
        for name in names:
            tasks = args.tasks if name == "noop" else max(1, args.tasks // 4)
            for _ in range(args.repeat):
                results.append(run_scenario(redis, name, tasks, args.log_level, args.profile))
    if args.json:
        print(json.dumps(results, indent=2))
        return
    for r in results:
        print(f"{r['scenario']:8} concurrency {r['concurrency']}: {r['tasks']} tasks in {r['seconds']} s "
              f"= {r['tasks_per_second']:,.0f} tasks/s; worker CPU {r['worker_cpu_us_per_task']} µs/task "
              f"({r['worker_sys_us_per_task']} system); while running: worker "
              f"{r['steady_worker_us_per_task']}, children {r['steady_children_us_per_task']}, "
              f"Redis {r['steady_redis_us_per_task']} µs/task (load average {r['load_average']})")


if __name__ == "__main__":
    main()
