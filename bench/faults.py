"""Faults beyond SIGKILL: how long recovery takes, and what is lost or doubled (nothing).

Each scenario starts real ``fluxfunc-server`` / ``-worker`` / ``-beat`` processes (the helpers
of ``tests/e2e/faults.py``) on a private redis-server and a fresh MariaDB database (behind a
TCP proxy for the store outage), puts a load on them — async calls at 10/s plus 4 sync
callers, each call a 0.3 s function that appends a line to a file — injects the fault, and
prints what it measured:

* ``redis-restart``: Redis SIGTERMed (AOF on), restarted 3 s later, one worker;
* ``redis-stall``: Redis SIGSTOPped 10 s, two workers (lease 6 s);
* ``store-outage``: MariaDB unreachable 20 s, a ``* * * * * *`` cron job (Beat lease 3 s);
* ``worker-stop``: a worker (parent and children) SIGSTOPped 5 s past its 2 s lease while a
  second one takes over its task.

``/readyz`` is probed during every fault. Needs MariaDB on 127.0.0.1:3306 (root, no
password; ``FF_TEST_MYSQL_*`` as for the tests). Run from the repository root:

    .venv/bin/python bench/faults.py [--scenario redis-restart|redis-stall|store-outage|worker-stop|all]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import secrets
import shutil
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pymysql

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # the repository root: the test helpers

from tests.e2e.faults import SCRIPT_ID, Deployment, Load, TcpProxy, effects, runs_by_n
from tests.processes import wait_for

from fluxfunc_common.lifecycle import sleep_or_stop
from fluxfunc_common.proc.localredis import LocalRedis

MYSQL = {"host": os.environ.get("FF_TEST_MYSQL_HOST", "127.0.0.1"),
         "port": int(os.environ.get("FF_TEST_MYSQL_PORT", "3306")),
         "user": os.environ.get("FF_TEST_MYSQL_USER", "root"),
         "password": os.environ.get("FF_TEST_MYSQL_PASSWORD", "")}


def _mysql(sql: str, database: str | None = None) -> list[Any]:
    conn = pymysql.connect(**MYSQL, database=database, autocommit=True)  # type: ignore[arg-type]
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return list(cur.fetchall())
    finally:
        conn.close()


@asynccontextmanager
async def setup(redis_persist: bool = False,
                proxy: bool = False) -> AsyncIterator[tuple[Path, LocalRedis, str, str, TcpProxy | None]]:
    """A temp dir, a private Redis, a fresh database (its URL, direct or through a proxy)."""
    tmp = Path(tempfile.mkdtemp(prefix="fluxfunc-faults-"))
    redis = LocalRedis(tmp / "redis", persist=redis_persist)
    redis.start()
    database = "fluxfunc_bench_" + secrets.token_hex(5)
    _mysql(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    tcp = TcpProxy(MYSQL["host"], MYSQL["port"]).__enter__() if proxy else None
    host, port = ("127.0.0.1", tcp.port) if tcp else (MYSQL["host"], MYSQL["port"])
    auth = MYSQL["user"] + (f":{MYSQL['password']}" if MYSQL["password"] else "")
    try:
        yield tmp, redis, f"mysql://{auth}@{host}:{port}/{database}", database, tcp
    finally:
        if tcp:
            tcp.__exit__()
        redis.stop()
        _mysql(f"DROP DATABASE IF EXISTS `{database}`")
        shutil.rmtree(tmp, ignore_errors=True)


async def probe_ready(d: Deployment, stop: asyncio.Event, into: list[tuple[int, float]]) -> None:
    """/readyz once every 0.5 s until ``stop``: (status, seconds) each."""
    while not stop.is_set():
        status, took, _ = await d.readyz()
        into.append((status, took))
        await sleep_or_stop(stop, 0.5)


async def during(d: Deployment, fault: Callable[[], Awaitable[None]]) -> list[tuple[int, float]]:
    probes: list[tuple[int, float]] = []
    stop = asyncio.Event()
    prober = asyncio.create_task(probe_ready(d, stop, probes))
    try:
        await fault()
    finally:
        stop.set()
        await prober
    return probes


def ready_line(probes: list[tuple[int, float]]) -> str:
    statuses = Counter(s for s, _ in probes)
    return (f"/readyz during the fault: {dict(statuses)}, slowest answer "
            f"{max((t for _, t in probes), default=0):.2f} s")


def first_run_after(path: Path, at: float) -> float:
    later = [e.at for e in effects(path) if e.at >= at]
    return min(later) - at if later else float("nan")


async def redis_restart() -> list[str]:
    async with setup(redis_persist=True) as (tmp, redis, store, _, _):
        d = Deployment(tmp, redis.url, store, {"worker": {"concurrency": 2, "lease_seconds": 4,
                                                          "reclaim_seconds": 1}})
        try:
            await d.open()
            d.start("fluxfunc_worker", "worker")
            await d.workers_ready(1)
            load = Load(d)
            load.start()
            await asyncio.sleep(3)
            back = 0.0

            async def fault() -> None:
                nonlocal back
                await asyncio.to_thread(redis.stop)
                await asyncio.sleep(3)
                await asyncio.to_thread(redis.start)
                back = time.time()
            probes = await during(d, fault)
            await asyncio.sleep(4)
            await load.stop()
            await _all_done(d, [*load.accepted.values(), *load.answered.values()])
            twice = sum(1 for c in runs_by_n(d.effects_path).values() if c > 1)
            return [f"calls accepted {len(load.accepted)} async + {len(load.answered)} sync, "
                    f"refused (503/timeout) {load.refused}",
                    f"tasks run twice: {twice}",
                    f"first task run after Redis was back: {first_run_after(d.effects_path, back):.2f} s",
                    ready_line(probes)]
        finally:
            await d.close()


async def redis_stall() -> list[str]:
    async with setup() as (tmp, redis, store, database, _):
        d = Deployment(tmp, redis.url, store, {"worker": {"concurrency": 2, "lease_seconds": 6,
                                                          "reclaim_seconds": 1}})
        try:
            await d.open()
            d.start("fluxfunc_worker", "worker-a")
            d.start("fluxfunc_worker", "worker-b")
            await d.workers_ready(2)
            load = Load(d)
            load.start()
            await asyncio.sleep(3)
            back = 0.0

            async def fault() -> None:
                nonlocal back
                assert redis.proc is not None
                os.kill(redis.proc.pid, signal.SIGSTOP)
                await asyncio.sleep(10)
                os.kill(redis.proc.pid, signal.SIGCONT)
                back = time.time()
            probes = await during(d, fault)
            await asyncio.sleep(4)
            await load.stop()
            tasks = [*load.accepted.values(), *load.answered.values()]
            await _all_done(d, tasks)
            await asyncio.sleep(2)  # the last record batch
            records = dict(await asyncio.to_thread(_mysql, "SELECT id, status FROM task_records", database))
            missing = [t for t in tasks if records.get(t) != "success"]
            return [f"calls accepted {len(load.accepted)} async + {len(load.answered)} sync, "
                    f"refused (503/timeout) {load.refused}",
                    f"succeeded tasks without a record: {len(missing)}",
                    f"first task run after Redis resumed: {first_run_after(d.effects_path, back):.2f} s",
                    ready_line(probes)]
        finally:
            await d.close()


async def store_outage() -> list[str]:
    async with setup(proxy=True) as (tmp, redis, store, database, tcp):
        assert tcp is not None
        d = Deployment(tmp, redis.url, store, {"beat": {"lease_seconds": 3},
                                               "worker": {"concurrency": 2, "lease_seconds": 10}})
        try:
            await d.open()
            d.start("fluxfunc_worker", "worker")
            d.start("fluxfunc_beat", "beat")
            await d.workers_ready(1)
            job = await d.call("POST", "/api/v1/cron-jobs", {
                "funcId": f"{SCRIPT_ID}.tick", "cronExpr": "* * * * * *",
                "kwargs": {"path": str(d.effects_path)}})
            await asyncio.sleep(4)
            cut = time.time()
            healed = 0.0
            calls: list[int] = []

            async def fault() -> None:
                nonlocal healed
                tcp.cut()
                await asyncio.sleep(2)
                assert d.http is not None
                async with d.http.post(f"/api/v1/func/{SCRIPT_ID}.tick",
                                       json={"kwargs": {"path": "/dev/null"}}) as resp:
                    calls.append(resp.status)
                await asyncio.sleep(18)
                tcp.heal()
                healed = time.time()
            probes = await during(d, fault)
            ready_after = await _seconds_until(lambda: _is_ready(d))
            window = set(range(int(cut) - 1, int(healed) + 3))

            async def claimed() -> bool:
                rows = await asyncio.to_thread(
                    _mysql, f"SELECT fire_ms FROM cron_fires WHERE cron_id = '{job['id']}'", database)
                return window <= {int(ms) // 1000 for (ms,) in rows}
            claims_after = await _seconds_until(claimed, since=healed)
            await asyncio.sleep(4)
            seconds = Counter(e.trigger_ms // 1000 for e in effects(d.effects_path) if e.kind == "tick")
            bad = {s: seconds[s] for s in window if seconds[s] != 1}
            return [f"cron seconds in the outage window {len(window)}, missing or doubled: {len(bad)}",
                    f"a call during the outage answered {calls}",
                    f"store claims of the outage's fires written {claims_after:.2f} s after the heal",
                    f"/readyz 200 again {ready_after:.2f} s after the heal",
                    ready_line(probes)]
        finally:
            await d.close()


async def worker_stop() -> list[str]:
    async with setup() as (tmp, redis, _, _, _):
        heartbeat = 0.5
        d = Deployment(tmp, redis.url, f"sqlite:///{tmp / 'store.db'}",
                       {"worker": {"concurrency": 1, "lease_seconds": 2, "heartbeat_seconds": heartbeat,
                                   "reclaim_seconds": 0.5}})
        try:
            await d.open()
            a = d.start("fluxfunc_worker", "worker-a")
            await d.workers_ready(1)
            task = await d.call("POST", f"/api/v1/func/{SCRIPT_ID}.long",
                                {"kwargs": {"path": str(d.effects_path), "seconds": 8},
                                 "options": {"async": True}})
            await wait_for(lambda: _beats(d), 60)
            stale = next(iter(await _beats(d)))
            d.start("fluxfunc_worker", "worker-b")
            await d.workers_ready(2)
            assert a.proc is not None
            stopped = time.time()
            os.killpg(a.proc.pid, signal.SIGSTOP)
            await wait_for(lambda: _beats(d, not_pid=stale), 60)
            took_over = min(e.at for e in effects(d.effects_path) if e.pid != stale) - stopped
            await asyncio.sleep(max(0.0, 5 - (time.time() - stopped)))
            os.killpg(a.proc.pid, signal.SIGCONT)
            resumed = time.time()
            await _all_done(d, [task["id"]])
            after = max(e.at for e in effects(d.effects_path) if e.pid == stale) - resumed
            ended = any(e.kind == "end" for e in effects(d.effects_path) if e.pid == stale)
            return [f"second worker re-ran the task {took_over:.2f} s after the first was stopped "
                    f"(lease 2 s, reclaim every 0.5 s)",
                    f"stale child's last write {after:.2f} s after its worker resumed "
                    f"(renewal interval {heartbeat} s); ran to its end: {ended}"]
        finally:
            await d.close()


async def _beats(d: Deployment, *, not_pid: int = 0) -> set[int]:
    return {e.pid for e in effects(d.effects_path) if e.kind == "beat" and e.pid != not_pid}


async def _is_ready(d: Deployment) -> bool:
    return (await d.readyz())[0] == 200


async def _seconds_until(predicate: Callable[[], Awaitable[bool]], since: float | None = None) -> float:
    start = time.time() if since is None else since
    await wait_for(predicate, 120, 0.1)
    return time.time() - start


async def _all_done(d: Deployment, task_ids: list[str]) -> None:
    async def done() -> bool:
        for t in task_ids:
            if (await d.task(t))["status"] != "success":
                return False
        return True
    await wait_for(done, 180, 0.5, what="every accepted call succeeded")


SCENARIOS = {"redis-restart": redis_restart, "redis-stall": redis_stall,
             "store-outage": store_outage, "worker-stop": worker_stop}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", choices=[*SCENARIOS, "all"], default="all")
    args = parser.parse_args()
    print(f"load average: {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores")
    for name, scenario in SCENARIOS.items():
        if args.scenario in (name, "all"):
            lines = await scenario()
            print(f"\n{name}:")
            for line in lines:
                print(f"  {line}")


if __name__ == "__main__":
    asyncio.run(main())
