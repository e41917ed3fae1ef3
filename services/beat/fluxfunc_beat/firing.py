"""Firing the due cron jobs of the partitions a Beat holds: the scheduler loop.

Each due moment, the due fires are taken from the job table in **batches** of at most
``beat.batch_fires`` (oldest first). Up to four batches are *prepared* shortly before they
are due (store claims, guards claimed in Redis, envelopes, and the script calls packed into
the bytes that will be written: three times the recent time to get them ready + 50 ms ahead,
at most 700 ms) and *sent* together the moment they are due, fenced by the epochs of the
partitions held (:mod:`~fluxfunc_beat.partitions`): one write on the Beat's own Redis
connection (the lane, :mod:`fluxfunc_common.lane`), so Redis runs the calls back to back, in
order, with nothing to wait for between them. Further batches of the same moment are prepared
while those are sent. At most eight batches exist at a time and no fire outlives its send:
memory stays flat whatever the number of jobs due.

A batch that failed (Redis or the store unreachable) is retried while its fires are still
late, not missed; a fire that could not be sent within the late window follows its job's
``misfirePolicy`` (``fireOnce``: the newest such fire is fired once when the batch goes
through). While such a backlog is a batch or more, no new fires are taken from the table.

**Lag** is how late the Beat takes the due jobs it had scheduled (the table's last pop; a
takeover's catch-up is not lag). When the Beat cannot keep up, a job it takes more than
``beat.max_lag_seconds`` late has its older fires follow its misfire policy
(:mod:`~fluxfunc_beat.jobs`), so the work per job is bounded; a Beat past a due moment takes
what is due by now. The Beat logs ``beat behind schedule`` (lag, fires shed) at most every
10 s and ``beat caught up`` when the lag is back under a quarter of the bound; the heartbeat
carries ``lagMs``.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections import Counter
from collections.abc import Callable

from fluxfunc_beat.jobs import JobTable
from fluxfunc_beat.partitions import PartitionLeases, partition_of
from fluxfunc_common.clock import Clock
from fluxfunc_common.cron import CronFirer, FireRequest, FireStatus, PreparedFires
from fluxfunc_common.lifecycle import sleep_or_stop
from fluxfunc_common.logs import get_logger
from fluxfunc_common.settings import BeatSettings

BEHIND_LOG_SECONDS = 10.0  # at most one "behind schedule" line per this while behind
PREPARED_MAX = 4  # batches prepared ahead of their due moment, at most

Batch = tuple[PreparedFires, list[FireRequest]]

log = get_logger("beat")


class Scheduler:
    """The firing loop of one Beat (see the module docstring)."""

    def __init__(self, settings: BeatSettings, firer: CronFirer, leases: PartitionLeases, *,
                 table: Callable[[], JobTable], now_ms: Callable[[], int], clock: Clock, late_ms: int,
                 fenced: Callable[[set[int]], None]) -> None:
        self.settings, self.firer, self.leases = settings, firer, leases
        self.table, self.now_ms, self.clock, self.late_ms = table, now_ms, clock, late_ms
        self.fenced = fenced  # partitions refused by cron_fire.lua: the Beat gives them up
        self.max_lag_ms = int(settings.max_lag_seconds * 1000)
        self.fired = 0
        self.counts: Counter[str] = Counter()  # fire outcomes since the last summary line
        self.lag_ms = 0  # of the last batch taken
        self.peak_lag_ms = 0  # the highest since the last heartbeat read it (lag_report)
        self.wakeup = asyncio.Event()
        self.missing_func: set[str] = set()
        self._backlog: list[FireRequest] = []  # fires of a failed batch, retried next tick
        self._partitions: dict[str, int] = {}  # cron id → its partition (a CRC-32 per fire otherwise)
        self._prepare_s = 0.0  # recent time to prepare one batch (EWMA)
        self._sending: asyncio.Task[None] | None = None  # the batch being sent
        self._behind_logged: float | None = None  # monotonic time of the last "behind" line
        self._halt = asyncio.Event()  # set when the Beat stops: a busy moment ends its batches

    async def run(self, halt: asyncio.Event, alive: Callable[[], None]) -> None:
        """Sleep until shortly before the next due moment (or a change), prepare its fires,
        then send them the moment they are due; sends stay in order."""
        self._halt = halt
        try:
            while not halt.is_set():
                alive()
                now = self.now_ms()
                nxt = now if self._backlog else self.table().next_due_ms()
                wait_ms = 1000 if nxt is None else min(nxt - now - self._lead_ms(), 1000)
                if wait_ms > 0:
                    self.wakeup.clear()
                    await sleep_or_stop(self.wakeup, wait_ms / 1000)  # a change wakes it early
                    continue
                try:
                    await self.fire_due(max(nxt or now, now))
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # keep firing; the backlog is retried next tick
                    log.warning("firing failed", error=repr(exc), backlog=len(self._backlog))
                    await sleep_or_stop(halt, 0.2)
        finally:
            await self.sent()

    def _lead_ms(self) -> float:
        """How early to prepare a due moment: three times the recent preparation time plus
        50 ms (a store commit can spike), at most 700 ms."""
        return min(3000 * self._prepare_s + 50, 700)

    async def fire_due(self, at_ms: int) -> None:
        """Fire every job due at ``at_ms`` (and a failed batch's fires), batch by batch: claims
        and encoding now (up to :data:`PREPARED_MAX` batches before ``at_ms``), each enqueue not
        before ``at_ms`` (Redis time), in a task that runs on while the next batch is prepared
        (:meth:`sent` waits for it)."""
        ready: list[Batch] = []
        started = time.monotonic()
        requests: list[FireRequest] = []
        try:
            # a Beat past the moment (behind) takes what is due by now, not by then
            while requests := self._take(at := max(at_ms, self.now_ms())):
                prepared = await self.firer.prepare(requests)
                await self.firer.pack(prepared, epoch=self.leases.epochs())
                ready.append((prepared, requests))
                del prepared
                requests = []
                more = self.table().due(at) and not self._halt.is_set()
                if not more or len(ready) >= PREPARED_MAX or self.now_ms() >= at_ms:
                    if started:  # the time it takes to get a due moment's first batches ready
                        self._prepare_s = 0.7 * self._prepare_s + 0.3 * (time.monotonic() - started)
                        started = 0.0
                    await self._launch(ready, at_ms)
                if not more:
                    return
        except Exception:
            self._retry_later([*requests, *(r for _, batch in ready for r in batch)])
            raise

    async def _launch(self, ready: list[Batch], at_ms: int) -> None:
        """Send the prepared batches as one, not before ``at_ms``, after the batches sent before
        (their calls go out in one write, in order, and Redis runs them back to back)."""
        while (early := at_ms - self.now_ms()) > 0:
            await self.clock.sleep(early / 1000)
        await self.sent()  # the previous batches go first
        batches = ready[:]
        ready.clear()
        self._sending = asyncio.create_task(self._send(batches))

    def _take(self, at_ms: int) -> list[FireRequest]:
        """The next batch: the backlog first, then due fires from the table (none while the
        backlog is a batch or more), grouped by partition (one fence per script call)."""
        limit = self.settings.batch_fires
        requests, self._backlog = self._backlog[:limit], self._backlog[limit:]
        if self._backlog or not self.leases.held:
            return requests
        count, partitions = self.leases.count, self._partitions
        if len(partitions) > 2 * len(self.table()) + 1000:
            partitions.clear()  # jobs came and went
        table = self.table()
        for due in table.pop_due(at_ms, limit=limit - len(requests), max_lag_ms=self.max_lag_ms):
            if due.func is None:
                if due.job.id not in self.missing_func:
                    self.missing_func.add(due.job.id)
                    log.warning("cron job not fired: func not found", cron_id=due.job.id,
                                func_id=due.job.func_id)
                continue
            partition = partitions.get(due.job.id)
            if partition is None:
                partition = partitions[due.job.id] = partition_of(due.job.id, count)
            requests.append(FireRequest(due.job, due.func, due.fire_ms, due.dedup_ttl_ms, 0, partition))
        requests.sort(key=_partition)  # stable: a job's fires stay in order
        self._note_lag(table.lag_ms)
        return requests

    async def _send(self, batches: list[Batch]) -> None:
        epochs = self.leases.epochs()
        if not epochs:
            return  # the claims are this deployment's: the next holder fires them
        try:
            done = await self.firer.send_counted([prepared for prepared, _ in batches], epoch=epochs)
        except Exception as exc:
            self._retry_later([r for _, requests in batches for r in requests])
            log.warning("firing failed", error=repr(exc), backlog=len(self._backlog))
            self.wakeup.set()
            return
        self.counts.update(done.counts)
        self.fired += done.counts[FireStatus.FIRED.value]
        if done.fenced:
            log.warning("fenced: another Beat holds these partitions now", partitions=sorted(done.fenced))
            self.fenced(done.fenced)
        del done, batches
        gc.collect(1)  # between sends, not in the middle of one

    def _note_lag(self, lag_ms: int) -> None:
        """Keep the lag; say so when the Beat falls behind, and when it has caught up."""
        self.lag_ms = max(0, lag_ms)
        self.peak_lag_ms = max(self.peak_lag_ms, self.lag_ms)
        now = self.clock.monotonic()
        if self.lag_ms > self.max_lag_ms:
            if self._behind_logged is None or now - self._behind_logged >= BEHIND_LOG_SECONDS:
                log.warning("beat behind schedule", lag_ms=self.lag_ms, max_lag_ms=self.max_lag_ms,
                            shed=self.table().shed, jobs=len(self.table()))
                self._behind_logged = now
        elif self._behind_logged is not None and self.lag_ms <= self.max_lag_ms // 4:
            log.info("beat caught up", lag_ms=self.lag_ms, shed=self.table().shed)
            self._behind_logged = None

    def lag_report(self) -> int:
        """The highest lag since the last call (a heartbeat's ``lagMs``: batches of one moment
        alternate between late and on time, a sample of the last one would miss the late)."""
        peak, self.peak_lag_ms = self.peak_lag_ms, self.lag_ms
        return peak

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

    def forget(self) -> None:
        """Drop the backlog (the partitions changed hands: their next holder fires them)."""
        self._backlog = [r for r in self._backlog if self.leases.owns(r.partition)]

    async def sent(self) -> None:
        """Wait until the batch being sent (if any) is done."""
        if self._sending is not None:
            task, self._sending = self._sending, None
            await task


def _partition(r: FireRequest) -> int:
    return r.partition
