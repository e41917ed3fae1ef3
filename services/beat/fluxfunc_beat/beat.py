"""The Beat: every process fires its share of the cron jobs; one of them also runs the chores.

Every Beat process:

1. knows every cron job and func and keeps them current (:mod:`catalog`: the
   ``cron:changed`` stream, ``scripts:version``, a full reload every 5 minutes);
2. leases a fair share of the job partitions (:mod:`partitions`) and fires the due jobs of
   the partitions it holds (:mod:`firing`: bounded batches prepared ahead and sent on time,
   fenced by the partition epochs, misfire policy when it falls behind), with fire times taken
   from Redis ``TIME`` (offset refreshed every minute);
3. is a candidate for the **chores lease** (:mod:`leader`): the one holding it also runs the
   delayed-task promoter, the janitor, queue discovery and the subscriptions, which must run
   exactly once per deployment. When a renew fails for longer than the lease minus a margin,
   the chores stop at once (the helper loops end on a flag, never by cancelling a blocked
   read) and the process goes back to candidate; its firing goes on.

While only the store fails, fires go on without store claims for up to
``beat.store_outage_seconds`` (:class:`~fluxfunc_common.cron.CronFirer`); the claims are
written when it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
from collections.abc import Callable, Collection, Coroutine, Iterator
from typing import Any, TypeVar

from fluxfunc_beat import janitor, promoter
from fluxfunc_beat.catalog import JobCatalog
from fluxfunc_beat.firing import Scheduler
from fluxfunc_beat.jobs import JobTable
from fluxfunc_beat.leader import Leadership
from fluxfunc_beat.partitions import PartitionLeases, partition_of
from fluxfunc_beat.subscriptions import Supervisor
from fluxfunc_common import ids
from fluxfunc_common.clock import Clock, SystemClock
from fluxfunc_common.cron import CronFirer
from fluxfunc_common.lane import open_lane
from fluxfunc_common.lifecycle import every, sleep_or_stop
from fluxfunc_common.logs import get_logger
from fluxfunc_common.redisconn import RedisClients
from fluxfunc_common.settings import Settings
from fluxfunc_common.store import Store
from fluxfunc_common.streams import StreamProtocol

TIME_SYNC_SECONDS = 60.0
TIME_SAMPLES = 3  # Redis TIME reads per offset measurement (the quickest answer counts)
RESYNC_SECONDS = 300.0
QUEUE_DISCOVERY_SECONDS = 60.0
SUMMARY_SECONDS = 60.0
CLAIMS_RETRY_SECONDS = 2.0  # how often claims of fires made in a store outage are retried
FUNCS_POLL_SECONDS = 1.0
LATE_EXTRA_SECONDS = 10.0  # late window = lease + this: longer than any takeover
STOP_GRACE_SECONDS = 3.0  # the chores' loops end on their flag within this, or are cancelled
CANCEL_SECONDS = 1.0  # a task cancelled is cancelled again each loop iteration, this long at most

log = get_logger("beat")

Step = Callable[[], Coroutine[Any, Any, None]]
T = TypeVar("T")


class Beat:
    """One Beat process (see the module docstring)."""

    def __init__(self, settings: Settings, clients: RedisClients, store: Store, *,
                 clock: Clock | None = None, instance: str | None = None) -> None:
        self.settings, self.clients, self.store = settings, clients, store
        self.redis, self.keys = clients.main, clients.keys
        self.clock = clock or SystemClock()
        self.instance = instance or ids.instance_id()
        self.streams = StreamProtocol(clients.main, clients.keys, blocking=clients.blocking)
        lease = settings.beat.lease_seconds
        self.leadership = Leadership(self.redis, self.keys, lease_seconds=lease, clock=self.clock)
        self.partitions = PartitionLeases(self.redis, self.keys, partitions=settings.beat.partitions,
                                          lease_seconds=lease, token=self.leadership.token, clock=self.clock)
        # the moment's fire scripts go out on a connection of their own, packed ahead (lane)
        self.lane = open_lane(self.redis, fast=settings.worker.fast_paths)
        self.firer = CronFirer(self.redis, self.keys, self.streams, store, settings, clock=self.clock,
                               lane=self.lane)
        self.late_ms = int((lease + LATE_EXTRA_SECONDS) * 1000)
        self.queues: set[str] = set(settings.worker.queues)
        self.catalog = self._new_catalog()
        self.scheduler = Scheduler(settings.beat, self.firer, self.partitions, table=lambda: self.table,
                                   now_ms=self.now_ms, clock=self.clock, late_ms=self.late_ms,
                                   fenced=self._fenced)
        self.offset = 0.0  # Redis TIME − local clock, seconds
        self.loop_time = self.clock.time()  # last sign of life of the main loops (--check)
        self.ready = asyncio.Event()  # jobs loaded and a first round of partitions taken
        self.leading = asyncio.Event()  # set while holding the chores lease, once ready
        self._rebalance = False  # a partition was fenced: the table must follow

    def _new_catalog(self) -> JobCatalog:
        return JobCatalog(self.store, self.redis, self.clients.blocking, self.keys,
                          JobTable(self.settings.beat.timezone, late_ms=self.late_ms), self.queues,
                          now_ms=self.now_ms, changed=self._changed, owns=self.owns)

    @property
    def table(self) -> JobTable:
        return self.catalog.table

    def owns(self, cron_id: str) -> bool:
        """True when this Beat holds the partition of ``cron_id``."""
        return self.partitions.owns(partition_of(cron_id, self.partitions.count))

    def _changed(self) -> None:
        self.scheduler.missing_func.clear()  # warn again about a job whose func is still missing
        self.scheduler.wakeup.set()

    def _fenced(self, partitions: set[int]) -> None:
        for p in partitions:
            self.partitions.drop(p)
        self._rebalance = True

    def _alive(self) -> None:
        self.loop_time = self.clock.time()

    @property
    def fired(self) -> int:
        return self.scheduler.fired

    # --- time ------------------------------------------------------------------------------
    def now(self) -> float:
        """Redis time (epoch s), from the local clock plus the measured offset."""
        return self.clock.time() + self.offset

    def now_ms(self) -> int:
        return int(self.now() * 1000)

    async def sync_time(self) -> None:
        """Measure the Redis TIME offset so that :meth:`now` is never ahead of Redis: TIME was
        read at some instant of the round trip, so the offset counts it read at its end (a
        Redis busy with a batch answers late; assuming the middle put a loaded Beat's clock up
        to half that round trip ahead, and its fires early). Of a few samples, the one with the
        shortest round trip (the error is at most that, and only late)."""
        samples = []
        for _ in range(TIME_SAMPLES):
            before = self.clock.time()
            server = await self.streams.server_time()
            after = self.clock.time()
            samples.append((after - before, server - after))
        self.offset = min(samples)[1]

    def describe(self) -> dict[str, object]:
        """Extra fields of the heartbeat."""
        return {"leader": self.leadership.valid(), "epoch": self.leadership.epoch, "jobs": len(self.table),
                "partitions": sorted(self.partitions.held), "lagMs": self.scheduler.lag_report(),
                "shed": self.table.shed, "loopTime": self.loop_time}

    # --- the process ------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Fire this Beat's partitions and run the chores while leading, until ``stop``."""
        with _collect_between_ticks():
            try:
                if not await self._start(stop):
                    return
                steps: list[Step] = [
                    lambda: self._keep_partitions(stop),
                    lambda: self.scheduler.run(stop, self._alive),
                    lambda: self.catalog.follow(stop),
                    lambda: every(TIME_SYNC_SECONDS, self.sync_time, stop, first=False),
                    lambda: every(FUNCS_POLL_SECONDS, self.catalog.watch_funcs, stop, first=False),
                    lambda: every(RESYNC_SECONDS, self._resync, stop, first=False),
                    lambda: every(SUMMARY_SECONDS, self._summary, stop, first=False),
                    lambda: every(CLAIMS_RETRY_SECONDS, self._write_unclaimed, stop, first=False),
                    lambda: self._chores(stop),
                ]
                await _run_all(steps, stop)
            finally:
                await self.partitions.release_all()
                await self._summary()
                await self.lane.close()

    async def _start(self, stop: asyncio.Event) -> bool:
        """Measure the time offset and load every job, retried until it works (or ``stop``)."""
        while not stop.is_set():
            try:
                await self.sync_time()
                await self.catalog.start()
                log.info("jobs loaded", jobs=len(self.catalog.jobs), invalid=len(self.table.invalid))
                return True
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis/store trouble: try again
                log.warning("loading the cron jobs failed", error=str(exc))
                await sleep_or_stop(stop, self.leadership.poll_interval)
        return False

    async def _keep_partitions(self, stop: asyncio.Event) -> None:
        """Renew, shed and take partitions every round (sooner when a partition this Beat
        lacks lapses); the table follows."""
        while not stop.is_set():
            self._alive()
            try:
                change = await self.partitions.step()
                if change.gained or change.lost or self._rebalance:
                    self._rebalance = False
                    self.scheduler.forget()
                    await self.catalog.rebalance()
                self.ready.set()
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the leases lapse by themselves: owns() turns False
                log.warning("partition round failed", error=repr(exc))
                self._rebalance = True
            await sleep_or_stop(stop, self.partitions.next_round())

    async def _resync(self) -> None:
        await self.catalog.load_all()
        gc.collect()  # the full pass the Beat's GC regime leaves out otherwise

    async def _write_unclaimed(self) -> None:
        if self.firer.unclaimed:
            await self.firer.write_unclaimed()

    async def _summary(self) -> None:
        """One line a minute instead of one per fire."""
        counts = self.scheduler.counts
        if counts:
            log.info("cron fires", **dict(counts), jobs=len(self.table), partitions=len(self.partitions.held),
                     lag_ms=self.scheduler.lag_ms, shed=self.table.shed)
            counts.clear()

    # --- chores (one Beat per deployment) ------------------------------------------------------
    async def _chores(self, stop: asyncio.Event) -> None:
        """Candidate loop until ``stop``; runs the chores whenever the chores lease is ours."""
        while not stop.is_set():
            self._alive()
            try:
                if await self.leadership.try_acquire():
                    log.info("leadership acquired", epoch=self.leadership.epoch, instance=self.instance)
                    await self._lead(stop)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis trouble: hand the lease on, retry as candidate
                log.warning("beat round failed", error=str(exc))
                with contextlib.suppress(Exception):
                    await self.leadership.release()
                self.leadership.drop()
            if stop.is_set():
                break
            await sleep_or_stop(stop, self.leadership.poll_interval)
        with contextlib.suppress(Exception):
            await self.leadership.release()

    async def _lead(self, stop: asyncio.Event) -> None:
        lost = asyncio.Event()
        halt = asyncio.Event()  # set when leading ends: every chore loop checks it
        steps: list[Step] = [
            lambda: self._keep_lease(lost, halt),
            lambda: promoter.run_promoter(self.streams, lambda: self.queues, self.now_ms, halt),
            lambda: every(QUEUE_DISCOVERY_SECONDS, _unless(halt, self.discover_queues), halt),
            lambda: every(janitor.INTERVAL, _unless(halt, self.run_janitor), halt, first=False),
            lambda: Supervisor(self.store, self.redis, self.keys, self.streams, self.settings,
                               lambda func_id: self.catalog.funcs.get(func_id)).run(halt),
        ]
        tasks = [asyncio.create_task(step()) for step in steps]
        waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(lost.wait())]
        ready = asyncio.create_task(self.ready.wait())
        try:
            await asyncio.wait([ready, *waiters], return_when=asyncio.FIRST_COMPLETED)
            if self.ready.is_set() and not lost.is_set():
                self.leading.set()
            await asyncio.wait([*tasks, *waiters], return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.leading.clear()
            halt.set()
            for waiter in (*waiters, ready):
                waiter.cancel()
            # the loops end on `halt` (a blocked XREAD returns within its BLOCK); cancel stragglers
            _, late = await asyncio.wait(tasks, timeout=STOP_GRACE_SECONDS)
            await _cancel([*late, *waiters, ready])
        for error in _errors(tasks):
            log.warning("leader task failed", error=repr(error))
        if not stop.is_set():
            log.warning("leadership lost", epoch=self.leadership.epoch)
            self.leadership.drop()

    async def _keep_lease(self, lost: asyncio.Event, halt: asyncio.Event) -> None:
        """Renew every lease/3; give up as soon as the lease can no longer be trusted."""
        lead = self.leadership
        while not await sleep_or_stop(halt, lead.renew_interval):
            try:
                ok = await asyncio.wait_for(lead.renew(), timeout=max(lead.remaining(), 0.01))
            except Exception as exc:  # includes the timeout: Redis too slow to trust
                log.warning("lease renew failed", error=repr(exc))
                ok = lead.valid()
            if not ok or not lead.valid():
                lead.drop()
                lost.set()
                return

    async def discover_queues(self) -> None:
        """Add queues that have a stream or a delayed set (e.g. named by one call's options)."""
        self.queues |= await janitor.stream_queues(self.redis, self.keys)
        self.queues |= await promoter.delayed_queues(self.redis, self.keys)

    async def run_janitor(self) -> janitor.JanitorReport:
        jobs = self.catalog.jobs  # every job, whichever Beat fires it
        limits = {cid: job.task_record_limit for cid, job in jobs.items() if job.task_record_limit}
        return await janitor.sweep(self.redis, self.keys, self.streams, self.store, self.settings,
                                   queues=self.queues, now=self.now(), record_limits=limits,
                                   cron_ids=set(jobs) | set(self.table.invalid))


async def _run_all(steps: list[Step], stop: asyncio.Event) -> None:
    """Run the loops until ``stop``; a loop that ends early is logged, the others go on."""
    tasks = [asyncio.create_task(step()) for step in steps]
    try:
        await stop.wait()
    finally:
        # longer than the chores' grace and cancels: the chores lease is released after them
        _, late = await asyncio.wait(tasks, timeout=STOP_GRACE_SECONDS + CANCEL_SECONDS + 0.5)
        await _cancel(late)
        for error in _errors(tasks):
            log.warning("beat task failed", error=repr(error))


async def _cancel(tasks: Collection[asyncio.Task[Any]]) -> None:
    """Cancel ``tasks`` and wait for them, cancelling again each loop iteration for up to
    :data:`CANCEL_SECONDS`; a task still running then is left (it ends when the clients close).
    One cancel is not enough on Python 3.11: a cancel that lands just as an ``asyncio.wait_for``
    finds its inner future done is lost (CPython gh-86296), and redis-py sends every command
    through one, so a loop of quick commands (a SCAN) loses most cancels; each iteration's
    cancel lands in another phase of the command, and one of the next few gets through."""
    pending = set(tasks)
    deadline = asyncio.get_running_loop().time() + CANCEL_SECONDS
    while pending and asyncio.get_running_loop().time() < deadline:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=0)
    for task in pending:
        log.warning("task still running at stop: left to the clients' close", task=task.get_name())


def _errors(tasks: Collection[asyncio.Task[Any]]) -> list[BaseException]:
    """The exceptions the ended ``tasks`` raised (a cancel is not one)."""
    return [e for t in tasks if t.done() and not t.cancelled() and isinstance(e := t.exception(), Exception)]


def _unless(halt: asyncio.Event, step: Callable[[], Coroutine[Any, Any, T]]
            ) -> Callable[[], Coroutine[Any, Any, T | None]]:
    """``step``, cancelled as soon as ``halt`` is set (it returns None then): for a chore that
    does not look at the flag and can take seconds under load (a keyspace SCAN, the janitor's
    round; both are done again next time)."""
    @functools.wraps(step)
    async def run() -> T | None:
        task = asyncio.ensure_future(step())
        halted = asyncio.ensure_future(halt.wait())
        try:
            await asyncio.wait([task, halted], return_when=asyncio.FIRST_COMPLETED)
        finally:
            await _cancel([halted] if task.done() else [task, halted])
        return task.result() if task.done() and not task.cancelled() else None
    return run


@contextlib.contextmanager
def _collect_between_ticks() -> Iterator[None]:
    """While firing, the cyclic GC runs only when the Beat says so: a young pass right after
    each send, a full one with each resync. An automatic full pass over 10,000 jobs' objects
    takes tens (loaded machine: hundreds) of ms and would land on the fires' lateness. The fire
    path makes no reference cycles (refcounting frees it), so nothing piles up meanwhile. What
    exists when firing starts is frozen out of the passes."""
    enabled = gc.isenabled()
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.unfreeze()
        if enabled:
            gc.enable()
