"""Delivery guarantees with real worker processes: exactly-once runs across workers, reclaim
after SIGKILL, lease renewal of long tasks, lost leases, poison entries, free-slot reads,
queue priority and duplicate deliveries."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import orjson
from tests.processes import wait_for
from tests.worker.conftest import WORK, WORK_CODE, Bench, WorkerProcess, marks

from fluxfunc_common.envelope import TaskResult, TaskStatus
from fluxfunc_common.keys import GROUP
from fluxfunc_common.store import TaskRecordQuery


async def test_two_workers_run_1000_tasks_exactly_once(bench: Bench, workers: Callable[..., WorkerProcess],
                                                       tmp_path: Path) -> None:
    await bench.publish(WORK, WORK_CODE)
    a, b = workers("a"), workers("b")
    await a.ready(bench)
    await b.ready(bench)
    out = tmp_path / "effects.txt"
    ids = await bench.enqueue_many(f"{WORK}.append", [{"path": str(out), "i": i} for i in range(1000)])

    async def all_recorded() -> bool:
        page = await bench.store.list_task_records(
            TaskRecordQuery(filters={"funcId": f"{WORK}.append"}, limit=2000))
        return len(page.items) >= 1000

    await wait_for(all_recorded, 90, interval=0.2, what="1000 task records")
    runs = Counter(task for what, task, _ in marks(out) if what == "run")
    assert set(runs) == set(ids)
    assert set(runs.values()) == {1}, "a task ran more than once"
    page = await bench.store.list_task_records(TaskRecordQuery(filters={"funcId": f"{WORK}.append"},
                                                               limit=2000))
    assert {r["id"] for r in page.items} == set(ids)
    assert {r["status"] for r in page.items} == {"success"}
    a_lines, b_lines = a.task_lines(), b.task_lines()
    assert a_lines and b_lines, "both workers take part"
    assert len(a_lines) + len(b_lines) == 1000
    assert await bench.redis.xlen(bench.keys.queue("default")) == 0
    assert a.stop() == 0 and b.stop() == 0


async def test_sigkill_during_a_long_task_is_reclaimed_by_another_worker(
        bench: Bench, workers: Callable[..., WorkerProcess], tmp_path: Path) -> None:
    await bench.publish(WORK, WORK_CODE)
    out = tmp_path / "effects.txt"
    a = workers("a", concurrency=1)
    await a.ready(bench)
    long_id = await bench.enqueue(f"{WORK}.sleepy", {"path": str(out), "seconds": 3})
    await wait_for(lambda: _has(out, "start", long_id), 15, what="long task started on a")
    quick = [await bench.enqueue(f"{WORK}.append", {"path": str(out), "i": i}) for i in range(10)]
    # killed at once, before b exists: however slow b is to start, a cannot finish the task first
    a.kill()
    assert not await _has(out, "end", long_id)
    b = workers("b", concurrency=2)
    await b.ready(bench)
    result = await bench.result(long_id, within=30)
    assert result.status is TaskStatus.SUCCESS and result.result == 3
    for task_id in quick:
        assert (await bench.result(task_id)).status is TaskStatus.SUCCESS
    events = marks(out)
    assert [w for w, t, _ in events if t == long_id] .count("start") == 2  # a's run, then b's
    assert [w for w, t, _ in events if t == long_id].count("end") == 1
    assert Counter(t for w, t, _ in events if w == "run") == Counter(quick)
    assert not [ln for ln in a.task_lines() if ln["task_id"] == long_id]
    assert [ln["status"] for ln in b.task_lines() if ln["task_id"] == long_id] == ["success"]
    assert (await bench.record(long_id))["status"] == "success"
    assert b.stop() == 0


async def test_lease_renewal_keeps_a_task_longer_than_the_lease(
        bench: Bench, workers: Callable[..., WorkerProcess], tmp_path: Path) -> None:
    """lease 2 s, task 6 s, a second worker reclaiming every 0.3 s: never stolen."""
    await bench.publish(WORK, WORK_CODE)
    out = tmp_path / "effects.txt"
    a = workers("a", concurrency=1)
    await a.ready(bench)
    task_id = await bench.enqueue(f"{WORK}.sleepy", {"path": str(out), "seconds": 6})
    await wait_for(lambda: _has(out, "start", task_id), 15, what="task started")
    # the marker is set by the Worker as the child starts: wait for it, do not race the child
    raw = await wait_for(lambda: bench.redis.get(bench.keys.running(task_id)), 15,
                         what="the running marker is set when the task starts")
    marker = orjson.loads(raw)
    assert set(marker) >= {"consumer", "startTime", "attempt"} and marker["attempt"] == 1
    b = workers("b")
    await b.ready(bench)
    result = await bench.result(task_id, within=20)
    assert result.status is TaskStatus.SUCCESS
    assert [w for w, t, _ in marks(out) if t == task_id] == ["start", "end"]
    assert not b.task_lines()
    assert await bench.redis.get(bench.keys.running(task_id)) is None
    assert a.stop() == 0 and b.stop() == 0


async def test_lost_lease_stops_the_run_and_writes_nothing(
        bench: Bench, workers: Callable[..., WorkerProcess], tmp_path: Path) -> None:
    """Another consumer takes the entry (as a reclaim would) and keeps its lease: the worker's
    next renewal sees the loss, stops that child and never completes the task. When the other
    consumer goes quiet, the entry is reclaimed and the task completes once."""
    await bench.publish(WORK, WORK_CODE)
    out = tmp_path / "effects.txt"
    a = workers("a", concurrency=1)
    await a.ready(bench)
    task_id = await bench.enqueue(f"{WORK}.sleepy", {"path": str(out), "seconds": 2})
    await wait_for(lambda: _has(out, "start", task_id), 15, what="task started")
    stream = bench.keys.queue("default")
    entry = (await bench.redis.xpending_range(stream, GROUP, "-", "+", 10))[0]["message_id"]
    await bench.redis.xclaim(stream, GROUP, "thief", 0, [entry])
    deadline = time.monotonic() + 2.5
    while time.monotonic() < deadline:  # the thief renews its lease like a live worker
        await bench.redis.xclaim(stream, GROUP, "thief", 0, [entry], justid=True)
        await asyncio.sleep(0.3)
    assert await _logged(a, "lease lost")
    assert await bench.streams.get_result(task_id) is None
    assert [w for w, t, _ in marks(out) if t == task_id] == ["start"], "the child was stopped"
    result = await bench.result(task_id, within=20)  # the thief went quiet: reclaimed
    assert result.status is TaskStatus.SUCCESS
    assert [w for w, t, _ in marks(out) if t == task_id] == ["start", "start", "end"]
    # the task line follows the completion: it may land in the log just after the result
    await wait_for(lambda: _task_lines(a, task_id), 15, what="task line")
    assert a.stop() == 0
    assert [ln["status"] for ln in a.task_lines() if ln["task_id"] == task_id] == ["success"]


async def test_poison_entry_ends_in_the_dead_letters(bench: Bench,
                                                     workers: Callable[..., WorkerProcess]) -> None:
    """A function that SIGKILLs its worker every time: after max_deliveries it is dead."""
    await bench.publish(WORK, WORK_CODE)
    task_id = await bench.enqueue(f"{WORK}.poison")
    started: list[WorkerProcess] = []
    result: TaskResult | None = None
    for n in range(6):
        w = workers(f"w{n}", concurrency=1, lease_seconds=1, max_deliveries=2)
        started.append(w)
        deadline = time.monotonic() + 20
        while w.alive() and time.monotonic() < deadline:
            result = await bench.streams.get_result(task_id)
            if result is not None:
                break
            await asyncio.sleep(0.1)
        if result is not None:
            break
    assert result is not None and result.status is TaskStatus.DEAD
    assert "FuncDead" in (result.exception or "") and "max_deliveries=2" in (result.exception or "")
    assert len(started) == 3, "delivered twice (two workers killed), dead-lettered on the third"
    letters = await bench.streams.dead_letters()
    assert [(d["task"], d["count"]) for d in letters] == [(task_id, "3")]
    assert "max deliveries" in letters[0]["reason"]
    assert (await bench.record(task_id))["status"] == "dead"
    assert started[-1].alive()
    assert started[-1].stop() == 0


async def test_reads_no_more_than_free_slots(bench: Bench, workers: Callable[..., WorkerProcess],
                                            tmp_path: Path) -> None:
    await bench.publish(WORK, WORK_CODE)
    out = tmp_path / "effects.txt"
    ids = await bench.enqueue_many(f"{WORK}.sleepy", [{"path": str(out), "seconds": 0.4}] * 8)
    w = workers("w", concurrency=2)
    await w.ready(bench)
    stream = bench.keys.queue("default")
    seen = []
    while not all([await bench.streams.get_result(t) for t in ids]):
        summary = await bench.redis.xpending(stream, GROUP)
        seen.append(int(summary["pending"]))
        await asyncio.sleep(0.02)
    assert max(seen) <= 2 and max(seen) >= 1
    assert w.stop() == 0


async def test_queues_are_read_in_priority_order(bench: Bench, workers: Callable[..., WorkerProcess],
                                                 tmp_path: Path) -> None:
    await bench.publish(WORK, WORK_CODE)
    out = tmp_path / "effects.txt"
    low = await bench.enqueue_many(f"{WORK}.append", [{"path": str(out)}] * 5, queue="low")
    high = await bench.enqueue_many(f"{WORK}.append", [{"path": str(out)}] * 5, queue="high")
    w = workers("w", "--queues", "high,low", concurrency=1)
    for task_id in low + high:
        await bench.result(task_id)
    order = [t for what, t, _ in marks(out) if what == "run"]
    assert order == high + low
    assert w.stop() == 0


async def test_a_delivery_of_a_completed_task_is_acked_not_run(
        bench: Bench, workers: Callable[..., WorkerProcess], tmp_path: Path) -> None:
    await bench.publish(WORK, WORK_CODE)
    out = tmp_path / "effects.txt"
    env = await bench.envelope(f"{WORK}.append", {"path": str(out)})
    earlier = TaskResult.for_envelope(env, TaskStatus.SUCCESS, result="earlier run")
    await bench.redis.set(bench.keys.result(env.id), earlier.to_json(), px=60_000)
    await bench.streams.enqueue(env, max_len=1000)
    w = workers("w")
    await w.ready(bench)
    await wait_for(lambda: _logged(w, "duplicate delivery acked"), 10, what="duplicate acked")
    assert await bench.redis.xlen(bench.keys.queue("default")) == 0
    assert (await bench.streams.get_result(env.id)).result == "earlier run"  # type: ignore[union-attr]
    assert marks(out) == []
    assert w.stop() == 0


async def _has(path: Path, what: str, task_id: str) -> bool:
    return any(w == what and t == task_id for w, t, _ in marks(path))


async def _task_lines(proc: WorkerProcess, task_id: str) -> bool:
    return any(line["task_id"] == task_id for line in proc.task_lines())


async def _logged(proc: WorkerProcess, event: str) -> bool:
    return any(line.get("event", "").startswith(event) for line in proc.lines())


async def test_short_tasks_read_ahead_at_most_one_entry_per_child(
        bench: Bench, workers: Callable[..., WorkerProcess], tmp_path: Path) -> None:
    await bench.publish(WORK, WORK_CODE)
    out = tmp_path / "effects.txt"
    w = workers("w", concurrency=2, read_ahead=True)
    await w.ready(bench)  # then enqueue: a worker that is quicker to start than the probe
    ids = await bench.enqueue_many(f"{WORK}.append", [{"path": str(out), "i": i} for i in range(1500)])
    stream = bench.keys.queue("default")
    seen = []
    while not await bench.streams.get_result(ids[-1]):
        seen.append(int((await bench.redis.xpending(stream, GROUP))["pending"]))
        await asyncio.sleep(0.002)
    assert max(seen) <= 4, "two running, at most one more per child waiting in the worker"
    assert max(seen) > 2, "short tasks are read ahead"
    for task_id in ids:
        await bench.result(task_id)
    runs = Counter(task for what, task, _ in marks(out) if what == "run")
    assert set(runs) == set(ids) and set(runs.values()) == {1}
    assert w.stop() == 0
