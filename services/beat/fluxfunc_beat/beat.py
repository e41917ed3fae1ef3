"""The Beat: candidate → leader loop, and what the leader runs.

Every Beat process is a candidate polling for the lease (:mod:`leader`). The one holding it:

1. loads every cron job and func and keeps them current (:mod:`catalog`: the
   ``cron:changed`` stream, ``scripts:version``, a full reload every 5 minutes);
2. each due moment fires every due job in one batch (:class:`CronFirer`, fenced by the
   epoch), with fire times taken from Redis ``TIME`` (offset refreshed every minute). The
   batch is *prepared* shortly before it is due (store claims, envelopes, script arguments:
   three times the recent preparation time + 50 ms ahead) and *sent* the moment it is due, so lateness is
   the send alone; the next moment is prepared while a send runs. A batch that failed
   (Redis or the store unreachable) is retried while its fires are still late, not missed;
   a fire that could not be sent within the late window follows its job's
   ``misfirePolicy`` (``fireOnce``: the newest such fire is fired once when the batch goes
   through). While only the store fails, fires go on without store claims for up to
   ``beat.store_outage_seconds`` (:class:`~fluxfunc_common.cron.CronFirer`); the claims are
   written when it is back;
3. runs the delayed-task promoter and the janitor.

Leadership is checked before every batch; when a renew fails for longer than the lease
minus a margin, the leader stops at once (the helper loops end on a flag, never by
cancelling a blocked read) and the process goes back to candidate.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

from fluxfunc_beat import janitor, promoter
from fluxfunc_beat.catalog import JobCatalog
from fluxfunc_beat.jobs import JobTable
from fluxfunc_beat.leader import Leadership
from fluxfunc_beat.subscriptions import Supervisor
from fluxfunc_common import ids
from fluxfunc_common.clock import Clock, SystemClock
from fluxfunc_common.cron import CronFirer, FireRequest, FireStatus, PreparedFires
from fluxfunc_common.lifecycle import every, sleep_or_stop
from fluxfunc_common.logs import get_logger
from fluxfunc_common.redisconn import RedisClients
from fluxfunc_common.settings import Settings
from fluxfunc_common.store import Store
from fluxfunc_common.streams import StreamProtocol

TIME_SYNC_SECONDS = 60.0
RESYNC_SECONDS = 300.0
QUEUE_DISCOVERY_SECONDS = 60.0
SUMMARY_SECONDS = 60.0
CLAIMS_RETRY_SECONDS = 2.0  # how often claims of fires made in a store outage are retried
FUNCS_POLL_SECONDS = 1.0
LATE_EXTRA_SECONDS = 10.0  # late window = lease + this: longer than any leader change
STOP_GRACE_SECONDS = 3.0

log = get_logger("beat")

Step = Callable[[], Coroutine[Any, Any, None]]


class Beat:
    """One Beat process (see the module docstring)."""

    def __init__(self, settings: Settings, clients: RedisClients, store: Store, *,
                 clock: Clock | None = None, instance: str | None = None) -> None:
        self.settings, self.clients, self.store = settings, clients, store
        self.redis, self.keys = clients.main, clients.keys
        self.clock = clock or SystemClock()
        self.instance = instance or ids.instance_id()
        self.streams = StreamProtocol(clients.main, clients.keys, blocking=clients.blocking)
        self.leadership = Leadership(self.redis, self.keys, lease_seconds=settings.beat.lease_seconds,
                                     clock=self.clock)
        self.firer = CronFirer(self.redis, self.keys, self.streams, store, settings, clock=self.clock)
        self.late_ms = int((settings.beat.lease_seconds + LATE_EXTRA_SECONDS) * 1000)
        self.queues: set[str] = set(settings.worker.queues)
        self.catalog = self._new_catalog()
        self.offset = 0.0  # Redis TIME − local clock, seconds
        self.fired = 0
        self.counts: Counter[str] = Counter()  # fire outcomes since the last summary line
        self.loop_time = self.clock.time()  # last sign of life of the main loops (--check)
        self.leading = asyncio.Event()  # set while leading with the jobs loaded
        self._wakeup = asyncio.Event()
        self._missing_func: set[str] = set()
        self._backlog: list[FireRequest] = []  # fires of a failed batch, retried next tick
        self._prepare_s = 0.0  # recent time to prepare one due moment's fires (EWMA)
        self._sending: asyncio.Task[None] | None = None  # the batch being sent

    def _new_catalog(self) -> JobCatalog:
        return JobCatalog(self.store, self.redis, self.clients.blocking, self.keys,
                          JobTable(self.settings.beat.timezone, late_ms=self.late_ms), self.queues,
                          now_ms=self.now_ms, changed=self._changed)

    @property
    def table(self) -> JobTable:
        return self.catalog.table

    def _changed(self) -> None:
        self._missing_func.clear()  # warn again about a job whose func is still missing
        self._wakeup.set()

    # --- time ------------------------------------------------------------------------------
    def now(self) -> float:
        """Redis time (epoch s), from the local clock plus the measured offset."""
        return self.clock.time() + self.offset

    def now_ms(self) -> int:
        return int(self.now() * 1000)

    async def sync_time(self) -> None:
        """Measure the Redis TIME offset (half the round trip is the error bound)."""
        before = self.clock.time()
        server = await self.streams.server_time()
        after = self.clock.time()
        self.offset = server - (before + after) / 2

    def describe(self) -> dict[str, object]:
        """Extra fields of the heartbeat."""
        return {"leader": self.leadership.valid(), "epoch": self.leadership.epoch, "jobs": len(self.table),
                "loopTime": self.loop_time}

    # --- candidate / leader -----------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Candidate loop until ``stop``; leads whenever the lease is ours."""
        while not stop.is_set():
            self.loop_time = self.clock.time()
            try:
                if await self.leadership.try_acquire():
                    log.info("leadership acquired", epoch=self.leadership.epoch, instance=self.instance)
                    await self._lead(stop)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis/store trouble: hand the lease on, retry as candidate
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
        halt = asyncio.Event()  # set when leading ends: every helper loop checks it
        keeper = asyncio.create_task(self._keep_lease(lost, halt))
        try:
            await self._start_leading()
        except BaseException:
            halt.set()
            keeper.cancel()
            await asyncio.gather(keeper, return_exceptions=True)
            raise
        steps: list[Step] = [
            lambda: self._schedule(halt),
            lambda: self.catalog.follow(halt),
            lambda: promoter.run_promoter(self.streams, lambda: self.queues, self.now_ms, halt),
            lambda: every(TIME_SYNC_SECONDS, self.sync_time, halt, first=False),
            lambda: every(FUNCS_POLL_SECONDS, self.catalog.watch_funcs, halt, first=False),
            lambda: every(RESYNC_SECONDS, self._resync, halt, first=False),
            lambda: every(QUEUE_DISCOVERY_SECONDS, self.discover_queues, halt),
            lambda: every(SUMMARY_SECONDS, self._summary, halt, first=False),
            lambda: every(CLAIMS_RETRY_SECONDS, self._write_unclaimed, halt, first=False),
            lambda: every(janitor.INTERVAL, self.run_janitor, halt, first=False),
            lambda: Supervisor(self.store, self.redis, self.keys, self.streams, self.settings,
                               lambda func_id: self.catalog.funcs.get(func_id)).run(halt),
        ]
        tasks = [keeper, *(asyncio.create_task(step()) for step in steps)]
        waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(lost.wait())]
        self.leading.set()
        try:
            with _collect_between_ticks():
                await asyncio.wait([*tasks, *waiters], return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.leading.clear()
            halt.set()
            for waiter in waiters:
                waiter.cancel()
            # the loops end on `halt` (a blocked XREAD returns within its BLOCK); cancel stragglers
            _, late = await asyncio.wait(tasks, timeout=STOP_GRACE_SECONDS)
            for task in late:
                task.cancel()
            results = await asyncio.gather(*tasks, *waiters, return_exceptions=True)
        for res in results:
            if isinstance(res, Exception):
                log.warning("leader task failed", error=repr(res))
        await self._summary()
        if not stop.is_set():
            log.warning("leadership lost", epoch=self.leadership.epoch)
            self.leadership.drop()

    async def _resync(self) -> None:
        await self.catalog.load_all()
        gc.collect()  # the full pass the leader's GC regime leaves out otherwise

    async def _start_leading(self) -> None:
        self.catalog = self._new_catalog()
        self._backlog = []
        await self.sync_time()
        await self.catalog.start()
        log.info("jobs loaded", jobs=len(self.table), invalid=len(self.table.invalid))

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

    # --- firing -------------------------------------------------------------------------------
    async def _schedule(self, halt: asyncio.Event) -> None:
        """Sleep until shortly before the next due moment (or a change), prepare its fires,
        then send them the moment they are due. A send runs on while the next moment is
        prepared; sends stay in order."""
        try:
            while not halt.is_set() and self.leadership.valid():
                self.loop_time = self.clock.time()
                now = self.now_ms()
                nxt = now if self._backlog else self.table.next_due_ms()
                wait_ms = 1000 if nxt is None else min(nxt - now - self._lead_ms(), 1000)
                if wait_ms > 0:
                    self._wakeup.clear()
                    await sleep_or_stop(self._wakeup, wait_ms / 1000)  # a change wakes it early
                    continue
                try:
                    await self.fire_due(max(nxt or now, now))
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # keep leading; the backlog is retried next tick
                    log.warning("firing failed", error=repr(exc), backlog=len(self._backlog))
                    await sleep_or_stop(halt, 0.2)
        finally:
            await self.sent()

    def _lead_ms(self) -> float:
        """How early to prepare a due moment: three times the recent preparation time plus
        50 ms (a store commit can spike), at most 700 ms."""
        return min(3000 * self._prepare_s + 50, 700)

    async def fire_due(self, at_ms: int) -> None:
        """Fire every job due at ``at_ms`` (and a failed batch's fires) in one batch: claims
        and encoding now, the enqueue not before ``at_ms`` (Redis time), in a task that runs
        on after this returns (:meth:`sent` waits for it)."""
        requests, self._backlog = self._backlog, []
        for due in self.table.pop_due(at_ms):
            if due.func is None:
                if due.job.id not in self._missing_func:
                    self._missing_func.add(due.job.id)
                    log.warning("cron job not fired: func not found", cron_id=due.job.id,
                                func_id=due.job.func_id)
                continue
            requests.append(FireRequest(due.job, due.func, due.fire_ms, due.dedup_ttl_ms))
        if not requests or not self.leadership.valid():
            return
        try:
            started = time.monotonic()
            prepared = await self.firer.prepare(requests)
            self._prepare_s = 0.7 * self._prepare_s + 0.3 * (time.monotonic() - started)
        except Exception:
            self._retry_later(requests)
            raise
        await self.sent()  # the previous moment's fires go first
        while (early := at_ms - self.now_ms()) > 0:
            await self.clock.sleep(early / 1000)
        self._sending = asyncio.create_task(self._send(prepared, requests))

    async def _send(self, prepared: PreparedFires, requests: list[FireRequest]) -> None:
        if not self.leadership.valid():
            return  # the claims are this deployment's: the next leader fires them
        try:
            outcomes = await self.firer.send(prepared, epoch=self.leadership.epoch)
        except Exception as exc:
            self._retry_later(requests)
            log.warning("firing failed", error=repr(exc), backlog=len(self._backlog))
            self._wakeup.set()
            return
        for o in outcomes:
            self.counts[o.status.value] += 1
        self.fired += sum(o.status is FireStatus.FIRED for o in outcomes)
        if any(o.status is FireStatus.FENCED for o in outcomes):
            log.warning("fenced: another Beat holds a newer epoch", epoch=self.leadership.epoch)
            self.leadership.drop()
        del outcomes, prepared
        gc.collect(1)  # between ticks, not in the middle of one

    def _retry_later(self, requests: list[FireRequest]) -> None:
        """Keep a failed batch's fires for the next tick while they are late, not missed; of
        the missed ones, a ``fireOnce`` job keeps its newest when none of its fires is late."""
        floor = self.now_ms() - self.late_ms
        kept = [r for r in requests if r.fire_ms >= floor]
        late_jobs = {r.job.id for r in kept} | {r.job.id for r in self._backlog}
        missed: dict[str, FireRequest] = {}
        for r in sorted(requests, key=lambda r: r.fire_ms):  # the newest stays
            if r.fire_ms < floor and r.job.id not in late_jobs and r.job.misfire_policy == "fireOnce":
                missed[r.job.id] = r
        self._backlog = [*missed.values(), *kept, *self._backlog]

    async def sent(self) -> None:
        """Wait until the batch being sent (if any) is done."""
        if self._sending is not None:
            task, self._sending = self._sending, None
            await task

    async def _write_unclaimed(self) -> None:
        if self.firer.unclaimed:
            await self.firer.write_unclaimed()

    async def _summary(self) -> None:
        """One line a minute instead of one per fire."""
        if self.counts:
            log.info("cron fires", **dict(self.counts), jobs=len(self.table))
            self.counts.clear()

    # --- chores ---------------------------------------------------------------------------------
    async def discover_queues(self) -> None:
        """Add queues that have a stream or a delayed set (e.g. named by one call's options)."""
        self.queues |= await janitor.stream_queues(self.redis, self.keys)
        self.queues |= await promoter.delayed_queues(self.redis, self.keys)

    async def run_janitor(self) -> janitor.JanitorReport:
        limits = {cid: s.job.task_record_limit for cid, s in self.table.jobs.items()
                  if s.job.task_record_limit}
        return await janitor.sweep(self.redis, self.keys, self.streams, self.store, self.settings,
                                   queues=self.queues, now=self.now(), record_limits=limits,
                                   cron_ids=set(self.table.jobs) | set(self.table.invalid))


@contextlib.contextmanager
def _collect_between_ticks() -> Iterator[None]:
    """While leading, the cyclic GC runs only when the leader says so: a young pass right after
    each send, a full one with each resync. An automatic full pass over 10,000 jobs' objects
    takes tens (loaded machine: hundreds) of ms and would land on the fires' lateness. The fire
    path makes no reference cycles (refcounting frees it), so nothing piles up meanwhile. What
    exists when leading starts is frozen out of the passes."""
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
