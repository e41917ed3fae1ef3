"""One run per held entry: its state transitions, the slot it holds, and the fetch loop's
slots (acquired before a read, each released exactly once)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from typing import Any

import pytest

from fluxfunc_common import ids
from fluxfunc_common.envelope import Origin, TaskEnvelope, TaskResult, TaskStatus
from fluxfunc_common.settings import Settings
from fluxfunc_common.streams import Delivery, Start
from fluxfunc_worker.callchain import MAX_CALL_CHAIN, CallChainError, child_chain
from fluxfunc_worker.completion import Completer
from fluxfunc_worker.lease import Inflight
from fluxfunc_worker.outcome import End
from fluxfunc_worker.run import Run, RunState
from fluxfunc_worker.runs import Runs
from fluxfunc_worker.slots import Slots


def env(**fields: Any) -> TaskEnvelope:
    return TaskEnvelope(id=ids.task_id(), func_id="demo__run.f", origin=Origin.DIRECT,
                        trigger_time=time.time(), **fields)


class FakeJob:
    def __init__(self) -> None:
        self.running = False
        self.stops: list[End] = []

    def stop(self, why: End) -> None:
        self.stops.append(why)


class FakePool:
    def __init__(self) -> None:
        self.submitted: list[tuple[Any, float, float | None]] = []
        self.job = FakeJob()

    def submit(self, message: Any, timeout: float, *, expires: float | None = None,
               is_async: bool = False) -> FakeJob:
        self.submitted.append((message, timeout, expires))
        return self.job


def a_run(slots: Slots | None = None, **fields: Any) -> Run:
    slots = slots or Slots(1)
    return Run(Delivery("default", "1-0", env(**fields), 1, "token"), slots.acquire_nowait(1).take())


def state(run: Run) -> RunState:
    """The run's state, read afresh (not narrowed by an earlier check)."""
    return run.state


async def turns(n: int = 5) -> None:
    """Let the event loop run other tasks ``n`` times (no time passes)."""
    for _ in range(n):
        await asyncio.sleep(0)


# --- states ---------------------------------------------------------------------------------------
def test_a_run_goes_from_claimed_to_done() -> None:
    slots = Slots(1)
    run, pool = a_run(slots, timeout=7, expires=time.time() + 60), FakePool()
    assert state(run) is RunState.CLAIMED and slots.free == 0
    run.submit(pool)  # type: ignore[arg-type]
    (message, timeout, expires), = pool.submitted
    assert state(run) is RunState.STARTING and run.waiting
    assert (message["type"], message["id"], timeout, expires) == ("run", run.task_id, 7, run.envelope.expires)
    pool.job.running = True
    assert state(run) is RunState.RUNNING and not run.waiting
    run.finishing()
    assert state(run) is RunState.FINISHING
    run.done()
    run.done()
    assert state(run) is RunState.DONE and slots.free == 1, "its slot released once"


def test_a_retry_attempt_carries_no_expiry() -> None:
    run, pool = a_run(attempt=2, expires=time.time() - 5), FakePool()
    run.submit(pool)  # type: ignore[arg-type]
    assert pool.submitted[0][2] is None


def test_a_run_is_submitted_once() -> None:
    run, pool = a_run(), FakePool()
    run.submit(pool)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="starting"):
        run.submit(pool)  # type: ignore[arg-type]


def test_a_cancel_stops_the_child_once_and_ends_cancelled() -> None:
    run, pool = a_run(), FakePool()
    run.submit(pool)  # type: ignore[arg-type]
    assert run.cancel() and state(run) is RunState.CANCELLING and run.stop_reason is End.CANCELLED
    assert not run.cancel(), "once"
    assert pool.job.stops == [End.CANCELLED]
    run.finishing()
    assert state(run) is RunState.FINISHING and not run.cancel(), "too late to cancel"


def test_a_cancel_before_submit_keeps_it_off_the_pool() -> None:
    run = a_run()
    assert run.cancel() and run.job is None and run.stop_reason is End.CANCELLED


def test_a_lost_run_is_ours_again_after_an_adopting_reclaim() -> None:
    run, pool = a_run(), FakePool()
    run.submit(pool)  # type: ignore[arg-type]
    pool.job.running = True
    assert run.lose() and state(run) is RunState.LOST and run.abandoned
    assert pool.job.stops == [End.LOST] and not run.lose()
    run.adopt(Delivery("default", "1-0", run.envelope, 3, "token-3"))
    assert state(run) is RunState.RUNNING and not run.abandoned
    assert (run.delivery.count, run.delivery.lease) == (3, "token-3")


def test_a_run_being_written_is_not_lost_but_can_be_released() -> None:
    run = a_run()
    run.finishing()
    assert not run.lose() and state(run) is RunState.FINISHING
    assert run.release() and state(run) is RunState.RELEASED
    run.finishing()
    run.done()
    assert state(run) is RunState.RELEASED, "a released run ends released"


def test_a_released_run_stops_its_child_for_the_shutdown() -> None:
    run, pool = a_run(), FakePool()
    run.submit(pool)  # type: ignore[arg-type]
    assert run.release() and run.abandoned and run.stop_reason is End.SHUTDOWN
    assert pool.job.stops == [End.SHUTDOWN] and not run.release() and not run.cancel()


# --- runs that never reach the pool -----------------------------------------------------------------
class Written:
    """``complete_many`` accepting everything, keeping the results."""

    def __init__(self) -> None:
        self.results: list[TaskResult] = []

    async def complete_many(self, consumer: str, items: Sequence[Any]) -> list[bool]:
        self.results += [result for _, result, _ in items]
        return [True] * len(items)


class NoPool:
    def submit(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the task reached the pool")


class Records:
    def add(self, result: TaskResult, kwargs: Any = None) -> None:
        pass


async def dispatched(run: Run, slots: Slots) -> TaskResult:
    streams, inflight = Written(), Inflight()
    runs = Runs(Settings(), streams, NoPool(), consumer="c", inflight=inflight,  # type: ignore[arg-type]
                slots=slots, completer=Completer(streams, "c"), records=Records())  # type: ignore[arg-type]
    runs.dispatch([(run, Start.RUN)])
    await asyncio.gather(*runs.tasks)
    assert slots.free == slots.size and state(run) is RunState.DONE
    (result,) = streams.results
    return result


async def test_a_run_cancelled_before_it_was_submitted_ends_cancelled() -> None:
    slots = Slots(1)
    run = a_run(slots)
    run.cancel()
    result = await dispatched(run, slots)
    assert result.status is TaskStatus.CANCELLED and "before it started" in (result.exception or "")
    assert run.outcome is not None and run.outcome.end is End.CANCELLED and run.job is None


async def test_the_worker_refuses_a_task_past_the_call_chain_limit() -> None:
    slots = Slots(1)
    circular = await dispatched(a_run(slots, call_chain=["demo__run.g", "demo__run.f"]), slots)
    assert circular.status is TaskStatus.FAILURE and "circular call refused" in (circular.exception or "")
    chain = [f"demo__run.g{i}" for i in range(MAX_CALL_CHAIN)]
    too_long = await dispatched(a_run(slots, call_chain=chain), slots)
    assert too_long.status is TaskStatus.FAILURE and "call chain too long" in (too_long.exception or "")


def test_the_parent_builds_the_chain_of_a_dff_func_call() -> None:
    assert child_chain(None, None, "a__b.c") == []
    assert child_chain(["a__b.x"], "a__b.y", "a__b.c") == ["a__b.x", "a__b.y"]
    with pytest.raises(CallChainError, match="circular"):
        child_chain(["a__b.c"], "a__b.y", "a__b.c")
    with pytest.raises(CallChainError, match="too long"):
        child_chain([f"a__b.f{i}" for i in range(MAX_CALL_CHAIN - 1)], "a__b.y", "a__b.c")


# --- slots ------------------------------------------------------------------------------------------
async def test_acquire_waits_until_a_slot_is_released() -> None:
    slots = Slots(2)
    with await slots.acquire() as batch:
        assert len(batch) == 2 and slots.free == 0
        first, second = batch.take(), batch.take()
    assert slots.free == 0, "taken slots stay held when the batch closes"
    waiter = asyncio.create_task(slots.acquire())
    await turns()
    assert not waiter.done()
    first.release()
    first.release()
    batch = await asyncio.wait_for(waiter, 5)
    assert len(batch) == 1 and slots.free == 0, "one release, one slot"
    batch.close()
    second.release()
    assert slots.free == 2 and slots.held == 0


async def test_a_batch_gives_back_what_it_did_not_take() -> None:
    slots = Slots(3)
    with await slots.acquire() as batch:
        kept = batch.take()
        moved = batch.handover()
        assert len(batch) == 0 and len(moved) == 2
    assert slots.free == 0, "the handed-over slots belong to the new batch"
    moved.close()
    assert slots.free == 2
    with kept:
        pass
    assert slots.free == 3


async def test_adopted_entries_take_slots_beyond_the_limit() -> None:
    slots = Slots(1)
    held = slots.acquire_nowait(3, beyond=True)
    assert len(held) == 3 and slots.free == -2
    assert len(slots.acquire_nowait(1)) == 0
    held.close()
    assert slots.free == 1


async def test_wake_lets_a_waiting_fetch_loop_look_at_its_stop_flag() -> None:
    slots = Slots(1)
    taken = slots.acquire_nowait(1)
    waiter = asyncio.create_task(slots.acquire())
    await turns()
    assert not waiter.done()
    slots.wake()
    assert len(await asyncio.wait_for(waiter, 5)) == 0, "woken with nothing acquired"
    taken.close()


async def test_read_ahead_only_after_a_streak_of_short_runs() -> None:
    slots = Slots(2, extra=2, short_seconds=0.01)
    assert slots.free == 2
    for _ in range(3):
        slots.observe(0.001)
    assert slots.free == 2, "not before 2 × size short runs in a row"
    slots.observe(0.001)
    assert slots.free == 4
    batch = await slots.acquire()
    assert len(batch) == 4
    slots.observe(0.5)  # one long run: no more read-ahead
    assert slots.free == -2 and slots.extra == 0
    waiter = asyncio.create_task(slots.acquire())
    batch.take().release()
    batch.take().release()
    await turns()
    assert not waiter.done(), "still no free child"
    batch.take().release()
    assert len(await asyncio.wait_for(waiter, 5)) == 1
