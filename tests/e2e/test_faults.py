"""Faults beyond SIGKILL, with real processes, real Redis and MariaDB, and the side effects
counted outside fluxfunc (a file each run appends to): a Redis restart runs no task twice, a
Redis stall loses no task record, a store outage loses and doubles no cron second, a worker
stopped past its lease has its stale child stopped, and ``/readyz`` tells the truth within its
own deadline throughout. Figures (how long recovery takes) are in ``bench/faults.py``."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

import pymysql
import pytest
from tests.conftest import MYSQL_HOST, MYSQL_PASSWORD, MYSQL_PORT, MYSQL_USER, RedisServer
from tests.e2e.faults import SCRIPT_ID, Deployment, Load, TcpProxy, effects, runs_by_n
from tests.processes import wait_for

from fluxfunc_common.proc.localredis import LocalRedis

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

# /readyz gives up on each dependency after 0.8 s; a client deadline of 5 s only tells
# "answered by its own deadline" from "hung on a socket timeout" (10 s) on a busy machine.
READY_DEADLINE = 5.0


@pytest.fixture
async def deployments(tmp_path: Path) -> AsyncIterator[Callable[..., Deployment]]:
    made: list[Deployment] = []

    def make(redis_url: str, store_url: str, **sections: dict[str, Any]) -> Deployment:
        d = Deployment(tmp_path, redis_url, store_url, sections)
        made.append(d)
        return d

    yield make
    for d in made:
        await d.close()


def _records(mysql_url: str) -> dict[str, str]:
    """task id → status of every task record in the test's database."""
    database = mysql_url.rsplit("/", 1)[1]
    conn = pymysql.connect(host=MYSQL_HOST, port=MYSQL_PORT, user=MYSQL_USER, password=MYSQL_PASSWORD,
                           database=database)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT id, status FROM task_records")
            return {str(i): str(s) for i, s in cur.fetchall()}
    finally:
        conn.close()


async def _all_succeed(d: Deployment, task_ids: list[str]) -> None:
    async def done() -> bool:
        for task_id in task_ids:
            if (await d.task(task_id))["status"] != "success":
                return False
        return True
    await wait_for(done, 120, 0.5, what="every accepted call succeeded")


async def _not_ready(d: Deployment, check: str) -> str:
    """/readyz is 503 by its own deadline, naming ``check`` as the failing one."""
    status, checks = await _readyz(d)
    assert status == 503 and checks[check] != "ok", (status, checks)
    return str(checks[check])


async def _readyz(d: Deployment) -> tuple[int, dict[str, Any]]:
    """(status, checks) of a ``/readyz`` that must answer within :data:`READY_DEADLINE`."""
    try:
        status, _, checks = await d.readyz(deadline=READY_DEADLINE)
    except TimeoutError:
        raise AssertionError(f"/readyz gave no answer within {READY_DEADLINE} s: it hung on a "
                             "dependency instead of giving up by its own deadline") from None
    return status, checks


async def test_redis_restart_with_aof_runs_no_task_twice(
        tmp_path: Path, mysql_url: str, deployments: Callable[..., Deployment]) -> None:
    """Redis SIGTERMed under load and restarted from its AOF 3 s later, one worker: the worker
    re-reads its own pending entries after the failed fetches and still completes them under
    its lease token. No call runs twice; no sync call answered 200 runs again."""
    redis = LocalRedis(tmp_path / "redis", persist=True)
    redis.start()
    try:
        d = deployments(redis.url, mysql_url,
                        worker={"concurrency": 2, "lease_seconds": 4, "reclaim_seconds": 1})
        await d.open()
        worker = d.start("fluxfunc_worker", "worker")
        await d.workers_ready(1)
        load = Load(d)
        load.start()
        await wait_for(lambda: _ran(d, 10), 60, what="the load running")
        await asyncio.to_thread(redis.stop)  # SIGTERM: Redis writes its AOF and exits
        assert "Redis" in await _not_ready(d, "redis")
        await asyncio.sleep(3)  # the fault itself: Redis stays down 3 s (not a wait for anything)
        await asyncio.to_thread(redis.start)
        target = len(runs_by_n(d.effects_path)) + 10
        await wait_for(lambda: _ran(d, target), 60, what="load after restart")
        await load.stop()
        await _all_succeed(d, [*load.accepted.values(), *load.answered.values()])
        runs = runs_by_n(d.effects_path)
        assert {n: c for n, c in runs.items() if c > 1} == {}, "a task ran twice"
        assert all(runs[n] == 1 for n in [*load.accepted, *load.answered])
        assert "result discarded" not in worker.output()
        assert (await d.readyz())[0] == 200
    finally:
        redis.stop()


async def _ran(d: Deployment, count: int) -> bool:
    return len(runs_by_n(d.effects_path)) >= count


async def test_redis_stall_loses_no_task_record(
        mysql_url: str, deployments: Callable[..., Deployment]) -> None:
    """Redis SIGSTOPped 10 s under load, two workers with a lease shorter than the stall: an
    outcome write that timed out is resolved when Redis is back, so every succeeded task —
    async, or a sync call answered 200 — has its task record."""
    private = RedisServer()
    private.start()
    try:
        d = deployments(private.url, mysql_url,
                        worker={"concurrency": 2, "lease_seconds": 6, "reclaim_seconds": 1})
        await d.open()
        d.start("fluxfunc_worker", "worker-a")
        d.start("fluxfunc_worker", "worker-b")
        await d.workers_ready(2)
        load = Load(d)
        load.start()
        await wait_for(lambda: _ran(d, 10), 60, what="the load running")
        assert private.proc is not None
        os.kill(private.proc.pid, signal.SIGSTOP)
        try:
            assert "no answer within" in await _not_ready(d, "redis")
            await asyncio.sleep(10)  # the fault itself: Redis stays stopped 10 s, past the leases
        finally:
            os.kill(private.proc.pid, signal.SIGCONT)
        target = len(runs_by_n(d.effects_path)) + 10
        await wait_for(lambda: _ran(d, target), 60, what="load after the stall")
        await load.stop()
        tasks = [*load.accepted.values(), *load.answered.values()]
        await _all_succeed(d, tasks)

        async def recorded() -> bool:
            records = await asyncio.to_thread(_records, mysql_url)
            return all(records.get(t) == "success" for t in tasks)
        await wait_for(recorded, 60, 0.5, what="a success record of every succeeded task")
        assert (await d.readyz())[0] == 200
    finally:
        private.stop()


async def test_store_outage_loses_and_doubles_no_cron_second(
        redis_server: RedisServer, mysql_url: str, deployments: Callable[..., Deployment]) -> None:
    """MariaDB unreachable (behind a proxy the test cuts) for 20 s, longer than the Beat's
    late-fire window (lease 3 s + 10 s): a ``* * * * * *`` job fires every second exactly
    once through it, and the fires' store claims are written after the heal."""
    with TcpProxy(MYSQL_HOST, MYSQL_PORT) as proxy:
        proxied = mysql_url.replace(f"{MYSQL_HOST}:{MYSQL_PORT}", f"127.0.0.1:{proxy.port}")
        d = deployments(redis_server.url, proxied, beat={"lease_seconds": 3},
                        worker={"concurrency": 2, "lease_seconds": 10})
        await d.open()
        d.start("fluxfunc_worker", "worker")
        d.start("fluxfunc_beat", "beat")
        await d.workers_ready(1)
        job = await d.call("POST", "/api/v1/cron-jobs", {
            "funcId": f"{SCRIPT_ID}.tick", "cronExpr": "* * * * * *",
            "kwargs": {"path": str(d.effects_path)}})
        await wait_for(lambda: _ticks_at_least(d, 3), 60, what="the job ticking")
        proxy.cut()
        cut_at = _last_tick_second(d)
        await _not_ready(d, "store")
        await asyncio.sleep(20)  # the fault itself: the store stays cut 20 s, past the late window
        proxy.heal()
        healed_at = cut_at + 21
        await wait_for(lambda: _ticks_at_least(d, 0, after=healed_at + 3), 60, what="ticks after the heal")
        seconds = Counter(e.trigger_ms // 1000 for e in effects(d.effects_path) if e.kind == "tick")
        window = range(cut_at - 1, healed_at + 3)
        assert {s: seconds[s] for s in window if seconds[s] != 1} == {}, "a cron second missing or doubled"

        async def claimed() -> bool:
            database = mysql_url.rsplit("/", 1)[1]
            rows = await asyncio.to_thread(_cron_fire_seconds, database, job["id"])
            return set(window) <= rows
        await wait_for(claimed, 30, 0.5, what="the outage's fires claimed in the store")
        assert (await d.readyz())[0] == 200


def _cron_fire_seconds(database: str, cron_id: str) -> set[int]:
    conn = pymysql.connect(host=MYSQL_HOST, port=MYSQL_PORT, user=MYSQL_USER, password=MYSQL_PASSWORD,
                           database=database)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT fire_ms FROM cron_fires WHERE cron_id = %s", (cron_id,))
            return {int(ms) // 1000 for (ms,) in cur.fetchall()}
    finally:
        conn.close()


async def _ticks_at_least(d: Deployment, count: int, *, after: int = 0) -> bool:
    ticks = [e for e in effects(d.effects_path) if e.kind == "tick" and e.trigger_ms // 1000 >= after]
    return len(ticks) >= max(count, 1)


def _last_tick_second(d: Deployment) -> int:
    return max(e.trigger_ms // 1000 for e in effects(d.effects_path) if e.kind == "tick")


async def test_worker_stopped_past_its_lease_has_its_stale_child_stopped(
        redis_server: RedisServer, tmp_path: Path, deployments: Callable[..., Deployment]) -> None:
    """The whole worker (parent and children) SIGSTOPped past its lease while a second worker
    reclaims and re-runs the task (allowed): on SIGCONT, the first renewal round finds the
    lease lost and the stale child is signalled — it stops writing within one renewal
    interval (plus slack for a busy machine) and never reaches its end."""
    heartbeat = 0.5
    d = deployments(redis_server.url, f"sqlite:///{tmp_path / 'store.db'}",
                    worker={"concurrency": 1, "lease_seconds": 2, "heartbeat_seconds": heartbeat,
                            "reclaim_seconds": 0.5})
    await d.open()
    a = d.start("fluxfunc_worker", "worker-a")
    await d.workers_ready(1)
    task = await d.call("POST", f"/api/v1/func/{SCRIPT_ID}.long",
                        {"kwargs": {"path": str(d.effects_path), "seconds": 8}, "options": {"async": True}})
    first = await wait_for(lambda: _beating_pids(d), 60, what="the task running on a")
    stale_pid = next(iter(first))
    d.start("fluxfunc_worker", "worker-b")
    await d.workers_ready(2)
    assert a.proc is not None
    os.killpg(a.proc.pid, signal.SIGSTOP)
    try:
        await wait_for(lambda: _beating_pids(d, not_pid=stale_pid), 60, what="b re-running the task")
        status, _ = await _readyz(d)  # a stopped worker is no dependency of the Server
        assert status == 200
    finally:
        os.killpg(a.proc.pid, signal.SIGCONT)
    resumed = time.time()
    await _all_succeed(d, [task["id"]])
    stale = [e for e in effects(d.effects_path) if e.pid == stale_pid]
    assert not [e for e in stale if e.kind == "end"], "the stale child ran to its end"
    # Counted in the child's own steps (one write per 0.1 s of its sleep), not in wall-clock
    # time: on a busy machine the child slows down along with its worker. One renewal interval
    # is heartbeat / 0.1 steps; twice that is allowed.
    steps_after = sum(1 for e in stale if e.at > resumed)
    after = max(e.at for e in stale) - resumed
    assert steps_after <= 2 * heartbeat / 0.1, (
        f"the stale child ran {steps_after} more steps ({after:.2f} s) after the worker resumed")
    assert "lease lost" in a.output()


async def _beating_pids(d: Deployment, *, not_pid: int = 0) -> set[int]:
    return {e.pid for e in effects(d.effects_path) if e.kind == "beat" and e.pid != not_pid}


# --- a store that cannot write ---------------------------------------------------------------------


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 2 MB tmpfs mounted under the test's temp dir (root only), unmounted afterwards."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tiny filesystem needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True, check=False)


def _fill(path: Path) -> None:
    with suppress(OSError), path.open("wb") as f:
        while True:
            f.write(b"\0" * 65536)
            f.flush()


async def test_sqlite_on_a_full_disk_is_not_ready(
        redis_server: RedisServer, tiny_disk: Path, deployments: Callable[..., Deployment]) -> None:
    """SQLite on a full disk answers reads but cannot commit: /readyz is 503 naming the
    store write, by its own deadline, and 200 again once there is room; /healthz stays 200."""
    d = deployments(redis_server.url, f"sqlite:///{tiny_disk / 'store.db'}")
    await d.open()
    assert (await d.readyz())[0] == 200
    filler = tiny_disk / "filler"
    await asyncio.to_thread(_fill, filler)

    async def full() -> bool:
        status, checks = await _readyz(d)
        return status == 503 and checks["store"] == "ok" and "full" in checks["storeWrite"]
    await wait_for(full, 30, 0.2, what="/readyz naming the store that cannot write")
    assert (await d.get("/healthz")).status == 200
    filler.unlink()
    await wait_for(lambda: _ready(d), 30, 0.2, what="/readyz ready again")


async def _ready(d: Deployment) -> bool:
    return (await d.readyz())[0] == 200
