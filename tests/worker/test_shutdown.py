"""Graceful shutdown of a real worker process: drain, release for immediate reclaim, second
signal, heartbeat and ``--check``."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import orjson
from tests.processes import wait_for
from tests.worker.conftest import WORK, WORK_CODE, WORKER, Bench, WorkerProcess, marks

from fluxfunc_common.envelope import TaskStatus
from fluxfunc_common.keys import GROUP


async def _started(path: Path, task_id: str) -> bool:
    return any(w == "start" and t == task_id for w, t, _ in marks(path))


async def test_sigterm_lets_the_running_task_finish_within_the_drain(
        bench: Bench, workers: Callable[..., WorkerProcess], tmp_path: Path) -> None:
    await bench.publish(WORK, WORK_CODE)
    out = tmp_path / "e.txt"
    w = workers("w", concurrency=1, drain_seconds=10)
    await w.ready(bench)
    task_id = await bench.enqueue(f"{WORK}.sleepy", {"path": str(out), "seconds": 3})
    waiting = await bench.enqueue(f"{WORK}.append", {"path": str(out)})  # never fetched: no slot
    await wait_for(lambda: _started(out, task_id), 15, what="task started")
    w.signal(signal.SIGTERM)
    assert await asyncio.to_thread(w.wait, 20) == 0
    result = await bench.streams.get_result(task_id)
    assert result is not None and result.status is TaskStatus.SUCCESS
    assert [what for what, t, _ in marks(out) if t == task_id] == ["start", "end"]
    assert await bench.streams.get_result(waiting) is None
    assert await bench.redis.xlen(bench.keys.queue("default")) == 1  # still queued, untouched
    assert (await bench.redis.xpending(bench.keys.queue("default"), GROUP))["pending"] == 0
    assert (await bench.record(task_id))["status"] == "success", "records flushed at exit"
    assert await bench.redis.keys(bench.keys.svc_pattern("worker")) == [], "heartbeat removed"


async def test_sigterm_with_a_short_drain_releases_to_another_worker(
        bench: Bench, workers: Callable[..., WorkerProcess], tmp_path: Path) -> None:
    await bench.publish(WORK, WORK_CODE)
    out = tmp_path / "e.txt"
    # A long lease on both: b can only take the entry this fast because a released it.
    a = workers("a", concurrency=1, drain_seconds=1, lease_seconds=30)
    await a.ready(bench)
    task_id = await bench.enqueue(f"{WORK}.sleepy", {"path": str(out), "seconds": 5})
    await wait_for(lambda: _started(out, task_id), 15, what="task started on a")
    # stopped at once (then b is started): however busy the machine, the task outlasts the drain
    a.signal(signal.SIGTERM)
    b = workers("b", lease_seconds=30)
    assert await asyncio.to_thread(a.wait, 30) == 0  # the drain (1 s) was cut: see "released" below
    released = [ln for ln in a.lines() if ln.get("event", "").startswith("released unfinished")]
    assert [(ln["released"], ln["tasks"]) for ln in released] == [(1, [task_id])], a.text()
    result = await bench.result(task_id, within=60)
    assert result.status is TaskStatus.SUCCESS
    # b took it by reclaiming the released entry (idle far past the lease), not as a fresh read
    assert any(ln.get("event") == "reclaimed entries" for ln in b.lines()), b.text()
    assert [what for what, t, _ in marks(out) if t == task_id] == ["start", "start", "end"]
    assert [ln["status"] for ln in b.task_lines() if ln["task_id"] == task_id] == ["success"]
    assert not a.task_lines()
    assert b.stop() == 0


async def test_a_second_signal_cuts_the_drain_short(bench: Bench, workers: Callable[..., WorkerProcess],
                                                    tmp_path: Path) -> None:
    await bench.publish(WORK, WORK_CODE)
    out = tmp_path / "e.txt"
    w = workers("w", concurrency=1, drain_seconds=60)
    await w.ready(bench)
    task_id = await bench.enqueue(f"{WORK}.sleepy", {"path": str(out), "seconds": 30})
    await wait_for(lambda: _started(out, task_id), 15, what="task started")
    w.signal(signal.SIGTERM)
    await wait_for(lambda: _logged(w, "stopping: draining running tasks"), 15, what="drain started")
    w.signal(signal.SIGINT)
    assert await asyncio.to_thread(w.wait, 60) == 0
    assert any(ln.get("event") == "second signal: drain cut short" for ln in w.lines()), w.text()
    assert [what for what, t, _ in marks(out) if t == task_id] == ["start"], "stopped, not waited for"
    stream = bench.keys.queue("default")
    [entry] = await bench.redis.xpending_range(stream, GROUP, "-", "+", 10)
    assert entry["time_since_delivered"] >= 10 * 2000, "released: idle far past the lease"
    assert await bench.streams.get_result(task_id) is None
    assert await bench.redis.get(bench.keys.running(task_id)) is None


async def test_check_is_true_only_while_the_heartbeat_is_fresh(
        bench: Bench, workers: Callable[..., WorkerProcess], tmp_path: Path) -> None:
    w = workers("w", "--queues", "alpha,beta", "--concurrency", "3")
    config = tmp_path / "w.yaml"
    env = {**os.environ, "FLUXFUNC_STATE_DIR": str(tmp_path / "state-w")}

    def check() -> int:
        return subprocess.run([WORKER, "--config", str(config), "--check"], env=env, timeout=30,
                              capture_output=True).returncode

    await w.ready(bench)
    assert await asyncio.to_thread(check) == 0
    [key] = await bench.redis.keys(bench.keys.svc_pattern("worker"))
    beat = orjson.loads(await bench.redis.get(key))
    assert beat["queues"] == ["alpha", "beta"] and beat["concurrency"] == 3
    assert beat["pid"] == w.pid and beat["role"] == "worker"
    assert w.stop() == 0
    assert await asyncio.to_thread(check) == 1


async def test_bad_flags_are_one_clear_line(tmp_path: Path, bench: Bench) -> None:
    config = bench.config("bad")
    proc = await asyncio.to_thread(subprocess.run, [WORKER, "--config", str(config), "--concurrency", "0"],
                                   capture_output=True, text=True, timeout=30)
    assert proc.returncode != 0
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "concurrency" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


async def test_sigterm_while_short_tasks_are_read_ahead_loses_and_repeats_nothing(
        bench: Bench, workers: Callable[..., WorkerProcess], tmp_path: Path) -> None:
    await bench.publish(WORK, WORK_CODE)
    out = tmp_path / "e.txt"
    ids = await bench.enqueue_many(f"{WORK}.append", [{"path": str(out), "i": i} for i in range(800)])
    a = workers("a", concurrency=2, read_ahead=True)
    await wait_for(lambda: _ran(out, 150), 30, interval=0.01, what="150 tasks run")
    a.signal(signal.SIGTERM)
    assert a.wait(20) == 0
    b = workers("b", concurrency=2)
    for task_id in ids:
        await bench.result(task_id, within=30)
    runs = [t for what, t, _ in marks(out) if what == "run"]
    assert sorted(runs) == sorted(ids), "every task ran exactly once"
    assert b.stop() == 0


async def _logged(w: WorkerProcess, event: str) -> bool:
    return any(ln.get("event") == event for ln in w.lines())


async def _ran(path: Path, n: int) -> bool:
    return sum(1 for what, _, _ in marks(path) if what == "run") >= n
