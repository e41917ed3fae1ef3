"""The worker: one consumer's fetch loop and the shutdown sequence.

One :class:`Worker` is one consumer (``{host}-{pid}-{rand}``) of the group ``workers`` on
each of its queues, with a pool of ``worker.concurrency`` child processes.

Fetching. The loop acquires the free slots before it reads, and reads one entry per slot (a
slot is a child that is not running a task; with the opt-in ``worker.read_ahead``, plus one
per child while the recent runs were short: :mod:`~fluxfunc_worker.slots`); each entry read
is a :class:`~fluxfunc_worker.run.Run` holding one slot. It probes
the queues in priority order (the order of ``worker.queues``) before one blocking read over
all of them; reading and each entry's start check (already completed? cancelled? running
marker) are one script call (``StreamProtocol.claim``) on the hot-path connection
(:mod:`~fluxfunc_common.lane`), and completions of finished tasks ride in the same round
trip. Under backlog a claim goes out for every slot that frees up, without waiting for the
one on the wire.
Every ``worker.reclaim_seconds`` it first reclaims entries idle past the lease (their consumer
died); an entry delivered more than ``worker.max_deliveries`` times is dead-lettered instead
of run. At start, and after any read error, the consumer's own pending entries are adopted (a
lost read reply must not strand them). What happens to an entry once held is
:mod:`fluxfunc_worker.runs`.

Shutdown (first SIGTERM/SIGINT): stop fetching and starting (entries read ahead are released
at once); let running tasks finish within
``worker.drain_seconds`` (leases keep being renewed); release what is left (owner-checked
``XCLAIM … IDLE``) so any other worker reclaims it at once, and stop those children; flush
completions and records. A second signal skips the rest of the drain.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Callable, Sequence

from redis.exceptions import RedisError

from fluxfunc_common.errors import Unavailable
from fluxfunc_common.lane import open_lane
from fluxfunc_common.lifecycle import Shutdown, every, sleep_or_stop
from fluxfunc_common.logs import get_logger
from fluxfunc_common.redisconn import RedisClients
from fluxfunc_common.settings import Settings
from fluxfunc_common.store import Store
from fluxfunc_common.streams import Delivery, StreamProtocol
from fluxfunc_worker.completion import Completer
from fluxfunc_worker.dffcalls import DffCalls
from fluxfunc_worker.events import EventListener
from fluxfunc_worker.knownsecrets import KnownSecrets
from fluxfunc_worker.lease import Inflight, LeaseKeeper
from fluxfunc_worker.packages import PackageManager
from fluxfunc_worker.pool import Pool
from fluxfunc_worker.published import PublishedScripts
from fluxfunc_worker.records import RecordBatcher
from fluxfunc_worker.run import Run
from fluxfunc_worker.runs import Runs
from fluxfunc_worker.slots import Slot, SlotBatch, Slots

log = get_logger("worker")

MAX_BLOCK_MS = 2000
PROMOTE_SECONDS = 0.5
RELEASE_STOP_SECONDS = 3.0
PREFETCH_SHORT_SECONDS = 0.02  # runs shorter than this let the worker read ahead (Slots)
LANE_TIMEOUT = 10.0  # seconds a hot-path round trip may take before the connection is dropped
CLAIM_MAX = 256  # entries one claim reads at most (async children have thousands of places)


class Worker:
    """One worker process's consumer (see the module docstring)."""

    def __init__(self, settings: Settings, clients: RedisClients, store: Store, *, instance: str,
                 task_line: Callable[..., None] | None = None) -> None:
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
        self.lane = open_lane(clients.main, timeout=LANE_TIMEOUT, fast=ws.fast_paths)
        self.streams = StreamProtocol(clients.main, clients.keys, blocking=clients.blocking,
                                      runner=self.lane.execute)
        self.published = PublishedScripts(store, clients.main, clients.keys)
        self.calls = DffCalls(settings, clients, store, self.streams, self.published)
        self.pool = Pool(ws.concurrency, max_tasks=ws.max_tasks_per_child, memory_mb=ws.max_memory_mb,
                         rpc=self.calls, gen=self.published.stamp, use_zygote=ws.fast_paths,
                         async_limit=ws.async_per_child, on_capacity=lambda n: self.slots.resize(n))
        self.slots = Slots(ws.concurrency, extra=ws.concurrency if ws.read_ahead else 0,
                           short_seconds=PREFETCH_SHORT_SECONDS, batch_max=CLAIM_MAX)
        self.inflight = Inflight()
        self.completer = Completer(self.streams, instance)
        self.records = RecordBatcher(store, ws.record_batch_seconds, secrets=KnownSecrets(settings, store))
        self.runs = Runs(settings, self.streams, self.pool, consumer=instance, inflight=self.inflight,
                         slots=self.slots, completer=self.completer, records=self.records,
                         task_line=task_line, kinds=self.published)
        self.leases = LeaseKeeper(self.streams, clients.main, clients.keys, instance, self.inflight,
                                  marker_ttl_ms=2 * self.lease_ms)
        self.events = EventListener(clients.main, clients.keys, on_cancel=self.cancel,
                                    on_publish=self.published.poke, on_env=self.calls.forget_env)
        self.packages = PackageManager(settings, clients.main, clients.keys, store, self.pool,
                                       instance=instance)
        self._cursors: dict[str, str] = {}
        self._released = 0
        self._backlog = False  # the last claim filled every slot it asked for
        self._claims: set[asyncio.Task[None]] = set()  # pipelined claims on the wire
        self._claim_failed: BaseException | None = None

    # --- the whole life ------------------------------------------------------------------------
    async def run(self, shutdown: Shutdown) -> int:
        """Serve until the first signal, then drain, release and flush; the exit code."""
        try:
            await self.streams.ensure_groups(self.queues)
            await self.published.refresh()
        except RedisError as exc:
            raise Unavailable(f"Redis failed at start: {exc}") from None
        await self.packages.prepare()  # the extra packages are installed before any claim
        chores = asyncio.Event()
        background = [
            asyncio.create_task(self.events.run(chores), name="events"),
            asyncio.create_task(self.published.watch(chores), name="scripts-version"),
            asyncio.create_task(self.packages.watch(chores), name="packages"),
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
        await self.lane.close()
        log.info("worker stopped", consumer=self.consumer, released=self._released,
                 records_written=self.records.written, record_flushes=self.records.flushes,
                 tasks=dict(self.runs.counts))
        return code

    async def _shutdown(self, shutdown: Shutdown, fetcher: asyncio.Task[None]) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.ws.drain_seconds
        self.slots.wake()
        log.info("stopping: draining running tasks", running=len(self.inflight),
                 drain_seconds=self.ws.drain_seconds)
        forced = asyncio.create_task(shutdown.forced.wait())
        self.pool.hold()  # stop fetching, and stop starting what was read ahead
        held_back = self._hold_back()
        try:
            await asyncio.wait([fetcher, forced], timeout=max(0.0, deadline - loop.time()),
                               return_when=asyncio.FIRST_COMPLETED)
            await self._release(held_back + self._hold_back())
            while self.runs.tasks and not forced.done() and loop.time() < deadline:
                await asyncio.wait([*self.runs.tasks, forced], timeout=deadline - loop.time(),
                                   return_when=asyncio.FIRST_COMPLETED)
        finally:
            forced.cancel()
        if shutdown.forced.is_set():
            log.warning("second signal: drain cut short")
        if not fetcher.done():
            fetcher.cancel()
        await self._release([r for r in self.inflight if not r.abandoned])
        if self.runs.tasks:
            await asyncio.wait(self.runs.tasks, timeout=RELEASE_STOP_SECONDS)

    def _hold_back(self) -> list[Run]:
        """Entries read ahead (or brought by a claim on the wire at the signal) that no child
        has started: they never start now; handed back by :meth:`_release`."""
        return [r for r in self.inflight if r.waiting and r.release()]

    async def _release(self, left: list[Run]) -> None:
        """Hand back entries still held — read ahead and never started (at the start of the
        drain), or still running when it ends — and stop the children running them."""
        if not left:
            return
        for r in left:
            r.release()
        released = 0
        try:
            released = await self.streams.release(self.consumer, [r.delivery for r in left],
                                                  lease_ms=self.lease_ms)
            self._released += released
            await self.redis.delete(*[self.keys.running(r.task_id) for r in left])
        except Exception as exc:  # not lost: the entries come back after the lease
            log.warning("cannot release entries; they will be reclaimed after the lease",
                        error=str(exc), entries=len(left))
        log.info("released unfinished tasks for immediate reclaim", released=released,
                 tasks=[r.task_id for r in left])

    async def _flush_all(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.completer.close(), 5)
        for task in list(self.runs.tasks):
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

    def describe(self) -> dict[str, object]:
        """Extra fields of this process's heartbeat."""
        return {"queues": self.queues, "concurrency": self.ws.concurrency, "consumer": self.consumer,
                "busy": self.pool.busy, "inflight": len(self.inflight), "tasks": dict(self.runs.counts),
                "records": {"written": self.records.written, "flushes": self.records.flushes,
                            "buffered": self.records.buffered},
                "completions": {"done": self.completer.completed, "batches": self.completer.batches},
                "pool": self.pool.describe(), "readAhead": self.slots.extra,
                "packages": self.packages.describe()}

    # --- fetching ----------------------------------------------------------------------------
    async def _fetch_loop(self, stop: asyncio.Event) -> None:
        try:
            await self._fetch(stop)
        finally:
            await self._claims_landed()
            self.completer.kick()

    async def _fetch(self, stop: asyncio.Event) -> None:
        await self._adopt_own_pending()
        next_reclaim = 0.0
        failures = 0
        while not stop.is_set():
            if self._claim_failed is not None:  # a pipelined claim failed
                exc, self._claim_failed = self._claim_failed, None
                failures = await self._recover(stop, exc, failures + 1)
                continue
            if self.slots.free <= 0:
                self.completer.kick()  # not coming back for them until a slot frees
            try:
                with await self.slots.acquire() as batch:  # what is not taken goes back
                    if not batch or stop.is_set():
                        continue  # woken to look at the stop flag
                    if time.monotonic() >= next_reclaim:
                        next_reclaim = time.monotonic() + self.ws.reclaim_seconds * random.uniform(0.8, 1.2)
                        await self._reclaim(batch)
                    if not batch or stop.is_set():
                        continue
                    if self._backlog:
                        self._pipeline_claim(batch.handover())
                        continue
                    await self._claims_landed()
                    await self._claim(batch, self.block_ms)
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures = await self._recover(stop, exc, failures + 1)

    async def _recover(self, stop: asyncio.Event, exc: BaseException, failures: int) -> int:
        """After a failed round trip: back off, then adopt what may have been delivered."""
        self.completer.kick()
        log.warning("fetch failed; retrying", error=str(exc) or repr(exc), failures=failures)
        await sleep_or_stop(stop, min(0.1 * 2 ** failures, 5.0))
        await self._claims_landed()
        with contextlib.suppress(Exception):
            if "NOGROUP" in str(exc):  # Redis lost its data (restart without persistence)
                await self.streams.ensure_groups(self.queues)
            await self._adopt_own_pending()
        return failures

    def _pipeline_claim(self, batch: SlotBatch) -> None:
        """Under backlog: claim for the slots free now without waiting for the reply, so a
        child that frees up while another claim is on the wire is refilled by its own claim
        (the lane keeps both on one connection, answered in order)."""
        async def claim() -> None:
            try:
                with batch:  # held by this claim; it gives back what it does not fill
                    await self._claim(batch, 0)
            except Exception as exc:
                self._backlog = False
                self._claim_failed = exc
                self.slots.wake()

        task = asyncio.create_task(claim())
        self._claims.add(task)
        task.add_done_callback(self._claims.discard)

    async def _claims_landed(self) -> None:
        """Wait for the pipelined claims on the wire (their entries are held once they land)."""
        if self._claims:
            await asyncio.wait(list(self._claims), timeout=LANE_TIMEOUT + 1)

    async def _claim(self, batch: SlotBatch, block_ms: int) -> None:
        """Read and start up to one entry per slot of ``batch`` in one round trip
        (``block_ms`` > 0: wait that long when nothing is there); finished tasks waiting for
        their completion ride along in the same pipeline. The new runs are sent to children
        before the finished tasks' bookkeeping resumes."""
        asked = len(batch)
        finished = self.completer.take()
        try:
            done, claimed = await self.streams.claim(
                self.consumer, self.queues, asked, marker_ttl_ms=2 * self.lease_ms,
                block_ms=block_ms, completions=[(d, r, t) for d, r, t, _ in finished])
        except BaseException as exc:
            self.completer.fail(finished, exc)
            raise
        self._backlog = len(claimed) >= asked
        # XREADGROUP's COUNT is per stream: with several queues a read may bring more entries
        # than the batch has slots; those are ours already and are held beyond the count
        self.runs.dispatch([(self.inflight.add(c.delivery, self._slot(batch)), c.start)
                            for c in claimed if not self.inflight.adopt(c.delivery)])
        self.completer.settle(finished, done)

    async def _adopt_own_pending(self) -> None:
        """Entries delivered to this consumer but not held (a read whose reply was lost)."""
        pending = await self.streams.read_own_pending(self.consumer, self.queues)
        orphans = [d for d in pending if (d.queue, d.entry_id) not in self.inflight]
        if orphans:
            log.info("adopting own pending entries", entries=len(orphans))
            await self._start(orphans, None)

    async def _reclaim(self, batch: SlotBatch) -> None:
        """XAUTOCLAIM entries idle past the lease, one per slot of ``batch``."""
        for queue in self.queues:
            free = len(batch)
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
                await self._start(found.deliveries, batch)

    # --- starting ------------------------------------------------------------------------------
    async def _start(self, deliveries: Sequence[Delivery], batch: SlotBatch | None) -> None:
        """Hold entries got by reclaim (a slot of ``batch`` each) or own-pending adoption
        (``None``: slots whatever the count, they are ours already), check them in one script
        call, and start what may run (entries delivered too often are dead-lettered instead)."""
        held: list[Run] = []
        for d in deliveries:
            if self.inflight.adopt(d):
                continue  # ours already, running here: keep it under the new lease token
            if d.count > self.ws.max_deliveries:
                self.runs.spawn(self.runs.dead_letter(d))
            else:
                held.append(self.inflight.add(d, self._slot(batch)))
        if not held:
            return
        try:
            starts = await self.streams.start(self.consumer, [r.delivery for r in held],
                                              marker_ttl_ms=2 * self.lease_ms)
        except BaseException:
            for r in held:  # still pending for us: adopted again after the error
                self.inflight.remove(r)
                r.done()
            raise
        self.runs.dispatch(list(zip(held, starts, strict=True)))

    def _slot(self, batch: SlotBatch | None) -> Slot:
        if batch:
            return batch.take()
        return self.slots.acquire_nowait(1, beyond=True).take()

    # --- signals from outside --------------------------------------------------------------------
    def cancel(self, task_id: str) -> None:
        """A cancel event: stop the run of ``task_id`` if this worker holds it."""
        run = self.inflight.by_task(task_id)
        if run is not None:
            run.cancel()

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
            await sleep_or_stop(stop, PROMOTE_SECONDS)

