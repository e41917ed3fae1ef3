"""Execution in supervised children, with a real worker process: hard timeout, memory limit,
a child that dies, retries with backoff, ``async def``, cancellation and expiry."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import orjson
import psutil
from tests.processes import wait_for
from tests.worker.conftest import WORK, WORK_CODE, Bench, WorkerProcess, marks

from fluxfunc_common.envelope import TaskStatus


def children(proc: WorkerProcess) -> set[int]:
    """The worker's task children (not its zygote)."""
    return {c.pid for c in psutil.Process(proc.pid).children() if c.name() == "fluxfunc-child"}


async def test_timeout_kills_the_child_and_the_worker_serves_on(
        bench: Bench, workers: Callable[..., WorkerProcess], tmp_path: Path) -> None:
    await bench.publish(WORK, WORK_CODE)
    w = workers("w", concurrency=1)
    await w.ready(bench)
    before = children(w)
    task_id = await bench.enqueue(f"{WORK}.spin")
    result = await bench.result(task_id, within=30)
    assert result.status is TaskStatus.TIMEOUT  # stopped: the spin never ends by itself
    assert "timeout of 2 s" in (result.exception or "")
    # the run's own timestamps: never stopped before its timeout
    assert result.start_time and result.end_time and result.end_time - result.start_time >= 1.9
    nxt = await bench.enqueue(f"{WORK}.append", {"path": str(tmp_path / "e.txt")})
    assert (await bench.result(nxt)).status is TaskStatus.SUCCESS
    assert w.alive()
    assert children(w).isdisjoint(before), "the spinning child was replaced"
    assert w.stop() == 0


async def test_memory_limit_fails_the_task_and_the_worker_serves_on(
        bench: Bench, workers: Callable[..., WorkerProcess], tmp_path: Path) -> None:
    await bench.publish(WORK, WORK_CODE)
    w = workers("w", concurrency=1, max_memory_mb=64)
    await w.ready(bench)
    result = await bench.result(await bench.enqueue(f"{WORK}.hog", {"mb": 512}))
    assert result.status is TaskStatus.FAILURE
    assert "MemoryError" in (result.exception or "") and "max_memory_mb=64" in (result.exception or "")
    small = await bench.result(await bench.enqueue(f"{WORK}.hog", {"mb": 8}))
    assert small.status is TaskStatus.SUCCESS and small.result == 8 * 1024 * 1024
    assert w.alive()
    assert w.stop() == 0


async def test_a_child_that_exits_or_segfaults_fails_its_task_and_the_worker_serves_on(
        bench: Bench, workers: Callable[..., WorkerProcess], tmp_path: Path) -> None:
    await bench.publish(WORK, WORK_CODE)
    w = workers("w", concurrency=1)
    await w.ready(bench)
    result = await bench.result(await bench.enqueue(f"{WORK}.die"))
    assert result.status is TaskStatus.FAILURE
    assert result.exception == ("WorkerChildDied: worker child process exited with code 1 while "
                                "running the task")
    crash = await bench.result(await bench.enqueue(f"{WORK}.segfault"))
    assert crash.status is TaskStatus.FAILURE
    assert "killed by signal SIGSEGV" in (crash.exception or "")
    nxt = await bench.result(await bench.enqueue(f"{WORK}.aplus", {"x": 41}))
    assert nxt.status is TaskStatus.SUCCESS and nxt.result == 42  # async def works too
    assert w.alive()
    assert w.stop() == 0


async def test_retries_run_three_times_then_fail(bench: Bench, workers: Callable[..., WorkerProcess],
                                                 tmp_path: Path) -> None:
    await bench.publish(WORK, WORK_CODE)
    out = tmp_path / "e.txt"
    w = workers("w")
    await w.ready(bench)
    task_id = await bench.enqueue(f"{WORK}.flaky", {"path": str(out)})
    result = await bench.result(task_id, within=20)
    assert result.status is TaskStatus.FAILURE and result.attempt == 3
    assert result.exception == "ValueError: boom on attempt 3"
    assert "flaky" in (result.traceback or "")
    runs = [(t, attempt) for what, t, attempt in marks(out) if what == "run"]
    assert runs == [(task_id, 1), (task_id, 2), (task_id, 3)]
    lines = [ln for ln in w.task_lines() if ln["task_id"] == task_id]
    assert [ln["attempt"] for ln in lines] == [1, 2, 3]
    assert all("retry_in_ms" in ln for ln in lines[:2]) and "retry_in_ms" not in lines[2]
    assert 250 <= lines[0]["retry_in_ms"] <= 1000 and 500 <= lines[1]["retry_in_ms"] <= 2000
    assert (await bench.record(task_id))["attempt"] == 3
    assert w.stop() == 0


async def test_cancel_before_start_never_runs(bench: Bench, workers: Callable[..., WorkerProcess],
                                              tmp_path: Path) -> None:
    await bench.publish(WORK, WORK_CODE)
    out = tmp_path / "e.txt"
    task_id = await bench.enqueue(f"{WORK}.append", {"path": str(out)})
    await bench.redis.set(bench.keys.cancel(task_id), b"1", px=60_000)
    w = workers("w")
    result = await bench.result(task_id)
    assert result.status is TaskStatus.CANCELLED and "before it started" in (result.exception or "")
    assert marks(out) == []
    assert w.stop() == 0


async def test_cancel_of_a_running_task_stops_its_child(bench: Bench, workers: Callable[..., WorkerProcess],
                                                        tmp_path: Path) -> None:
    await bench.publish(WORK, WORK_CODE)
    out = tmp_path / "e.txt"
    w = workers("w", concurrency=1)
    await w.ready(bench)
    task_id = await bench.enqueue(f"{WORK}.sleepy", {"path": str(out), "seconds": 20})
    await wait_for(lambda: _started(out, task_id), 15, what="task started")
    async with bench.redis.pipeline(transaction=False) as pipe:  # what the Server's cancel does
        pipe.set(bench.keys.cancel(task_id), b"1", px=60_000)
        pipe.publish(bench.keys.events(), orjson.dumps({"type": "cancel", "taskId": task_id}))
        await pipe.execute()
    result = await bench.result(task_id, within=30)
    assert result.status is TaskStatus.CANCELLED and "while it ran" in (result.exception or "")
    assert [what for what, t, _ in marks(out) if t == task_id] == ["start"], "stopped, not run to its end"
    assert await bench.redis.get(bench.keys.running(task_id)) is None
    nxt = await bench.result(await bench.enqueue(f"{WORK}.append", {"path": str(out)}))
    assert nxt.status is TaskStatus.SUCCESS
    assert w.stop() == 0


async def test_expired_task_is_not_run(bench: Bench, workers: Callable[..., WorkerProcess],
                                       tmp_path: Path) -> None:
    await bench.publish(WORK, WORK_CODE)
    out = tmp_path / "e.txt"
    task_id = await bench.enqueue(f"{WORK}.append", {"path": str(out)}, expires=time.time() - 1)
    w = workers("w")
    result = await bench.result(task_id)
    assert result.status is TaskStatus.EXPIRED and "expired before it started" in (result.exception or "")
    assert marks(out) == []
    assert (await bench.record(task_id))["status"] == "expired"
    assert w.stop() == 0


async def _started(path: Path, task_id: str) -> bool:
    return any(w == "start" and t == task_id for w, t, _ in marks(path))


async def test_sync_caller_gets_a_reply_note_and_one_log_line(bench: Bench,
                                                               workers: Callable[..., WorkerProcess],
                                                               tmp_path: Path) -> None:
    """What the Server waits on: the reply note in its own stream, with the result inline."""
    await bench.publish(WORK, WORK_CODE)
    reply = await bench.streams.open_reply_stream("srv-test")
    w = workers("w")
    task_id = await bench.enqueue(f"{WORK}.aplus", {"x": 1, "y": 2}, reply_to=reply)
    notes: list = []

    async def noted() -> bool:
        _, got = await bench.streams.read_replies(reply, "0", block_ms=100)
        notes[:] = got
        return bool(got)

    await wait_for(noted, 15, what="reply note")
    [note] = notes
    assert (note.task_id, note.status) == (task_id, "success")
    assert note.result is not None and note.result.result == 3
    await wait_for(lambda: _line(w, task_id), 5, what="task log line")
    line = await _line(w, task_id)
    assert {k: line[k] for k in ("func_id", "origin", "status", "attempt")} == {
        "func_id": f"{WORK}.aplus", "origin": "direct", "status": "success", "attempt": 1}
    assert isinstance(line["duration_ms"], float) and line["level"] == "info"
    assert w.stop() == 0


async def _line(proc: WorkerProcess, task_id: str) -> dict | None:
    found = [ln for ln in proc.task_lines() if ln.get("task_id") == task_id]
    return found[0] if found else None


async def test_a_read_from_several_queues_bringing_more_entries_than_slots_runs_them_all(
        bench: Bench, workers: Callable[..., WorkerProcess], tmp_path: Path) -> None:
    """XREADGROUP's COUNT is per stream: an idle worker (one slot, blocked in its read) woken
    by entries landing on three queues at once (one transaction) gets three entries for its
    one slot; every one of them runs now, none waits for a reclaim."""
    await bench.publish(WORK, WORK_CODE)
    out = tmp_path / "effects.txt"
    w = workers("w", concurrency=1, lease_seconds=60)  # a dropped entry would wait a minute
    await w.ready(bench)
    task_ids = []
    for round_ in range(5):
        async with bench.redis.pipeline(transaction=True) as tx:
            for queue in ("default", "cron", "async"):
                env = await bench.envelope(f"{WORK}.append", {"path": str(out), "i": round_},
                                           queue=queue)
                tx.xadd(bench.keys.queue(queue), {"task": env.id, "func": env.func_id,
                                                  "origin": env.origin.value, "body": env.to_json()})
                task_ids.append(env.id)
            await tx.execute()
        for task_id in task_ids[-3:]:
            assert (await bench.result(task_id, within=30)).status is TaskStatus.SUCCESS
    assert "fetch failed" not in w.text()
    assert w.stop() == 0
