"""``async def`` functions share a child: many at once on its event loop, each with its own
timeout, cancel, print output, DFF context and report (docs/worker.md, Async functions)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import orjson
from tests.processes import wait_for
from tests.worker.conftest import WORK, WORK_CODE, Bench, WorkerProcess, marks

from fluxfunc_common.envelope import TaskStatus

ASYNC = "demo__asyncw"
ASYNC_CODE = '''
import asyncio
import os

RUNNING = {"now": 0, "peak": 0}


def _mark(path, what):
    # DFF.TASK(): this task's own context (module globals are the last started task's)
    with open(path, "a") as f:
        f.write(f"{what} {DFF.TASK()['_DFF_TASK_ID']} {DFF.TASK()['_DFF_ATTEMPT']}\\n")


@DFF.API("Overlap")
async def overlap(i, seconds=0.5):
    RUNNING["now"] += 1
    RUNNING["peak"] = max(RUNNING["peak"], RUNNING["now"])
    print(f"start {i}")
    try:
        await asyncio.sleep(seconds)
        print(f"end {i}")
        return {"i": i, "peak": RUNNING["peak"], "pid": os.getpid()}
    finally:
        RUNNING["now"] -= 1


@DFF.API("Short fuse", timeout=1)
async def fuse(path, seconds=30):
    _mark(path, "start")
    try:
        await asyncio.sleep(seconds)
    finally:
        _mark(path, "finally")
    return os.getpid()


@DFF.API("Long nap", timeout=60)
async def nap(path, seconds=2.0):
    me = _DFF_TASK_ID  # before the first await: still this task's
    _mark(path, "start")
    await asyncio.sleep(seconds)
    _mark(path, "end")
    assert DFF.TASK()["_DFF_TASK_ID"] == me
    return os.getpid()


@DFF.API("Uses DFF")
async def uses_dff(value):
    await DFF.aio.CACHE.set("k", value)
    got = await DFF.aio.CACHE.get("k")
    plain = DFF.CACHE.get("k")  # the blocking form works too (it holds the loop meanwhile)
    added = await DFF.aio.FUNC("add_one", {"x": 41}, wait=20)
    task_id = await DFF.aio.FUNC("add_one", {"x": 1})
    return {"got": got, "plain": plain, "added": added, "child": task_id}


@DFF.API("Add one")
async def add_one(x):
    await asyncio.sleep(0.05)
    return x + 1


@DFF.API("Raises")
async def raises(x):
    await asyncio.sleep(0.01)
    raise ValueError(f"bad x {x}")


@DFF.API("Grows")
async def grows(mb, seconds=10):
    block = bytearray(mb * 1024 * 1024)  # touched: resident
    await asyncio.sleep(seconds)
    return len(block)


@DFF.API("No threads")
async def no_threads():
    try:
        DFF.THREAD.submit(print, "x")
    except RuntimeError as exc:
        return str(exc)
    return "submitted"


@DFF.API("Patient", retries=1)
async def patient(seconds=5):
    if _DFF_ATTEMPT == 1:
        await asyncio.sleep(seconds)
    return DFF.TASK()["_DFF_ATTEMPT"]


@DFF.API("Exits")
async def exits():
    await asyncio.sleep(0.01)
    raise SystemExit(3)


@DFF.API("Dies")
async def dies(after=0.3):
    await asyncio.sleep(after)
    os._exit(1)
'''


async def test_async_tasks_run_together_in_one_child_with_their_own_print_output(
        bench: Bench, workers: Callable[..., WorkerProcess]) -> None:
    await bench.publish(ASYNC, ASYNC_CODE)
    w = workers("w", concurrency=1, async_per_child=100)
    await w.ready(bench)
    ids = await bench.enqueue_many(f"{ASYNC}.overlap", [{"i": i, "seconds": 1.0} for i in range(50)])
    results = [await bench.result(t) for t in ids]
    assert all(r.status is TaskStatus.SUCCESS for r in results), [r.exception for r in results]
    peak = max(r.result["peak"] for r in results)
    # one child, 50 tasks of 1 s: run one at a time the peak would be 1
    assert peak >= 25, f"at most {peak} async tasks ran at once"
    assert len({r.result["pid"] for r in results}) == 1
    for i, r in enumerate(results):  # each task's own lines, though they interleaved
        assert r.print_logs == f"start {i}\nend {i}\n"
    lines = [line for line in w.task_lines() if line["func_id"] == f"{ASYNC}.overlap"]
    assert len(lines) == 50 and {line["status"] for line in lines} == {"success"}
    record = await bench.record(ids[0])
    assert record["status"] == "success"
    assert w.stop() == 0


async def test_a_timeout_cancels_that_task_only(bench: Bench, workers: Callable[..., WorkerProcess],
                                                tmp_path: Path) -> None:
    await bench.publish(ASYNC, ASYNC_CODE)
    out = tmp_path / "e.txt"
    w = workers("w", concurrency=1)
    await w.ready(bench)
    long_id = await bench.enqueue(f"{ASYNC}.nap", {"path": str(out), "seconds": 2.5})
    fuse_id = await bench.enqueue(f"{ASYNC}.fuse", {"path": str(out)})
    fused = await bench.result(fuse_id, within=30)
    assert fused.status is TaskStatus.TIMEOUT and "timeout of 1 s" in (fused.exception or "")
    assert ("finally", fuse_id, 1) in marks(out), "cancelled: its finally block ran"
    napped = await bench.result(long_id, within=30)
    assert napped.status is TaskStatus.SUCCESS, napped.exception
    assert ("end", long_id, 1) in marks(out)
    after = await bench.result(await bench.enqueue(f"{ASYNC}.nap", {"path": str(out), "seconds": 0}))
    assert after.result == napped.result, "the child was not replaced"
    assert w.stop() == 0


async def test_cancel_via_the_api_stops_that_task_only(bench: Bench, workers: Callable[..., WorkerProcess],
                                                      tmp_path: Path) -> None:
    await bench.publish(ASYNC, ASYNC_CODE)
    out = tmp_path / "e.txt"
    w = workers("w", concurrency=1)
    await w.ready(bench)
    victim = await bench.enqueue(f"{ASYNC}.nap", {"path": str(out), "seconds": 30})
    other = await bench.enqueue(f"{ASYNC}.nap", {"path": str(out), "seconds": 1.5})
    await wait_for(lambda: _started(out, victim), 15, what="task started")
    async with bench.redis.pipeline(transaction=False) as pipe:  # what the Server's cancel does
        pipe.set(bench.keys.cancel(victim), b"1", px=60_000)
        pipe.publish(bench.keys.events(), orjson.dumps({"type": "cancel", "taskId": victim}))
        await pipe.execute()
    result = await bench.result(victim, within=30)
    assert result.status is TaskStatus.CANCELLED and "while it ran" in (result.exception or "")
    survivor = await bench.result(other, within=30)
    assert survivor.status is TaskStatus.SUCCESS, survivor.exception
    assert [what for what, t, _ in marks(out) if t == victim] == ["start"]
    assert w.stop() == 0


async def test_dff_calls_have_awaitable_forms(bench: Bench, workers: Callable[..., WorkerProcess]) -> None:
    await bench.publish(ASYNC, ASYNC_CODE)
    w = workers("w", concurrency=1)  # DFF.FUNC(wait=…) of an async function: the same child
    await w.ready(bench)
    result = await bench.result(await bench.enqueue(f"{ASYNC}.uses_dff", {"value": "v1"}), within=60)
    assert result.status is TaskStatus.SUCCESS, (result.exception, result.traceback)
    assert result.result["got"] == "v1" and result.result["plain"] == "v1"
    assert result.result["added"] == 42
    child = await bench.result(result.result["child"])
    assert child.status is TaskStatus.SUCCESS and child.result == 2
    assert child.origin_id == result.id, "DFF.FUNC made a child task of the calling task"
    assert w.stop() == 0


async def test_an_exception_is_recorded_with_its_traceback(bench: Bench,
                                                           workers: Callable[..., WorkerProcess]) -> None:
    await bench.publish(ASYNC, ASYNC_CODE)
    w = workers("w", concurrency=1)
    await w.ready(bench)
    result = await bench.result(await bench.enqueue(f"{ASYNC}.raises", {"x": 7}))
    assert result.status is TaskStatus.FAILURE and result.exception == "ValueError: bad x 7"
    assert f"<{ASYNC}>" in (result.traceback or "") and "raise ValueError" in (result.traceback or "")
    record = await bench.record(result.id)
    assert record["status"] == "failure"
    exited = await bench.result(await bench.enqueue(f"{ASYNC}.exits"))
    assert exited.status is TaskStatus.FAILURE and exited.exception == "SystemExit: 3"
    assert w.stop() == 0


async def test_a_child_crash_fails_every_task_it_ran(bench: Bench,
                                                     workers: Callable[..., WorkerProcess]) -> None:
    await bench.publish(ASYNC, ASYNC_CODE)
    w = workers("w", concurrency=1)
    await w.ready(bench)
    sleepers = await bench.enqueue_many(f"{ASYNC}.overlap", [{"i": i, "seconds": 5} for i in range(5)])
    retried = await bench.enqueue(f"{ASYNC}.patient")
    await asyncio.sleep(0)  # (enqueued first: they share the child with the one that dies)
    crash = await bench.enqueue(f"{ASYNC}.dies", {"after": 0.5})
    results = [await bench.result(t, within=30) for t in [*sleepers, crash]]
    assert {r.status for r in results} == {TaskStatus.FAILURE}
    assert all("WorkerChildDied" in (r.exception or "") for r in results)
    assert all(r.print_logs == f"start {i}\n" for i, r in enumerate(results[:5])), "kept what they printed"
    again = await bench.result(retried, within=60)  # attempts left: run again, not lost
    assert again.status is TaskStatus.SUCCESS and again.result == 2 and again.attempt == 2
    nxt = await bench.result(await bench.enqueue(f"{ASYNC}.add_one", {"x": 1}))
    assert nxt.status is TaskStatus.SUCCESS and nxt.result == 2
    assert w.stop() == 0


async def test_a_child_over_its_memory_limit_fails_every_task_it_ran(
        bench: Bench, workers: Callable[..., WorkerProcess]) -> None:
    await bench.publish(ASYNC, ASYNC_CODE)
    w = workers("w", concurrency=1, max_memory_mb=64)
    await w.ready(bench)
    # two tasks of 25 MB each fit the address-space limit (64 MB beyond what the child maps
    # at its start) but not the resident one: the watcher stops the child and both fail
    ids = await bench.enqueue_many(f"{ASYNC}.grows", [{"mb": 25}, {"mb": 25}])
    results = [await bench.result(t, within=30) for t in ids]
    assert {r.status for r in results} == {TaskStatus.FAILURE}
    assert all("max_memory_mb=64" in (r.exception or "") for r in results), [r.exception for r in results]
    nxt = await bench.result(await bench.enqueue(f"{ASYNC}.no_threads"))
    assert nxt.status is TaskStatus.SUCCESS and "DFF.THREAD is for sync functions" in nxt.result
    assert w.stop() == 0


async def test_sync_tasks_are_not_starved_by_async_ones(bench: Bench, workers: Callable[..., WorkerProcess],
                                                        tmp_path: Path) -> None:
    await bench.publish(ASYNC, ASYNC_CODE)
    await bench.publish(WORK, WORK_CODE)
    out = tmp_path / "e.txt"
    w = workers("w", concurrency=1)
    await w.ready(bench)
    first = await bench.enqueue_many(f"{ASYNC}.overlap", [{"i": i, "seconds": 1} for i in range(5)])
    sync_id = await bench.enqueue(f"{WORK}.append", {"path": str(out)})
    later = await bench.enqueue_many(f"{ASYNC}.overlap", [{"i": i, "seconds": 0.2} for i in range(5)])
    results = [await bench.result(t, within=60) for t in [*first, sync_id, *later]]
    assert {r.status for r in results} == {TaskStatus.SUCCESS}, [r.exception for r in results]
    ran = marks(out)
    assert [t for _, t, _ in ran] == [sync_id]
    assert w.stop() == 0


async def test_shutdown_drains_running_async_tasks_and_releases_the_rest(
        bench: Bench, workers: Callable[..., WorkerProcess], tmp_path: Path) -> None:
    await bench.publish(ASYNC, ASYNC_CODE)
    out = tmp_path / "e.txt"
    w = workers("w", concurrency=1, drain_seconds=2)
    await w.ready(bench)
    quick = await bench.enqueue(f"{ASYNC}.nap", {"path": str(out), "seconds": 0.5})
    slow = await bench.enqueue(f"{ASYNC}.nap", {"path": str(out), "seconds": 6})
    await wait_for(lambda: _started(out, slow), 15, what="task started")
    assert w.stop() == 0
    assert (await bench.result(quick)).status is TaskStatus.SUCCESS, "drained: it finished"
    assert await bench.streams.get_result(slow) is None, "released for another worker, not failed"
    assert await bench.redis.get(bench.keys.running(slow)) is None
    again = workers("again", concurrency=1)  # takes it over (a new attempt of the same task)
    assert (await bench.result(slow, within=60)).status is TaskStatus.SUCCESS
    assert again.stop() == 0


async def _started(path: Path, task_id: str) -> bool:
    return ("start", task_id, 1) in marks(path)
