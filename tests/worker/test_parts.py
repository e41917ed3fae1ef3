"""The worker's parts in isolation: backoff, retry decision, results from outcomes, kwargs
checks, the completer's batching, the record batcher, the published-code cache, leases and
the events listener."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence
from typing import Any

import orjson
import pytest
from tests.processes import wait_for
from tests.worker.conftest import Bench

from fluxfunc_common import ids
from fluxfunc_common.envelope import Origin, TaskEnvelope, TaskResult, TaskStatus
from fluxfunc_common.models import Func
from fluxfunc_common.settings import Settings
from fluxfunc_common.store import Entity
from fluxfunc_common.streams import Delivery, Start
from fluxfunc_worker.completion import (
    Completer,
    backoff_seconds,
    next_attempt,
    result_from_outcome,
    should_retry,
)
from fluxfunc_worker.dffcalls import refuse_bad_kwargs
from fluxfunc_worker.events import EventListener
from fluxfunc_worker.lease import Inflight
from fluxfunc_worker.outcome import End, Outcome
from fluxfunc_worker.published import PublishedScripts
from fluxfunc_worker.records import RecordBatcher
from fluxfunc_worker.rpc import RpcError
from fluxfunc_worker.run import Run, RunState, run_message
from fluxfunc_worker.runs import Runs, Unwritten
from fluxfunc_worker.slots import Slots


def env(**fields: Any) -> TaskEnvelope:
    return TaskEnvelope(id=ids.task_id(), func_id="demo__basic.plus", origin=Origin.DIRECT,
                        trigger_time=time.time(), **fields)


def test_backoff_doubles_with_jitter_and_a_cap() -> None:
    rng = random.Random(7)
    for attempt, low, high in [(1, 0.5, 1.0), (2, 1.0, 2.0), (3, 2.0, 4.0), (20, 150.0, 300.0)]:
        for _ in range(50):
            assert low <= backoff_seconds(attempt, rng=rng) <= high


def test_retry_only_failures_and_timeouts_with_attempts_left() -> None:
    e = env(max_attempts=3)
    fail = TaskResult.for_envelope(e, TaskStatus.FAILURE, exception="ValueError: x")
    assert should_retry(e, fail)
    assert should_retry(e, TaskResult.for_envelope(e, TaskStatus.TIMEOUT))
    assert not should_retry(e, TaskResult.for_envelope(e, TaskStatus.SUCCESS))
    assert not should_retry(e, TaskResult.for_envelope(e, TaskStatus.CANCELLED))
    last = e.model_copy(update={"attempt": 3})
    assert not should_retry(last, fail)
    nxt = next_attempt(e, fail, 2.0)
    assert (nxt.attempt, nxt.last_error, nxt.id) == (2, "ValueError: x", e.id)
    assert nxt.eta is not None and abs(nxt.eta - time.time() - 2.0) < 1


def test_result_from_outcome_keeps_the_child_fields() -> None:
    e = env(origin_id="sapi-1")
    out = Outcome.answered({"type": "done", "id": e.id, "status": "success", "result": {"a": 1},
                            "printLogs": "hi\n", "startTime": 10.0, "endTime": 11.0,
                            "response": {"statusCode": 201, "contentType": "text/plain", "headers": {},
                                         "data": "x"}})
    r = result_from_outcome(e, out, start_time=5.0)
    assert (r.status, r.result, r.print_logs, r.start_time, r.end_time) == (
        TaskStatus.SUCCESS, {"a": 1}, "hi\n", 10.0, 11.0)
    assert r.response is not None and r.response.status_code == 201 and r.origin_id == "sapi-1"
    odd = result_from_outcome(e, Outcome.answered({"type": "done", "id": e.id, "status": "weird"}),
                              start_time=5.0)
    assert odd.status is TaskStatus.FAILURE and "weird" in (odd.exception or "")
    assert odd.start_time == 5.0 and odd.end_time is not None
    crashed = Outcome.died(-9)
    crashed.print_logs = "step 1\n"
    r = result_from_outcome(e, crashed, start_time=5.0)
    assert r.status is TaskStatus.FAILURE and "SIGKILL" in (r.exception or "") and r.print_logs == "step 1\n"
    timed_out = result_from_outcome(e, Outcome.stopped(End.TIMEOUT, timeout=3, memory_mb=1), start_time=5.0)
    assert timed_out.status is TaskStatus.TIMEOUT and "timeout of 3 s" in (timed_out.exception or "")


def test_run_message_carries_the_context() -> None:
    e = env(cron_expr="* * * * *", call_chain=["a__b.c"], http_request={"method": "GET"}, attempt=2)
    m = run_message(e)
    assert m["type"] == "run" and m["id"] == e.id and m["func"] == e.func_id
    assert (m["cronExpr"], m["callChain"], m["httpRequest"], m["attempt"]) == (
        "* * * * *", ["a__b.c"], {"method": "GET"}, 2)


def test_check_kwargs_like_the_server() -> None:
    func = {"id": "demo__a.f", "kwargsSpec": {"x": {"required": True}, "y": {"default": "1"}},
            "varKwargs": False}
    refuse_bad_kwargs(Func.of(func), {"x": 1})
    with pytest.raises(RpcError, match="takes no argument"):
        refuse_bad_kwargs(Func.of(func), {"x": 1, "z": 2})
    with pytest.raises(RpcError, match="missing argument"):
        refuse_bad_kwargs(Func.of(func), {"y": 2})
    refuse_bad_kwargs(Func.of({**func, "varKwargs": True}), {"x": 1, "anything": 2})


@pytest.fixture
def restore_logging() -> Any:
    import logging

    import structlog

    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    structlog.reset_defaults()
    root.handlers[:], root.level = handlers, level


def test_the_fast_task_line_is_the_structlog_line(restore_logging: None) -> None:
    import io

    import structlog

    from fluxfunc_common.logs import configure_logging, get_logger
    from fluxfunc_common.settings import LogSettings

    out = io.StringIO()
    logs = configure_logging(LogSettings(level="INFO", format="json"), stream=out)
    fields = {"task_id": "task-1", "func_id": "demo__basic.plus", "origin": "direct", "status": "failure",
              "duration_ms": 1.5, "attempt": 2, "error": "ValueError: é", "retry_in_ms": 800}
    structlog.contextvars.bind_contextvars(request="r1")
    try:
        get_logger("worker").info("task", **fields)
        logs.info_line("worker")("task", **fields)
    finally:
        structlog.contextvars.clear_contextvars()
    slow, fast = (orjson.loads(line) for line in out.getvalue().splitlines())
    assert slow.pop("timestamp")[:19] == fast.pop("timestamp")[:19]
    assert list(slow.items()) == list(fast.items())  # same keys, same order, same values
    assert fast["request"] == "r1" and fast["level"] == "info" and fast["component"] == "worker"
    quiet = configure_logging(LogSettings(level="WARNING", format="json"), stream=out)
    quiet.info_line("worker")("task", **fields)
    assert len(out.getvalue().splitlines()) == 2


def delivery(entry: str = "1-0", count: int = 1) -> Delivery:
    return Delivery("default", entry, env(), count)


def state(run: Run) -> RunState:
    """The run's state, read afresh (not narrowed by an earlier check)."""
    return run.state


def test_inflight_adopts_a_new_delivery_count() -> None:
    inflight = Inflight()
    d = delivery()
    running = inflight.add(d, Slots(1).acquire_nowait(1).take())
    assert inflight.by_task(d.envelope.id) is running and ("default", "1-0") in inflight
    assert running.lose() and state(running) is RunState.LOST
    assert inflight.adopt(Delivery("default", "1-0", d.envelope, 3, "token-2"))
    assert running.delivery.count == 3 and running.delivery.lease == "token-2"
    assert state(running) is RunState.CLAIMED, "ours again, where it was"
    assert not inflight.adopt(delivery("2-0"))
    inflight.remove(running)
    assert len(inflight) == 0 and inflight.by_task(d.envelope.id) is None


class FakeStreams:
    """complete_many that records its batches."""

    def __init__(self) -> None:
        self.batches: list[int] = []

    async def complete_many(self, consumer: str, items: Sequence[Any]) -> list[bool]:
        self.batches.append(len(items))
        await asyncio.sleep(0.01)
        return [True] * len(items)


async def test_completer_batches_what_arrives_during_a_round_trip() -> None:
    streams = FakeStreams()
    completer = Completer(streams, "c")  # type: ignore[arg-type]
    results = [TaskResult.for_envelope(env(), TaskStatus.SUCCESS) for _ in range(5)]
    first = asyncio.create_task(completer.complete(delivery(), results[0], 1000))
    await asyncio.sleep(0.001)  # the first batch is on the wire now
    rest = [asyncio.create_task(completer.complete(delivery(), r, 1000)) for r in results[1:]]
    assert await asyncio.gather(first, *rest) == [True] * 5
    assert streams.batches == [1, 4]
    assert (completer.completed, completer.batches) == (5, 2)


async def test_completer_leaves_what_the_fetch_loop_takes_within_a_turn() -> None:
    streams = FakeStreams()
    completer = Completer(streams, "c")  # type: ignore[arg-type]
    waiting = asyncio.create_task(completer.complete(delivery(), TaskResult.for_envelope(
        env(), TaskStatus.SUCCESS), 1000))
    await asyncio.sleep(0)  # the completion is pending; the completer's own flush waits a turn
    assert completer.pending == 1
    batch = completer.take()  # what the fetch loop does in its next claim pipeline
    completer.settle(batch, [False])
    assert await waiting is False
    assert streams.batches == [], "taken by the fetch loop, not sent again"
    again = asyncio.create_task(completer.complete(delivery(), TaskResult.for_envelope(
        env(), TaskStatus.SUCCESS), 1000))
    assert await again is True and streams.batches == [1]


class FlakyStore:
    def __init__(self) -> None:
        self.fail = True
        self.calls: list[int] = []

    async def insert_task_records(self, records: Sequence[dict[str, Any]]) -> None:
        self.calls.append(len(records))
        if self.fail:
            raise OSError("database down")


async def test_record_batcher_keeps_records_while_the_store_is_down() -> None:
    store = FlakyStore()
    batcher = RecordBatcher(store, 0.01, max_buffer=5)  # type: ignore[arg-type]
    for _ in range(3):
        batcher.add(TaskResult.for_envelope(env(), TaskStatus.SUCCESS))
    batcher.add(TaskResult.for_envelope(env(record_limit=0), TaskStatus.SUCCESS))  # keeps none
    with pytest.raises(OSError):
        await batcher.flush()
    assert batcher.buffered == 3
    for _ in range(4):
        batcher.add(TaskResult.for_envelope(env(), TaskStatus.SUCCESS))
    assert (batcher.buffered, batcher.dropped) == (5, 2)
    store.fail = False
    await batcher.flush()
    assert store.calls == [3, 5] and (batcher.written, batcher.flushes, batcher.buffered) == (5, 1, 0)


async def test_published_cache_drops_on_a_new_version(bench: Bench) -> None:
    published = PublishedScripts(bench.store, bench.redis, bench.keys)
    await bench.publish("demo__p", '@DFF.API("F")\ndef f():\n    return 1\n')
    assert await published.refresh() is True
    code, version = await published.code("demo__p")  # type: ignore[misc]
    assert "return 1" in code and version == 1
    assert (await published.func("demo__p.f")).id == "demo__p.f"  # type: ignore[union-attr]
    assert await published.code("demo__nope") is None
    await bench.publish("demo__p", '@DFF.API("F")\ndef f():\n    return 2\n')
    assert "return 1" in (await published.code("demo__p"))[0]  # type: ignore[index]  # until noticed
    assert await published.refresh() is True and await published.refresh() is False
    assert "return 2" in (await published.code("demo__p"))[0]  # type: ignore[index]
    assert published.gen == int(await bench.redis.get(bench.keys.scripts_version()))
    assert await bench.store.find(Entity.FUNC, "demo__p.f") is not None


async def test_events_listener_dispatches_cancel_and_publish(bench: Bench) -> None:
    cancelled: list[str] = []
    published: list[bool] = []
    listener = EventListener(bench.redis, bench.keys, on_cancel=cancelled.append,
                             on_publish=lambda: published.append(True))
    stop = asyncio.Event()
    task = asyncio.create_task(listener.run(stop))
    await asyncio.wait_for(listener.subscribed.wait(), 5)
    for event in ({"type": "cancel", "taskId": "task-1"}, {"type": "scriptPublished", "scriptId": "a__b"},
                  {"type": "other"}, "not a dict"):
        await bench.redis.publish(bench.keys.events(), orjson.dumps(event))
    await bench.redis.publish(bench.keys.events(), b"{broken")
    async def heard() -> bool:
        return bool(cancelled and published)

    await wait_for(heard, 5)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert cancelled == ["task-1"] and published == [True]


def test_unwritten_keeps_the_newest_results_of_one_attempt() -> None:
    kept = Unwritten(size=2)
    first, second, third = env(), env(), env()
    for e in (first, second, third):
        kept.keep(TaskResult.for_envelope(e, TaskStatus.SUCCESS))
    assert kept.take(first) is None  # the oldest went
    assert kept.take(second.model_copy(update={"attempt": 2})) is None  # another attempt
    assert kept.take(second) is not None and kept.take(second) is None  # taken once


class OutcomeStreams:
    """The parts of the stream protocol ``Runs._finish`` uses, scripted."""

    def __init__(self, replies: list[Any], stored: TaskResult | None = None) -> None:
        self.replies, self.stored, self.calls = replies, stored, 0
        self.leases: list[str] = []
        self.on_call: Any = None

    async def complete_many(self, consumer: str, items: Sequence[Any]) -> list[bool]:
        self.calls += 1
        self.leases += [d.lease for d, *_ in items]
        if self.on_call is not None:
            self.on_call()
        reply = self.replies.pop(0) if self.replies else True
        if isinstance(reply, Exception):
            raise reply
        if reply and items:
            self.stored = items[0][1]
        return [bool(reply)] * len(items)

    async def get_result(self, task_id: str) -> TaskResult | None:
        return self.stored


class Records:
    def __init__(self) -> None:
        self.added: list[TaskResult] = []

    def add(self, result: TaskResult, kwargs: Any = None) -> None:
        self.added.append(result)


class NoPool:
    def submit(self, *args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the task was run again")


def runs_with(streams: OutcomeStreams) -> tuple[Runs, Records, Inflight]:
    records, inflight = Records(), Inflight()
    runs = Runs(Settings(), streams, NoPool(), consumer="c", inflight=inflight,  # type: ignore[arg-type]
                slots=Slots(1), completer=Completer(streams, "c"), records=records)  # type: ignore[arg-type]
    return runs, records, inflight


def hold(runs: Runs, inflight: Inflight, d: Delivery) -> Run:
    """``d`` held the way the fetch loop holds an entry: with a slot."""
    return inflight.add(d, runs.slots.acquire_nowait(1).take())


async def test_an_outcome_write_that_timed_out_but_landed_is_recorded_once() -> None:
    """The reply of the first try is lost (a timeout) although Redis applied it; the next try
    is refused (the entry is gone): the stored result is this run's, so one record."""
    e = env()
    result = TaskResult.for_envelope(e, TaskStatus.SUCCESS, start_time=1.0, end_time=2.0)
    streams = OutcomeStreams([TimeoutError("no reply from Redis"), ConnectionError("refused"), False],
                             stored=result)
    runs, records, inflight = runs_with(streams)
    await runs._finish(hold(runs, inflight, Delivery("default", "1-0", e)), result)
    assert streams.calls == 3 and records.added == [result]


async def test_a_discarded_result_is_never_run_again_by_the_same_worker() -> None:
    """Refused (the lease was lost) and nothing stored: the result is kept; when the entry
    comes back to this worker, it is completed with it, not run (NoPool would fail)."""
    e = env()
    result = TaskResult.for_envelope(e, TaskStatus.SUCCESS, start_time=1.0, end_time=2.0)
    streams = OutcomeStreams([False])
    runs, records, inflight = runs_with(streams)
    first = hold(runs, inflight, Delivery("default", "1-0", e))
    await runs._finish(first, result)
    assert records.added == [] and runs.counts["stale"] == 1
    first.done()
    inflight.remove(first)
    again = hold(runs, inflight, Delivery("default", "1-0", e, 2, "token-2"))
    runs.dispatch([(again, Start.RUN)])
    await asyncio.gather(*runs.tasks)
    assert records.added == [result] and len(inflight) == 0
    assert state(again) is RunState.DONE and runs.slots.free == 1, "its slot given back"


async def test_a_refused_completion_is_sent_again_under_a_renewed_lease() -> None:
    """This worker reclaimed its own entry (its lease had lapsed) while the completion was on
    the wire under the old token: refused, then sent again under the new one."""
    e = env()
    result = TaskResult.for_envelope(e, TaskStatus.SUCCESS, start_time=1.0, end_time=2.0)
    streams = OutcomeStreams([False, True])
    runs, records, inflight = runs_with(streams)
    running = hold(runs, inflight, Delivery("default", "1-0", e, 1, "old"))

    def reclaimed() -> None:
        streams.on_call = None
        inflight.adopt(Delivery("default", "1-0", e, 2, "new"))
    streams.on_call = reclaimed
    await runs._finish(running, result)
    assert streams.leases == ["old", "new"] and records.added == [result]

