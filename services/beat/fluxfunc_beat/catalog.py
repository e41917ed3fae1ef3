"""What the leader knows about cron jobs and funcs, and how it stays current.

- **Load** (on taking the lease, then every 5 minutes as a safety net): every cron job
  (paged ``store.list``), every func and each job's last fire (``beat:last``) into the
  :class:`JobTable`. A func's ``fixedCronExpr`` schedules nothing by itself: it fixes the
  expression of the cron jobs created on it (:func:`~fluxfunc_beat.jobs.with_fixed_expr`).
  Rows are parsed into :class:`~fluxfunc_common.models.CronJob` and
  :class:`~fluxfunc_common.models.Func` here, once; a row that does not parse is logged and
  left out (a job: reported as not scheduled).
- **Follow** the ``cron:changed`` stream the Server appends to (``XREAD BLOCK`` from the id
  read *before* the load, so no change is missed) and re-read only the changed ids: a change
  takes effect within a second whatever the number of jobs.
- **Watch** ``scripts:version`` (one GET a second): after a publish, re-read the funcs so
  fires carry the func's current timeout, queue and retries (and the jobs of a func whose
  fixed expression changed are rescheduled).

Also collects the queues named by jobs and funcs (the promoter's and janitor's work list).

Every Beat knows every job (:attr:`JobCatalog.jobs`), but its table schedules only the jobs of
the partitions it holds (``owns``, :mod:`~fluxfunc_beat.partitions`); :meth:`JobCatalog.rebalance`
follows a change of partitions: the jobs of a partition taken are scheduled from their
``beat:last`` watermark (so the late fires of a dead Beat's partition are fired), those of a
partition given up leave the table.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from typing import Any

import redis.asyncio as aioredis
from pydantic import ValidationError

from fluxfunc_beat.jobs import JobTable
from fluxfunc_common.keys import Keys
from fluxfunc_common.lifecycle import sleep_or_stop
from fluxfunc_common.logs import get_logger
from fluxfunc_common.models import FIXED_CRON_PREFIX, CronJob, Func
from fluxfunc_common.store import Entity, EntityStore
from fluxfunc_common.text import as_text

PAGE = 500
CHANGES_BLOCK_MS = 1000

log = get_logger("beat.catalog")


class JobCatalog:
    """The job table plus the funcs and queues it refers to, kept in step with the store."""

    def __init__(self, store: EntityStore, redis: aioredis.Redis, blocking: aioredis.Redis, keys: Keys,
                 table: JobTable, queues: set[str], *, now_ms: Callable[[], int],
                 changed: Callable[[], None], owns: Callable[[str], bool] = lambda _: True) -> None:
        self.store, self.redis, self.blocking, self.keys = store, redis, blocking, keys
        self.table = table
        self.queues = queues
        self.funcs: dict[str, Func] = {}
        self.jobs: dict[str, CronJob] = {}  # every job, scheduled here or not
        self.owns = owns  # is this cron id in a partition this Beat holds?
        self.now_ms = now_ms
        self.changed = changed  # wakes the scheduler: the next due moment may have moved
        self.changes_id = "0-0"  # last applied entry of the cron:changed stream
        self._scripts_version: bytes | str | None = None

    async def start(self) -> None:
        """Remember where the change stream and the scripts version are, then load all."""
        last = await self.redis.xrevrange(self.keys.cron_changed(), count=1)
        self.changes_id = as_text(last[0][0]) if last else "0-0"
        self._scripts_version = await self.redis.get(self.keys.scripts_version())
        await self.load_all()

    async def load_all(self) -> None:
        """(Re)load every job and func; unchanged jobs keep their place in the table."""
        funcs = await self._all_funcs()
        jobs = [j async for row in self._all(Entity.CRON_JOB) if (j := self._job_of(row)) is not None]
        last = await self._last_fires([j.id for j in jobs])
        self.funcs = funcs
        self._queues_of_funcs(funcs.values())
        now, seen = self.now_ms(), set()
        for job in jobs:
            seen.add(job.id)
            self._upsert(job, last.get(job.id), now)
        for cron_id in (set(self.table.jobs) | set(self.jobs)) - seen:
            self.table.remove(cron_id)
            self.jobs.pop(cron_id, None)
        self.changed()

    async def rebalance(self) -> None:
        """The partitions held changed: schedule the jobs now ours (from their last fire),
        drop the jobs no longer ours."""
        for cron_id in [c for c in self.table.jobs if not self.owns(c)]:
            self.table.remove(cron_id)
        taken = [c for c in self.jobs if c not in self.table.jobs and self.owns(c)]
        last = await self._last_fires(taken)
        now = self.now_ms()
        for i, cron_id in enumerate(taken):
            if i % PAGE == PAGE - 1:
                await asyncio.sleep(0)  # thousands of jobs: let the leases be renewed meanwhile
            if (job := self.jobs.get(cron_id)) is not None:
                self._upsert(job, last.get(cron_id), now)
        self.changed()

    async def apply_changes(self, cron_ids: Iterable[str]) -> None:
        """Re-read the changed jobs from the store (a missing job is removed). The Server's
        ``cron-fixed-<funcId>`` notices of a publish name no job: :meth:`watch_funcs` follows
        fixed expressions."""
        cron_ids = {c for c in cron_ids if not c.startswith(FIXED_CRON_PREFIX)}
        now = self.now_ms()
        last = await self._last_fires(sorted(cron_ids))
        for cron_id in cron_ids:
            job = await self._read_job(cron_id)
            if job is None:  # deleted, or unreadable (then listed as not scheduled)
                continue
            if job.func_id and job.func_id not in self.funcs:
                func = _func_of(await self.store.find(Entity.FUNC, job.func_id))
                if func is not None:
                    self.funcs[func.id] = func
                    self._queues_of_funcs([func])
            self._upsert(job, last.get(cron_id), now)
            log.info("cron job loaded", cron_id=cron_id, scheduled=cron_id in self.table.jobs)
        self.changed()

    async def follow(self, halt: asyncio.Event) -> None:
        """Apply ``cron:changed`` entries as they come, until ``halt`` (checked at least every
        BLOCK: a blocked read is never cancelled)."""
        key = self.keys.cron_changed()
        while not halt.is_set():
            try:
                reply: Any = await self.blocking.xread({key: self.changes_id}, count=500,
                                                       block=CHANGES_BLOCK_MS)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("reading cron changes failed", error=str(exc))
                await sleep_or_stop(halt, 1.0)
                continue
            if halt.is_set():
                return
            for _stream, entries in reply or []:
                cron_ids = {as_text(fields.get(b"id", fields.get("id", ""))) for _, fields in entries}
                try:
                    await self.apply_changes(cron_ids - {""})
                except Exception as exc:  # the store is unreachable: read the same entries again
                    log.warning("applying cron changes failed", error=str(exc))
                    await sleep_or_stop(halt, 1.0)
                    break
                self.changes_id = as_text(entries[-1][0])

    async def watch_funcs(self) -> None:
        """After a publish (``scripts:version`` moved), re-read the funcs the jobs use."""
        version = await self.redis.get(self.keys.scripts_version())
        if version == self._scripts_version:
            return
        self._scripts_version = version
        funcs = await self._all_funcs()
        old, self.funcs = self.funcs, funcs
        self._queues_of_funcs(funcs.values())
        refixed = set()
        for cron_id, state in self.table.jobs.items():  # a func removed from its script: None, refused
            state.func = funcs.get(state.job.func_id)
            if _fixed_expr(old.get(state.job.func_id)) != _fixed_expr(state.func):
                refixed.add(cron_id)
        if refixed:  # the fixed expression changed: reschedule from the stored rows
            await self.apply_changes(refixed)

    # --- plumbing -----------------------------------------------------------------------------
    async def _all_funcs(self) -> dict[str, Func]:
        return {f.id: f async for row in self._all(Entity.FUNC) if (f := _func_of(row)) is not None}

    async def _all(self, entity: Entity) -> AsyncIterator[Mapping[str, Any]]:
        cursor = None
        while True:
            page = await self.store.list(entity, limit=PAGE, cursor=cursor)
            for item in page.items:
                yield item
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    async def _last_fires(self, cron_ids: list[str]) -> dict[str, int]:
        out: dict[str, int] = {}
        for i in range(0, len(cron_ids), 1000):
            chunk = cron_ids[i:i + 1000]
            values = await self.redis.hmget(self.keys.beat_last(), chunk)
            out.update({c: int(v) for c, v in zip(chunk, values, strict=True) if v is not None})
        return out

    def _upsert(self, job: CronJob, last_ms: int | None, now_ms: int) -> None:
        self.jobs[job.id] = job
        if job.queue and not job.is_disabled:  # the queues of every job: the chores use them
            self.queues.add(job.queue)
        if not self.owns(job.id):
            self.table.remove(job.id)
            return
        self.table.upsert(job, self.funcs.get(job.func_id), last_ms=last_ms, now_ms=now_ms)
        if job.id in self.table.invalid:
            log.warning("cron job not scheduled", cron_id=job.id, reason=self.table.invalid[job.id])

    def _job_of(self, row: Mapping[str, Any]) -> CronJob | None:
        """The job of a store row; a row that does not parse is not scheduled (and said so)."""
        try:
            return CronJob.from_row(row)
        except ValidationError as exc:
            cron_id = str(row.get("id") or "")
            self.table.reject(cron_id, f"unreadable cron job: {exc.errors()[0]['msg']}")
            log.warning("cron job not scheduled", cron_id=cron_id, reason=self.table.invalid.get(cron_id))
            return None

    def _queues_of_funcs(self, funcs: Iterable[Func]) -> None:
        for func in funcs:
            if func.options.queue:
                self.queues.add(func.options.queue)

    async def _read_job(self, cron_id: str) -> CronJob | None:
        row = await self.store.find(Entity.CRON_JOB, cron_id)
        if row is None:
            self._removed(cron_id)
            return None
        return self._job_of(row)

    def _removed(self, cron_id: str) -> None:
        self.table.remove(cron_id)
        self.jobs.pop(cron_id, None)
        log.info("cron job removed", cron_id=cron_id)


def _fixed_expr(func: Func | None) -> str | None:
    return func.options.fixed_cron_expr if func is not None else None


def _func_of(row: Mapping[str, Any] | None) -> Func | None:
    """The func of a catalogue row (None: no row, or one that does not parse — logged)."""
    if row is None:
        return None
    try:
        return Func.from_row(row)
    except ValidationError as exc:
        log.warning("func left out of the cron catalogue", func_id=row.get("id"), error=str(exc))
        return None

