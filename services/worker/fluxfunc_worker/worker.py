"""The worker: fetch loop, task runs, and the shutdown sequence (SPEC §5, §7).

One :class:`Worker` is one consumer (``{host}-{pid}-{rand}``) of the group ``workers`` on
each of its queues, with a pool of ``worker.concurrency`` child processes.

Fetching. The loop reads only as many entries as there are free slots (a slot is a child
that is not running a task), probing the queues in priority order (the order of
``worker.queues``) before one blocking read over all of them. Every
``worker.reclaim_seconds`` it first reclaims entries idle past the lease (their consumer
died) with ``XAUTOCLAIM``; an entry delivered more than ``worker.max_deliveries`` times is
dead-lettered instead of run. At start, and after any read error, the consumer's own
pending entries are adopted (a lost read reply must not strand them).

Starting. For each batch one pipelined round trip checks every task's result key (already
completed → ack, never run twice) and cancel flag, and sets its running marker; an expired
task (``expires`` passed) ends ``expired``, a flagged one ``cancelled``, without running.

Ending. A run that failed or timed out with attempts left (``retries=`` of the func) goes back
to the delayed set with exponential backoff and jitter; everything else is completed through
the batching :class:`~fluxfunc_worker.completion.Completer`, recorded by the
:class:`~fluxfunc_worker.records.RecordBatcher`, and logged in one line.

Shutdown (first SIGTERM/SIGINT): stop fetching; let running tasks finish within
``worker.drain_seconds`` (leases keep being renewed); release what is left (owner-checked
``XCLAIM … IDLE``) so any other worker reclaims it at once, and stop those children; flush
completions and records. A second signal skips the rest of the drain.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

from fluxfunc_common.envelope import TaskEnvelope, TaskResult, TaskStatus
from fluxfunc_common.lifecycle import Shutdown, every
from fluxfunc_common.logs import get_logger
from fluxfunc_common.redisconn import RedisClients
from fluxfunc_common.settings import Settings
from fluxfunc_common.store import Store
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
from fluxfunc_worker.dffcalls import DffCalls
from fluxfunc_worker.events import EventListener
from fluxfunc_worker.lease import Inflight, LeaseKeeper, Running
from fluxfunc_worker.pool import Outcome, Pool
from fluxfunc_worker.published import PublishedScripts
from fluxfunc_worker.records import RecordBatcher

log = get_logger("worker")

MAX_BLOCK_MS = 2000
PROMOTE_SECONDS = 0.5
RELEASE_STOP_SECONDS = 3.0
GATHER_TURNS = 10  # event-loop turns a backlogged fetch waits for more children to free up
STOPPED = frozenset({"shutdown", "released", "lost"})  # outcomes of runs stopped by the worker itself


class Slots:
    """Free children: the fetch loop reads no more entries than this."""

    def __init__(self, size: int) -> None:
        self.free = size
        self._event = asyncio.Event()
        self._event.set()

    def take(self, n: int) -> None:
        self.free -= n
        if self.free <= 0:
            self._event.clear()

    def give(self, n: int = 1) -> None:
        self.free += n
        self._event.set()

    def wake(self) -> None:
        """Let a waiting fetch loop look at its stop flag."""
        self._event.set()

    async def wait(self) -> None:
        await self._event.wait()


def run_message(env: TaskEnvelope) -> dict[str, Any]:
    """The ``run`` frame a child executes."""
    return {"t": "run", "id": env.id, "func": env.func_id, "kwargs": env.kwargs,
            "origin": env.origin.value, "originId": env.origin_id, "triggerTime": env.trigger_time,
            "cronExpr": env.cron_expr, "httpRequest": env.http_request, "callChain": env.call_chain,
            "traceId": env.trace_id, "queue": env.queue, "attempt": env.attempt}


class Worker:
    """One worker process's consumer (see the module docstring)."""

    def __init__(self, settings: Settings, clients: RedisClients, store: Store, *, instance: str) -> None:
        ws = settings.worker
        self.settings = settings
        self.ws = ws
        self.redis = clients.main
        self.keys = clients.keys
        self.store = store
        self.consumer = instance
        self.queues = list(ws.queues)
        self.lease_ms = int(ws.lease_seconds * 1000)
        self.block_ms = max(100, min(MAX_BLOCK_MS, int(ws.reclaim_seconds * 1000)))
        self.streams = StreamProtocol(clients.main, clients.keys, blocking=clients.blocking)
        self.published = PublishedScripts(store, clients.main, clients.keys)
        self.calls = DffCalls(settings, clients, store, self.streams, self.published)
        self.pool = Pool(ws.concurrency, max_tasks=ws.max_tasks_per_child, memory_mb=ws.max_memory_mb,
                         rpc=self.calls, gen=lambda: self.published.gen)
        self.slots = Slots(ws.concurrency)
        self.inflight = Inflight()
        self.leases = LeaseKeeper(self.streams, clients.main, clients.keys, instance, self.inflight,
                                  marker_ttl_ms=2 * self.lease_ms, on_lost=self._lost,
                                  on_cancel=self._cancel_running)
        self.completer = Completer(self.streams, instance, hold=lambda: self._carrying)
        self._carrying = False  # a claim carrying completions (so it cannot block) is on the wire
        self.records = RecordBatcher(store, ws.record_batch_seconds)
        self.events = EventListener(clients.main, clients.keys, on_cancel=self.cancel,
                                    on_publish=self.published.poke)
        self.counts: Counter[str] = Counter()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._cursors: dict[str, str] = {}
        self._released = 0
        self._backlog = False

    # --- the whole life ------------------------------------------------------------------------
    async def run(self, shutdown: Shutdown) -> int:
        """Serve until the first signal, then drain, release and flush; the exit code."""
        await self.streams.ensure_groups(self.queues)
        await self.published.refresh()
        chores = asyncio.Event()
        background = [
            asyncio.create_task(self.events.run(chores), name="events"),
            asyncio.create_task(self.published.watch(chores), name="scripts-version"),
            asyncio.create_task(every(self.ws.heartbeat_interval, self.leases.renew, chores), name="leases"),
            asyncio.create_task(self.records.run(chores), name="records"),
            asyncio.create_task(self._promote_fallback(chores), name="promote"),
        ]
        fetcher = asyncio.create_task(self._fetch_loop(shutdown.stopping), name="fetch")
        stopping = asyncio.create_task(shutdown.stopping.wait())
        log.info("worker started", consumer=self.consumer, queues=self.queues,
                 concurrency=self.ws.concurrency, lease_seconds=self.ws.lease_seconds)
        await asyncio.wait([fetcher, stopping], return_when=asyncio.FIRST_COMPLETED)
        code = 0
        if fetcher.done() and fetcher.exception() is not None:
            log.error("fetch loop failed", error=repr(fetcher.exception()))
            code = 1
        stopping.cancel()
        shutdown.stopping.set()
        await self._shutdown(shutdown, fetcher)
        chores.set()
        await asyncio.wait(background, timeout=5)
        for task in background:
            task.cancel()
        await self._flush_all()
        log.info("worker stopped", consumer=self.consumer, released=self._released,
                 records_written=self.records.written, record_flushes=self.records.flushes,
                 tasks=dict(self.counts))
        return code

    async def _shutdown(self, shutdown: Shutdown, fetcher: asyncio.Task[None]) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.ws.drain_seconds
        self.slots.wake()
        log.info("stopping: draining running tasks", running=len(self.inflight),
                 drain_seconds=self.ws.drain_seconds)
        forced = asyncio.create_task(shutdown.forced.wait())
        try:
            await asyncio.wait([fetcher, forced], timeout=max(0.0, deadline - loop.time()),
                               return_when=asyncio.FIRST_COMPLETED)
            while self._tasks and not forced.done() and loop.time() < deadline:
                await asyncio.wait([*self._tasks, forced], timeout=deadline - loop.time(),
                                   return_when=asyncio.FIRST_COMPLETED)
        finally:
            forced.cancel()
        if shutdown.forced.is_set():
            log.warning("second signal: drain cut short")
        if not fetcher.done():
            fetcher.cancel()
        await self._release_left()

    async def _release_left(self) -> None:
        """Hand back every entry still held, then stop the children running them."""
        left = [r for r in self.inflight if not r.abandoned]
        if not left:
            return
        for r in left:
            r.released = True
        try:
            self._released = await self.streams.release(self.consumer, [r.delivery for r in left],
                                                        lease_ms=self.lease_ms)
            await self.redis.delete(*[self.keys.running(r.task_id) for r in left])
        except Exception as exc:  # not lost: the entries come back after the lease
            log.warning("cannot release entries; they will be reclaimed after the lease",
                        error=str(exc), entries=len(left))
        log.info("released unfinished tasks for immediate reclaim", released=self._released,
                 tasks=[r.task_id for r in left])
        for r in left:
            self.pool.stop_task(r.task_id, "shutdown")
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=RELEASE_STOP_SECONDS)

    async def _flush_all(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.completer.close(), 5)
        for task in list(self._tasks):
            task.cancel()
        try:
            await self.records.flush()
        except Exception as exc:
            log.error("task records not written at shutdown", error=str(exc),
                      records=self.records.buffered)
        if not self._released:
            for queue in self.queues:
                with contextlib.suppress(Exception):
                    await self.streams.delete_consumer_if_empty(queue, self.consumer)

    def describe(self) -> dict[str, Any]:
        """Extra fields of this process's heartbeat."""
        return {"queues": self.queues, "concurrency": self.ws.concurrency, "consumer": self.consumer,
                "busy": self.pool.busy, "inflight": len(self.inflight), "tasks": dict(self.counts),
                "records": {"written": self.records.written, "flushes": self.records.flushes,
                            "buffered": self.records.buffered},
                "completions": {"done": self.completer.completed, "batches": self.completer.batches}}

    # --- fetching ----------------------------------------------------------------------------
    async def _fetch_loop(self, stop: asyncio.Event) -> None:
        try:
            await self._fetch(stop)
        finally:
            self.completer.kick()

    async def _fetch(self, stop: asyncio.Event) -> None:
        await self._adopt_own_pending()
        next_reclaim = 0.0
        failures = 0
        while not stop.is_set():
            if self.slots.free <= 0:
                self.completer.kick()  # not coming back for them until a slot frees
                await self.slots.wait()
                continue
            try:
                if time.monotonic() >= next_reclaim:
                    next_reclaim = time.monotonic() + self.ws.reclaim_seconds * random.uniform(0.8, 1.2)
                    await self._reclaim()
                if self.slots.free <= 0 or stop.is_set():
                    continue
                if self._backlog:
                    await self._gather_slots()
                await self._claim()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                self.completer.kick()
                log.warning("fetch failed; retrying", error=str(exc) or repr(exc), failures=failures)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), min(0.1 * 2 ** failures, 5.0))
                with contextlib.suppress(Exception):
                    await self._adopt_own_pending()

    async def _gather_slots(self) -> None:
        """Under backlog, give children that are just finishing a few event-loop turns to
        report in (no timer, microseconds), so one round trip completes and refills them all
        instead of one round trip per child. Their completions wait for that round trip."""
        self._carrying = True
        try:
            for _ in range(GATHER_TURNS):
                if self.slots.free >= self.ws.concurrency:
                    break
                await asyncio.sleep(0)
        finally:
            self._carrying = False

    async def _claim(self) -> None:
        """Read and start up to the free slots in one round trip; finished tasks waiting for
        their completion ride along in the same pipeline."""
        batch = self.completer.take()
        asked = self.slots.free
        self._carrying = bool(batch)
        try:
            done, claimed = await self.streams.claim(
                self.consumer, self.queues, self.slots.free, marker_ttl_ms=2 * self.lease_ms,
                block_ms=self.block_ms, completions=[(d, r, t) for d, r, t, _ in batch])
        except BaseException as exc:
            self.completer.fail(batch, exc)
            raise
        finally:
            self._carrying = False
        self.completer.settle(batch, done)
        self._backlog = len(claimed) >= asked
        runs: list[tuple[Running, Start]] = []
        for c in claimed:
            if not self.inflight.adopt_count(c.delivery):
                runs.append((self.inflight.add(c.delivery), c.start))
        self.slots.take(len(runs))
        self._dispatch(runs)

    async def _adopt_own_pending(self) -> None:
        """Entries delivered to this consumer but not held (a read whose reply was lost)."""
        pending = await self.streams.read_own_pending(self.consumer, self.queues)
        orphans = [d for d in pending if (d.queue, d.entry_id) not in self.inflight]
        if orphans:
            log.info("adopting own pending entries", entries=len(orphans))
            await self._start(orphans)

    async def _reclaim(self) -> None:
        """XAUTOCLAIM entries idle past the lease, as many as there are free slots."""
        for queue in self.queues:
            free = self.slots.free
            if free <= 0:
                return
            found = await self.streams.reclaim(self.consumer, queue, min_idle_ms=self.lease_ms,
                                               count=free, cursor=self._cursors.get(queue, "0-0"))
            self._cursors[queue] = found.cursor
            if found.deleted:
                log.warning("pending entries vanished from the stream", queue=queue,
                            entries=found.deleted)
            if found.deliveries:
                log.info("reclaimed entries", queue=queue, entries=len(found.deliveries))
                await self._start(found.deliveries)

    # --- starting ------------------------------------------------------------------------------
    async def _start(self, deliveries: Sequence[Delivery]) -> None:
        """Hold entries got by reclaim or own-pending adoption, check them in one script call,
        and start what may run (entries delivered too often are dead-lettered instead)."""
        held: list[Running] = []
        for d in deliveries:
            if d.count > self.ws.max_deliveries:
                self._spawn(self._dead(d))
            elif not self.inflight.adopt_count(d):
                held.append(self.inflight.add(d))
        if not held:
            return
        self.slots.take(len(held))
        try:
            starts = await self.streams.start(self.consumer, [r.delivery for r in held],
                                              marker_ttl_ms=2 * self.lease_ms)
        except BaseException:
            for r in held:
                self.inflight.remove(r)  # still pending for us: adopted again after the error
            self.slots.give(len(held))
            raise
        self._dispatch(list(zip(held, starts, strict=True)))

    def _dispatch(self, runs: Sequence[tuple[Running, Start]]) -> None:
        """Run, ack or end each started entry according to its start check."""
        now = time.time()
        for r, start in runs:
            env = r.delivery.envelope
            if start is Start.DONE:
                self._spawn(self._duplicate(r))
            elif start is Start.CANCELLED:
                self._spawn(self._skip(r, TaskStatus.CANCELLED,
                                       "FuncCancelled: the task was cancelled before it started"))
            elif env.expires is not None and env.expires < now:
                self._spawn(self._skip(r, TaskStatus.EXPIRED,
                                       "FuncExpired: the task expired before it started"))
            else:
                self._spawn(self._execute(r))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- running --------------------------------------------------------------------------------
    async def _execute(self, r: Running) -> None:
        env = r.delivery.envelope
        try:
            if r.cancel_requested:
                outcome = Outcome("cancelled", {"exception": "FuncCancelled: the task was cancelled "
                                                             "before it started"})
            else:
                outcome = await self.pool.run(run_message(env), env.timeout, abort=lambda: self._abort(r))
        except Exception as exc:  # a pool bug must not strand the entry: it is reclaimed later
            log.error("run failed in the worker", task_id=env.id, error=repr(exc))
            self.inflight.remove(r)
            return
        finally:
            self.slots.give()
        if r.lost or (r.released and outcome.status in STOPPED):
            self._forget(r)  # a run that finished just as it was released still completes below
            return
        result = result_from_outcome(env, outcome, r.start_time)
        if should_retry(env, result):
            await self._retry(r, result)
        else:
            await self._finish(r, result)

    def _abort(self, r: Running) -> str | None:
        if r.cancel_requested:
            return "cancelled"
        if r.abandoned:
            return "lost" if r.lost else "released"
        return None

    def _forget(self, r: Running) -> None:
        """A run whose entry is no longer ours: write nothing."""
        self.inflight.remove(r)
        self.counts["lost" if r.lost else "released"] += 1
        if r.lost:
            log.warning("lease lost: another worker owns the task now; result discarded",
                        task_id=r.task_id, func_id=r.delivery.envelope.func_id)

    async def _finish(self, r: Running, result: TaskResult) -> None:
        ttl = result_ttl_ms(r.delivery.envelope, self.settings.tasks.result_ttl)
        ok = await self._persist(r, lambda: self.completer.complete(r.delivery, result, ttl))
        self.inflight.remove(r)
        if ok:
            self.records.add(result)
            self._log(r, result)
        elif ok is False and not r.released:
            self.counts["stale"] += 1
            log.warning("entry no longer ours at completion; result discarded", task_id=r.task_id)

    async def _retry(self, r: Running, result: TaskResult) -> None:
        env = r.delivery.envelope
        delay = backoff_seconds(env.attempt)
        nxt = next_attempt(env, result, delay)
        due_ms = int((nxt.eta or time.time()) * 1000)
        ok = await self._persist(r, lambda: self.streams.retry(self.consumer, r.delivery, nxt, due_ms))
        self.inflight.remove(r)
        if ok:
            self._log(r, result, retry_in_ms=int(delay * 1000))

    async def _persist(self, r: Running, write: Callable[[], Awaitable[bool]]) -> bool | None:
        """Run an owner-checked write, trying again on Redis errors while the lease holds.
        None when it could not be written (the entry is reclaimed and run again later)."""
        delay = 0.05
        give_up = time.monotonic() + self.ws.lease_seconds
        while True:
            try:
                return await write()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if r.abandoned or time.monotonic() + delay > give_up:
                    log.error("cannot write the task outcome; it will run again elsewhere",
                              task_id=r.task_id, error=str(exc))
                    return None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

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

    async def _dead(self, d: Delivery) -> None:
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
            self._log(Running(d), result)

    # --- signals from outside --------------------------------------------------------------------
    def cancel(self, task_id: str) -> None:
        """A cancel event: stop the run of ``task_id`` if this worker holds it."""
        r = self.inflight.by_task(task_id)
        if r is not None:
            self._cancel_running(r)

    def _cancel_running(self, r: Running) -> None:
        if r.cancel_requested or r.abandoned:
            return
        r.cancel_requested = True
        self.pool.stop_task(r.task_id, "cancelled")
        log.info("cancel requested", task_id=r.task_id)

    def _lost(self, r: Running) -> None:
        self.pool.stop_task(r.task_id, "lost")

    # --- delayed tasks without a Beat ---------------------------------------------------------------
    async def _promote_fallback(self, stop: asyncio.Event) -> None:
        """Promote due delayed tasks (retry backoff, ETA) of this worker's queues while no Beat
        leader does: the mover is atomic and idempotent, so a Beat doing it too is harmless."""
        while not stop.is_set():
            try:
                if not await self.redis.exists(self.keys.beat_leader()):
                    for queue in self.queues:
                        await self.streams.promote(queue)
            except Exception as exc:
                log.debug("promote failed", error=str(exc))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), PROMOTE_SECONDS)

    # --- the task line ------------------------------------------------------------------------------
    def _log(self, r: Running, result: TaskResult, **extra: Any) -> None:
        """The one log line of a task attempt."""
        env = r.delivery.envelope
        status = result.status.value
        self.counts[status] += 1
        if result.start_time and result.end_time:
            duration_ms = round((result.end_time - result.start_time) * 1000, 1)
        else:
            duration_ms = round((time.monotonic() - r.started) * 1000, 1)
        if result.status is TaskStatus.SUCCESS:
            log.info("task", task_id=env.id, func_id=env.func_id, origin=env.origin.value, status=status,
                     duration_ms=duration_ms, attempt=env.attempt, **extra)
        else:
            log.info("task", task_id=env.id, func_id=env.func_id, origin=env.origin.value, status=status,
                     duration_ms=duration_ms, attempt=env.attempt, error=(result.exception or "")[:300],
                     **extra)
