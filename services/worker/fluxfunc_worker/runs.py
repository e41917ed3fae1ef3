"""Runs of held entries: each one started on a child, ended the way its outcome says.

Given a started entry (its start check done, see ``StreamProtocol.claim``), :class:`Runs`
runs it on the pool (``run`` frame, the task's timeout), or ends it without running (already
completed → ack; cancelled / expired → that status). The outcome becomes a
:class:`~fluxfunc_common.envelope.TaskResult`: a failure or timeout with attempts left goes
back to the delayed set with exponential backoff and jitter (``retry``); everything else is
completed through the batching :class:`~fluxfunc_worker.completion.Completer`, recorded by the
:class:`~fluxfunc_worker.records.RecordBatcher`, and logged in one line. Every write is
owner-checked: a run whose entry is no longer ours (lost lease, released at shutdown) writes
nothing.

An outcome write that fails on a Redis error (a timeout, a restart) is tried again until Redis
answers, and a refused try is resolved by the stored result: when an earlier try landed (its
reply was lost) the stored result is this run's, and the task is recorded once. A result that
could not be written at all is kept (:class:`Unwritten`): if the same entry comes back to this
worker, it is completed with that result instead of being run a second time.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from functools import partial
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from fluxfunc_common.envelope import Origin, TaskEnvelope, TaskResult, TaskStatus
from fluxfunc_common.logs import get_logger
from fluxfunc_common.settings import Settings
from fluxfunc_common.streams import Delivery, Start, StreamProtocol
from fluxfunc_worker.completion import (
    Completer,
    backoff_seconds,
    next_attempt,
    result_from_outcome,
    result_ttl_ms,
    should_retry,
    skipped_result,
)
from fluxfunc_worker.lease import Inflight, Running
from fluxfunc_worker.pool import Job, Outcome, Pool
from fluxfunc_worker.records import RecordBatcher

log = get_logger("worker")

STOPPED = frozenset({"shutdown", "released", "lost"})  # outcomes of runs stopped by the worker itself

# Enum members and values looked up once: in Python 3.11 each ``Enum.X`` / ``.value`` access
# costs about a microsecond, several times per task.
_DONE, _CANCELLED, _SUCCESS = Start.DONE, Start.CANCELLED, TaskStatus.SUCCESS
_VALUE: dict[Any, str] = {**{s: s.value for s in TaskStatus}, **{o: o.value for o in Origin}}
UNWRITTEN_MAX = 1000  # discarded results kept for a re-delivery to this worker
PERSIST_DELAY_MAX = 2.0  # seconds between tries of an outcome write while Redis does not answer
# Errors that leave open whether Redis applied a write (no reply, or no connection).
UNANSWERED = (RedisConnectionError, RedisTimeoutError, ConnectionError, TimeoutError, OSError)


class Unwritten:
    """Results of runs this worker finished but could not write (lease lost to another worker
    that then gave the entry up, or a write refused): by task id, the newest
    ``UNWRITTEN_MAX``. The same worker never runs such a task again; it completes it with
    the kept result when the entry comes back to it."""

    def __init__(self, size: int = UNWRITTEN_MAX) -> None:
        self.size = size
        self._results: OrderedDict[str, TaskResult] = OrderedDict()

    def keep(self, result: TaskResult) -> None:
        self._results[result.id] = result
        self._results.move_to_end(result.id)
        while len(self._results) > self.size:
            self._results.popitem(last=False)

    def take(self, env: TaskEnvelope) -> TaskResult | None:
        """The kept result of this attempt of ``env``, forgotten once taken."""
        result = self._results.get(env.id)
        if result is None or result.attempt != env.attempt:
            return None
        del self._results[env.id]
        return result


class Slots:
    """How many more entries the fetch loop may read: one per child not running a task, plus
    — while the recent runs were all short — one more per child (:meth:`observe`).

    The extra entries wait in the worker, not in a child, for the first child that frees
    up: a short task's child then gets its next task without waiting for a Redis round
    trip, and each round trip carries more completions. A run that is not short ends the
    extra at once, so an entry waits behind a long task only if it was read just before."""

    def __init__(self, size: int, *, extra: int = 0, short_seconds: float = 0.0) -> None:
        self.size = size
        self.extra_max = extra
        self.short_seconds = short_seconds
        self.extra = 0
        self.held = 0
        self._short_runs = 0
        self._event = asyncio.Event()
        self._event.set()

    @property
    def free(self) -> int:
        return self.size + self.extra - self.held

    def take(self, n: int) -> None:
        self.held += n
        if self.free <= 0:
            self._event.clear()

    def give(self, n: int = 1) -> None:
        self.held -= n
        if self.free > 0:
            self._event.set()

    def observe(self, run_seconds: float) -> None:
        """A run took ``run_seconds``: extra entries after ``2 × size`` short runs in a row,
        none after a run that is not short."""
        if run_seconds < self.short_seconds:
            self._short_runs += 1
            if self._short_runs >= 2 * self.size and self.extra != self.extra_max:
                self.extra = self.extra_max
                if self.free > 0:
                    self._event.set()
        else:
            self._short_runs = 0
            if self.extra:
                self.extra = 0
                if self.free <= 0:
                    self._event.clear()

    def wake(self) -> None:
        """Let a waiting fetch loop look at its stop flag."""
        self._event.set()

    async def wait(self) -> None:
        await self._event.wait()


def run_message(env: TaskEnvelope) -> dict[str, Any]:
    """The ``run`` frame a child executes."""
    return {"t": "run", "id": env.id, "func": env.func_id, "kwargs": env.kwargs,
            "origin": _VALUE[env.origin], "originId": env.origin_id, "triggerTime": env.trigger_time,
            "cronExpr": env.cron_expr, "httpRequest": env.http_request, "callChain": env.call_chain,
            "traceId": env.trace_id, "queue": env.queue, "attempt": env.attempt, "eta": env.eta}


class Runs:
    """Starts held entries on the pool and ends them (see the module docstring)."""

    def __init__(self, settings: Settings, streams: StreamProtocol, pool: Pool, *, consumer: str,
                 inflight: Inflight, slots: Slots, completer: Completer, records: RecordBatcher,
                 task_line: Callable[..., None] | None = None) -> None:
        self.settings = settings
        self.ws = settings.worker
        self.streams = streams
        self.pool = pool
        self.consumer = consumer
        self.inflight = inflight
        self.slots = slots
        self.completer = completer
        self.records = records
        self.counts: Counter[str] = Counter()
        self._task_line = task_line or log.info  # the one line per task attempt
        self.tasks: set[asyncio.Task[Any]] = set()
        self.unwritten = Unwritten()

    def dispatch(self, runs: Sequence[tuple[Running, Start]]) -> None:
        """Run, ack or end each started entry according to its start check. Runs are sent to
        idle children right here, before anything else gets the event loop."""
        now = time.time()
        for r, start in runs:
            env = r.delivery.envelope
            if start is _DONE:
                self.spawn(self._duplicate(r))
            elif start is _CANCELLED:
                self.spawn(self._skip(r, TaskStatus.CANCELLED,
                                      "FuncCancelled: the task was cancelled before it started"))
            elif (kept := self.unwritten.take(env)) is not None:
                self.spawn(self._replay(r, kept))
            elif env.expires is not None and env.expires < now and env.attempt == 1:
                self.spawn(self._skip(r, TaskStatus.EXPIRED,
                                      "FuncExpired: the task expired before it started"))
            else:
                job = self.pool.submit(run_message(env), env.timeout, abort=partial(self._abort, r))
                self.spawn(self._execute(r, job))

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` as a tracked task (the drain waits for these)."""
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # --- running --------------------------------------------------------------------------------
    async def _execute(self, r: Running, job: Job) -> None:
        """Wait for the run (``job``: sent to a child, or waiting for one), then complete or
        retry it."""
        env = r.delivery.envelope
        try:
            outcome = await self.pool.wait(job)
        except Exception as exc:  # a pool bug must not strand the entry: it is reclaimed later
            log.error("run failed in the worker", task_id=env.id, error=repr(exc))
            self.inflight.remove(r)
            return
        finally:
            self.slots.give()
        started, ended = outcome.fields.get("startTime"), outcome.fields.get("endTime")
        self.slots.observe(ended - started if started and ended else float("inf"))
        if r.lost or (r.released and outcome.status in STOPPED):
            if outcome.status not in STOPPED:  # it ran to the end all the same
                self.unwritten.keep(result_from_outcome(env, outcome, r.start_time))
            self._forget(r)  # a run that finished just as it was released still completes below
            return
        result = result_from_outcome(env, outcome, r.start_time)
        if should_retry(env, result):
            await self._retry(r, result)
        else:
            await self._finish(r, result)

    def _abort(self, r: Running) -> Outcome | None:
        """Asked just before the run starts: why it must not (an outcome), or None."""
        if r.cancel_requested:
            return Outcome("cancelled", {"exception": "FuncCancelled: the task was cancelled before it "
                                                      "started"})
        if r.abandoned:
            reason = "lost" if r.lost else "released"
            return Outcome(reason, {"exception": f"FuncCancelled: the task was {reason} before it started"})
        env = r.delivery.envelope
        if env.expires is not None and env.attempt == 1 and env.expires < time.time():
            return Outcome("expired", {"exception": "FuncExpired: the task expired before it started"})
        return None

    def _forget(self, r: Running) -> None:
        """A run whose entry is no longer ours: write nothing."""
        self.inflight.remove(r)
        self.counts["lost" if r.lost else "released"] += 1
        if r.lost:
            log.warning("lease lost: another worker owns the task now; result discarded",
                        task_id=r.task_id, func_id=r.delivery.envelope.func_id)

    async def _finish(self, r: Running, result: TaskResult) -> None:
        """Complete the entry (under the lease token held at each try: a reclaim of our own
        entry while the write waited renews it), then record the task exactly once."""
        ttl = result_ttl_ms(r.delivery.envelope, self.settings.tasks.result_ttl)
        lease: str | None = None
        ok = False
        while not ok and r.delivery.lease != lease:  # refused, but the lease was renewed meanwhile
            lease = r.delivery.lease
            ok = await self._persist(r, lambda: self.completer.complete(r.delivery, result, ttl))
        if not ok and await self._persist(r, lambda: self._written_anyway(result)):
            ok = True
        self.inflight.remove(r)
        if ok:
            self.records.add(result)
            self.log(r, result)
        elif not r.released:
            self.unwritten.keep(result)
            self.counts["stale"] += 1
            log.warning("entry no longer ours at completion; result discarded", task_id=r.task_id)

    async def _written_anyway(self, result: TaskResult) -> bool:
        """After an ambiguous failure (a reply lost after Redis applied the write), a second
        try finds the entry already acked: the stored result tells whether it was ours."""
        stored = await self.streams.get_result(result.id)
        return stored is not None and stored.end_time == result.end_time and \
            stored.attempt == result.attempt

    async def _replay(self, r: Running, result: TaskResult) -> None:
        """An entry came back whose run this worker already finished: complete it with that
        result, never run it twice."""
        self.slots.give()
        log.info("re-delivered task completed with the result kept from its run", task_id=r.task_id)
        if should_retry(r.delivery.envelope, result):
            await self._retry(r, result)
        else:
            await self._finish(r, result)

    async def _retry(self, r: Running, result: TaskResult) -> None:
        env = r.delivery.envelope
        delay = backoff_seconds(env.attempt)
        nxt = next_attempt(env, result, delay)
        due_ms = int((nxt.eta or time.time()) * 1000)
        ok = await self._persist(r, lambda: self.streams.retry(self.consumer, r.delivery, nxt, due_ms))
        self.inflight.remove(r)
        if ok:
            self.log(r, result, retry_in_ms=int(delay * 1000))

    async def _persist(self, r: Running, write: Callable[[], Awaitable[bool]]) -> bool:
        """Run an owner-checked write (or its check), trying again until Redis answers: a
        timed-out write may have landed, so giving up would guess. While Redis does not answer
        no other worker can take the entry either; once it does, the owner check decides.
        An error reply (Redis answered, e.g. out of memory) is tried again for one lease, then
        the write counts as refused."""
        delay, failures = 0.05, 0
        give_up = time.monotonic() + self.ws.lease_seconds
        while True:
            try:
                return await write()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                if failures == 1:
                    log.warning("cannot write the task outcome yet; trying again until Redis answers",
                                task_id=r.task_id, error=str(exc) or repr(exc))
                if not isinstance(exc, UNANSWERED) and time.monotonic() > give_up:
                    log.error("Redis refuses the task outcome", task_id=r.task_id, error=str(exc))
                    return False
                await asyncio.sleep(delay)
                delay = min(delay * 2, PERSIST_DELAY_MAX)

    async def _skip(self, r: Running, status: TaskStatus, exception: str) -> None:
        """End a task that never started (expired, cancelled)."""
        self.slots.give()
        await self._finish(r, skipped_result(r.delivery.envelope, status, exception))

    async def _duplicate(self, r: Running) -> None:
        """The task already has a result: ack the entry, never run it again."""
        self.slots.give()
        try:
            await self.streams.ack_duplicate(self.consumer, r.delivery)
        except Exception as exc:
            log.warning("cannot ack a duplicate entry", task_id=r.task_id, error=str(exc))
        self.inflight.remove(r)
        self.counts["duplicate"] += 1
        log.info("duplicate delivery acked; task already completed", task_id=r.task_id,
                 func_id=r.delivery.envelope.func_id)

    async def dead_letter(self, d: Delivery) -> None:
        """An entry delivered too often (it keeps killing workers): dead-letter it."""
        env = d.envelope
        limit = self.ws.max_deliveries
        result = skipped_result(env, TaskStatus.DEAD,
                                f"FuncDead: delivered {d.count} times without completing "
                                f"(max_deliveries={limit}); moved to the dead-letter stream")
        ttl = result_ttl_ms(env, self.settings.tasks.result_ttl)
        try:
            ok = await self.streams.dead(self.consumer, d, result, result_ttl_ms=ttl,
                                         reason=f"max deliveries exceeded ({d.count} > {limit})")
        except Exception as exc:
            log.error("cannot dead-letter an entry", task_id=env.id, error=str(exc))
            return
        if ok:
            self.records.add(result)
            self.log(Running(d), result)

    # --- signals from outside --------------------------------------------------------------------
    def cancel(self, r: Running) -> None:
        """Stop the run (or never start it): it ends ``cancelled``."""
        if r.cancel_requested or r.abandoned:
            return
        r.cancel_requested = True
        self.pool.stop_task(r.task_id, "cancelled")
        log.info("cancel requested", task_id=r.task_id)

    def lost(self, r: Running) -> None:
        """Another worker owns the entry now: stop the child running it (nothing is written)."""
        self.pool.stop_task(r.task_id, "lost")

    # --- the task line ------------------------------------------------------------------------------
    def log(self, r: Running, result: TaskResult, **extra: Any) -> None:
        """The one log line of a task attempt."""
        env = r.delivery.envelope
        status = _VALUE[result.status]
        self.counts[status] += 1
        if result.start_time and result.end_time:
            duration_ms = round((result.end_time - result.start_time) * 1000, 1)
        else:
            duration_ms = round((time.monotonic() - r.started) * 1000, 1)
        origin = _VALUE[env.origin]
        if result.status is _SUCCESS:
            self._task_line("task", task_id=env.id, func_id=env.func_id, origin=origin, status=status,
                            duration_ms=duration_ms, attempt=env.attempt, **extra)
        else:
            self._task_line("task", task_id=env.id, func_id=env.func_id, origin=origin, status=status,
                            duration_ms=duration_ms, attempt=env.attempt,
                            error=(result.exception or "")[:300], **extra)
