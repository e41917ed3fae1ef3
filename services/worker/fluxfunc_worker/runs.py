"""Runs of held entries: each one started on a child, ended the way its outcome says.

Given a started entry (a :class:`~fluxfunc_worker.run.Run`, its start check done, see
``StreamProtocol.claim``), :class:`Runs` runs it on the pool (``run`` message, the task's
timeout), or ends it without running (already completed → ack; cancelled / expired → that
status; a ``DFF.FUNC`` call chain that is circular or too long → failure). However it ends,
the run ends with it: its slot is released and its entry is no longer held. The outcome
(:class:`~fluxfunc_worker.outcome.Outcome`) becomes a
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
from typing import Protocol

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from fluxfunc_common.envelope import Origin, TaskEnvelope, TaskResult, TaskStatus
from fluxfunc_common.logs import get_logger
from fluxfunc_common.settings import Settings
from fluxfunc_common.streams import Delivery, Start, StreamProtocol
from fluxfunc_worker.callchain import chain_error
from fluxfunc_worker.completion import (
    Completer,
    backoff_seconds,
    next_attempt,
    result_from_outcome,
    result_ttl_ms,
    should_retry,
    skipped_result,
)
from fluxfunc_worker.lease import Inflight
from fluxfunc_worker.outcome import End, Outcome
from fluxfunc_worker.pool import Pool
from fluxfunc_worker.records import RecordBatcher
from fluxfunc_worker.run import Run, RunState
from fluxfunc_worker.slots import Slots

log = get_logger("worker")

# Enum members and values looked up once: in Python 3.11 each ``Enum.X`` / ``.value`` access
# costs about a microsecond, several times per task.
_DONE, _CANCELLED, _SUCCESS = Start.DONE, Start.CANCELLED, TaskStatus.SUCCESS
_VALUE: dict[TaskStatus | Origin, str] = {**{s: s.value for s in TaskStatus}, **{o: o.value for o in Origin}}
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


class FuncKinds(Protocol):
    """Which functions are ``async def`` (:class:`~fluxfunc_worker.published.PublishedScripts`)."""

    def known_async(self, func_id: str) -> bool | None: ...

    async def is_async(self, func_id: str) -> bool: ...


class Runs:
    """Starts held entries on the pool and ends them (see the module docstring)."""

    def __init__(self, settings: Settings, streams: StreamProtocol, pool: Pool, *, consumer: str,
                 inflight: Inflight, slots: Slots, completer: Completer, records: RecordBatcher,
                 task_line: Callable[..., None] | None = None, kinds: FuncKinds | None = None) -> None:
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
        self.tasks: set[asyncio.Task[None]] = set()
        self.unwritten = Unwritten()
        self.kinds = kinds  # None: every function runs as a sync one

    def dispatch(self, runs: Sequence[tuple[Run, Start]]) -> None:
        """Run, ack or end each started entry according to its start check. Runs are sent to
        idle children right here, before anything else gets the event loop."""
        now = time.time()
        for run, start in runs:
            self._track(run, self._begin(run, start, now))

    def _begin(self, run: Run, start: Start, now: float) -> Coroutine[None, None, None]:
        """What happens to a held entry: the coroutine that ends it."""
        env = run.envelope
        if start is _DONE:
            return self._duplicate(run)
        if start is _CANCELLED:
            return self._skip(run, TaskStatus.CANCELLED,
                              "FuncCancelled: the task was cancelled before it started")
        if (kept := self.unwritten.take(env)) is not None:
            return self._replay(run, kept)
        if env.expires is not None and env.expires < now and env.attempt == 1:
            return self._skip(run, TaskStatus.EXPIRED, "FuncExpired: the task expired before it started")
        if (refused := chain_error(env.call_chain, env.func_id)) is not None:
            return self._skip(run, TaskStatus.FAILURE, f"DFFError: {refused}")
        if run.state is RunState.CLAIMED:
            # a draft run is never sent as async (the catalogue knows the published function;
            # an ``async def`` draft runs on the child's own loop, as a sync task)
            is_async = False if self.kinds is None or env.draft_md5 else self.kinds.known_async(env.func_id)
            if is_async is not None:  # else looked up first (_execute)
                run.submit(self.pool, is_async=is_async)
        return self._execute(run)

    def spawn(self, coro: Coroutine[None, None, None]) -> None:
        """Run ``coro`` as a tracked task (the drain waits for these)."""
        task = asyncio.create_task(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _track(self, run: Run, coro: Coroutine[None, None, None]) -> None:
        """Run ``coro`` for ``run``; however it ends, the run ends with it (slot freed, entry
        no longer held)."""
        async def owned() -> None:
            try:
                await coro
            finally:
                run.done()
                self.inflight.remove(run)

        self.spawn(owned())

    # --- running --------------------------------------------------------------------------------
    async def _execute(self, run: Run) -> None:
        """Wait for the run (sent to a child, or waiting for one; or stopped before it was
        submitted), then complete or retry it."""
        env = run.envelope
        if run.job is None and run.state is RunState.CLAIMED:
            await self._submit_looked_up(run)
        with run.slot:  # a child's place: free once the run is off it
            job = run.job
            try:
                if job is None:  # stopped before it could be submitted
                    outcome = _unstarted(run)
                else:
                    outcome = await self.pool.wait(job)
            except Exception as exc:  # a pool bug must not strand the entry: it is reclaimed later
                log.error("run failed in the worker", task_id=env.id, error=repr(exc))
                return
        seconds = outcome.run_seconds
        self.slots.observe(float("inf") if seconds is None else seconds)
        state = run.state
        if state is RunState.LOST or (state is RunState.RELEASED and outcome.end.by_worker):
            run.outcome = outcome
            if not outcome.end.by_worker:  # it ran to the end all the same
                self.unwritten.keep(result_from_outcome(env, outcome, run.start_time))
            self._forget(run)  # a run that finished just as it was released still completes below
            return
        run.finishing(outcome)
        result = result_from_outcome(env, outcome, run.start_time)
        if should_retry(env, result):
            await self._retry(run, result)
        else:
            await self._finish(run, result)

    async def _submit_looked_up(self, run: Run) -> None:
        """Submit a run whose function the catalogue cache did not know yet (one store read
        per function and publish)."""
        is_async = False
        try:
            is_async = self.kinds is not None and await self.kinds.is_async(run.envelope.func_id)
        except Exception as exc:  # the store is down: run it as a sync function (it still works)
            log.warning("cannot tell whether the function is async", func_id=run.envelope.func_id,
                        error=str(exc))
        if run.state is RunState.CLAIMED:  # not cancelled, lost or released meanwhile
            run.submit(self.pool, is_async=is_async)

    def _forget(self, run: Run) -> None:
        """A run whose entry is no longer ours: write nothing."""
        lost = run.state is RunState.LOST
        self.counts["lost" if lost else "released"] += 1
        if lost:
            log.warning("lease lost: another worker owns the task now; result discarded",
                        task_id=run.task_id, func_id=run.envelope.func_id)

    async def _finish(self, run: Run, result: TaskResult) -> None:
        """Complete the entry (under the lease token held at each try: a reclaim of our own
        entry while the write waited renews it), then record the task exactly once."""
        ttl = result_ttl_ms(run.envelope, self.settings.tasks.result_ttl)
        lease: str | None = None
        ok = False
        while not ok and run.delivery.lease != lease:  # refused, but the lease was renewed meanwhile
            lease = run.delivery.lease
            ok = await self._persist(run, lambda: self.completer.complete(run.delivery, result, ttl))
        if not ok and await self._persist(run, lambda: self._written_anyway(result)):
            ok = True
        if ok:
            self.records.add(result, run.envelope.kwargs)
            self.log(run.envelope, run.started, result)
        elif run.state is not RunState.RELEASED:
            self.unwritten.keep(result)
            self.counts["stale"] += 1
            log.warning("entry no longer ours at completion; result discarded", task_id=run.task_id)

    async def _written_anyway(self, result: TaskResult) -> bool:
        """After an ambiguous failure (a reply lost after Redis applied the write), a second
        try finds the entry already acked: the stored result tells whether it was ours."""
        stored = await self.streams.get_result(result.id)
        return stored is not None and stored.end_time == result.end_time and \
            stored.attempt == result.attempt

    async def _replay(self, run: Run, result: TaskResult) -> None:
        """An entry came back whose run this worker already finished: complete it with that
        result, never run it twice."""
        run.slot.release()
        run.finishing()
        log.info("re-delivered task completed with the result kept from its run", task_id=run.task_id)
        if should_retry(run.envelope, result):
            await self._retry(run, result)
        else:
            await self._finish(run, result)

    async def _retry(self, run: Run, result: TaskResult) -> None:
        env = run.envelope
        delay = backoff_seconds(env.attempt)
        nxt = next_attempt(env, result, delay)
        due_ms = int((nxt.eta or time.time()) * 1000)
        ok = await self._persist(run, lambda: self.streams.retry(self.consumer, run.delivery, nxt, due_ms))
        if ok:
            self.log(env, run.started, result, retry_in_ms=int(delay * 1000))

    async def _persist(self, run: Run, write: Callable[[], Awaitable[bool]]) -> bool:
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
                                task_id=run.task_id, error=str(exc) or repr(exc))
                if not isinstance(exc, UNANSWERED) and time.monotonic() > give_up:
                    log.error("Redis refuses the task outcome", task_id=run.task_id, error=str(exc))
                    return False
                await asyncio.sleep(delay)
                delay = min(delay * 2, PERSIST_DELAY_MAX)

    async def _skip(self, run: Run, status: TaskStatus, exception: str) -> None:
        """End a task that never started (expired, cancelled, refused)."""
        run.slot.release()
        run.finishing()
        await self._finish(run, skipped_result(run.envelope, status, exception))

    async def _duplicate(self, run: Run) -> None:
        """The task already has a result: ack the entry, never run it again."""
        run.slot.release()
        run.finishing()
        try:
            await self.streams.ack_duplicate(self.consumer, run.delivery)
        except Exception as exc:
            log.warning("cannot ack a duplicate entry", task_id=run.task_id, error=str(exc))
        self.counts["duplicate"] += 1
        log.info("duplicate delivery acked; task already completed", task_id=run.task_id,
                 func_id=run.envelope.func_id)

    async def dead_letter(self, d: Delivery) -> None:
        """An entry delivered too often (it keeps killing workers): dead-letter it."""
        env = d.envelope
        limit = self.ws.max_deliveries
        result = skipped_result(env, TaskStatus.DEAD,
                                f"FuncDead: delivered {d.count} times without completing "
                                f"(max_deliveries={limit}); moved to the dead-letter stream")
        ttl = result_ttl_ms(env, self.settings.tasks.result_ttl)
        started = time.monotonic()
        try:
            ok = await self.streams.dead(self.consumer, d, result, result_ttl_ms=ttl,
                                         reason=f"max deliveries exceeded ({d.count} > {limit})")
        except Exception as exc:
            log.error("cannot dead-letter an entry", task_id=env.id, error=str(exc))
            return
        if ok:
            self.records.add(result, env.kwargs)
            self.log(env, started, result)

    # --- the task line ------------------------------------------------------------------------------
    def log(self, env: TaskEnvelope, started: float, result: TaskResult, **extra: object) -> None:
        """The one log line of a task attempt (``started``: monotonic time it was read)."""
        status = _VALUE[result.status]
        self.counts[status] += 1
        if result.start_time and result.end_time:
            duration_ms = round((result.end_time - result.start_time) * 1000, 1)
        else:
            duration_ms = round((time.monotonic() - started) * 1000, 1)
        origin = _VALUE[env.origin]
        if result.status is _SUCCESS:
            self._task_line("task", task_id=env.id, func_id=env.func_id, origin=origin, status=status,
                            duration_ms=duration_ms, attempt=env.attempt, **extra)
        else:
            self._task_line("task", task_id=env.id, func_id=env.func_id, origin=origin, status=status,
                            duration_ms=duration_ms, attempt=env.attempt,
                            error=(result.exception or "")[:300], **extra)


def _unstarted(run: Run) -> Outcome:
    """The outcome of a run stopped before it was submitted (cancelled, lost, released)."""
    return Outcome.unstarted(run.stop_reason or End.SHUTDOWN)
