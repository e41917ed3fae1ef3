"""The Beat: candidate → leader loop, and what the leader runs.

Every Beat process is a candidate polling for the lease (:mod:`leader`). The one holding it:

1. loads every cron job (paged ``store.list``) and the funcs catalogue (implicit
   ``cron-fixed-<funcId>`` jobs from ``fixedCronExpr``), plus each job's last fire from
   ``beat:last``, into a :class:`JobTable`;
2. follows the ``cron:changed`` stream (``XREAD BLOCK`` from the id read *before* the load,
   so no change is missed) and re-reads only the changed ids; a full resync every 5 minutes
   is the safety net;
3. each due moment fires every due job in one batch (:class:`CronFirer`, fenced by the
   epoch), with fire times taken from Redis ``TIME`` (offset refreshed every minute);
4. runs the delayed-task promoter and the janitor.

Leadership is checked before every batch; when a renew fails for longer than the lease
minus a margin, every leader task is cancelled and the process goes back to candidate.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any

from fluxfunc_beat import janitor, promoter
from fluxfunc_beat.jobs import JobTable
from fluxfunc_beat.leader import Leadership
from fluxfunc_common import ids
from fluxfunc_common.clock import Clock, SystemClock
from fluxfunc_common.cron import FIXED_PREFIX, CronFirer, FireRequest, FireStatus, fixed_job
from fluxfunc_common.logs import get_logger
from fluxfunc_common.redisconn import RedisClients
from fluxfunc_common.settings import Settings
from fluxfunc_common.store import Entity, Store
from fluxfunc_common.streams import StreamProtocol

TIME_SYNC_SECONDS = 60.0
RESYNC_SECONDS = 300.0
PAGE = 500
CHANGES_BLOCK_MS = 1000

log = get_logger("beat")


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
        self.firer = CronFirer(self.redis, self.keys, self.streams, store, settings)
        self.table = JobTable(settings.beat.timezone)
        self.funcs: dict[str, dict[str, Any]] = {}
        self.queues: set[str] = set(settings.worker.queues)
        self.offset = 0.0  # Redis TIME − local clock, seconds
        self.fired = 0
        self._wakeup = asyncio.Event()
        self._missing_func: set[str] = set()

    # --- time ------------------------------------------------------------------------------
    def now(self) -> float:
        """Redis time (epoch s), from the local clock plus the measured offset."""
        return self.clock.time() + self.offset

    def now_ms(self) -> int:
        return int(self.now() * 1000)

    async def sync_time(self) -> None:
        before = self.clock.time()
        server = await self.streams.server_time()
        after = self.clock.time()
        self.offset = server - (before + after) / 2

    def describe(self) -> dict[str, Any]:
        """Extra fields of the heartbeat."""
        return {"leader": self.leadership.valid(), "epoch": self.leadership.epoch, "jobs": len(self.table)}

    # --- candidate / leader -----------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Candidate loop until ``stop``; leads whenever the lease is ours."""
        while not stop.is_set():
            try:
                if await self.leadership.try_acquire():
                    log.info("leadership acquired", epoch=self.leadership.epoch, instance=self.instance)
                    await self._lead(stop)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # Redis/store trouble: stop leading, retry as candidate
                log.warning("beat round failed", error=str(exc))
                self.leadership.drop()
            if stop.is_set():
                break
            await _wait(stop, self.leadership.poll_interval)
        with contextlib.suppress(Exception):
            await self.leadership.release()

    async def _lead(self, stop: asyncio.Event) -> None:
        lost = asyncio.Event()
        self.table = JobTable(self.settings.beat.timezone)
        await self.sync_time()
        tail = await self._changes_tail()
        await self.load_all()
        log.info("jobs loaded", jobs=len(self.table), invalid=len(self.table.invalid))
        halt = asyncio.Event()  # set when leading ends: stops the helper loops
        jobs: list[Callable[[], Coroutine[Any, Any, None]]] = [
            lambda: self._keep_lease(lost, halt),
            lambda: self._schedule(halt),
            lambda: self._follow_changes(tail, halt),
            lambda: promoter.run_promoter(self.streams, lambda: self.queues, self.now_ms, halt),
            lambda: self._every(TIME_SYNC_SECONDS, self.sync_time, halt),
            lambda: self._every(RESYNC_SECONDS, self.load_all, halt, first=False),
            lambda: self._every(janitor.INTERVAL, self._janitor, halt, first=False),
        ]
        tasks = [asyncio.create_task(job()) for job in jobs]
        waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(lost.wait())]
        try:
            await asyncio.wait([*tasks, *waiters], return_when=asyncio.FIRST_COMPLETED)
        finally:
            halt.set()
            for task in [*tasks, *waiters]:
                task.cancel()
            results = await asyncio.gather(*tasks, *waiters, return_exceptions=True)
        for res in results:
            if isinstance(res, Exception):
                log.warning("leader task failed", error=repr(res))
        if not stop.is_set():
            log.warning("leadership lost", epoch=self.leadership.epoch)
            self.leadership.drop()

    async def _keep_lease(self, lost: asyncio.Event, halt: asyncio.Event) -> None:
        """Renew every lease/3; give up as soon as the lease can no longer be trusted."""
        lead = self.leadership
        while not halt.is_set():
            await _wait(halt, lead.renew_interval)
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
        """Sleep until the next due job (or a change), then fire everything due."""
        while not halt.is_set() and self.leadership.valid():
            now = self.now_ms()
            nxt = self.table.next_due_ms()
            if nxt is None or nxt > now:
                delay = 1.0 if nxt is None else min((nxt - now) / 1000, 1.0)
                self._wakeup.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wakeup.wait(), timeout=max(delay, 0.0))
                continue
            try:
                await self.fire_due(now)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep leading; the next tick tries again
                log.warning("firing failed", error=repr(exc))
                await _wait(halt, 0.2)

    async def fire_due(self, now_ms: int) -> None:
        """Fire every job due at ``now_ms`` in one batch."""
        requests = []
        for due in self.table.pop_due(now_ms):
            if due.func is None:
                if due.job["id"] not in self._missing_func:
                    self._missing_func.add(due.job["id"])
                    log.warning("cron job not fired: func not found", cron_id=due.job["id"],
                                func_id=due.job.get("funcId"))
                continue
            requests.append(FireRequest(due.job, due.func, due.fire_ms, due.dedup_ttl_ms))
        if not requests or not self.leadership.valid():
            return
        outcomes = await self.firer.fire_many(requests, epoch=self.leadership.epoch)
        self.fired += sum(o.status is FireStatus.FIRED for o in outcomes)
        if any(o.status is FireStatus.FENCED for o in outcomes):
            log.warning("fenced: another Beat holds a newer epoch", epoch=self.leadership.epoch)
            self.leadership.drop()

    # --- loading and following changes ----------------------------------------------------------
    async def _changes_tail(self) -> str:
        last = await self.redis.xrevrange(self.keys.cron_changed(), count=1)
        return _text(last[0][0]) if last else "0-0"

    async def load_all(self) -> None:
        """(Re)load every job and func; unchanged jobs keep their place in the table."""
        funcs = {f["id"]: f async for f in self._all(Entity.FUNC)}
        jobs = [j async for j in self._all(Entity.CRON_JOB)]
        jobs += [j for f in funcs.values() if (j := fixed_job(f)) is not None]
        last = await self._last_fires([j["id"] for j in jobs])
        self.funcs = funcs
        now, seen = self.now_ms(), set()
        for job in jobs:
            seen.add(job["id"])
            self._upsert(job, last.get(job["id"]), now)
        for cron_id in set(self.table.jobs) - seen:
            self.table.remove(cron_id)
        self._wakeup.set()

    async def _all(self, entity: Entity) -> Any:
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

    def _upsert(self, job: dict[str, Any], last_ms: int | None, now_ms: int) -> None:
        func = self.funcs.get(job.get("funcId") or "")
        if self.table.upsert(job, func, last_ms=last_ms, now_ms=now_ms):
            queue = job.get("queue") or (func and (func.get("extraConfig") or {}).get("queue"))
            if queue:
                self.queues.add(queue)
        if job["id"] in self.table.invalid:
            log.warning("cron job not scheduled", cron_id=job["id"], reason=self.table.invalid[job["id"]])

    async def _follow_changes(self, last_id: str, halt: asyncio.Event) -> None:
        """Apply ``cron:changed`` entries as they come (≤ 1 s)."""
        key = self.keys.cron_changed()
        while not halt.is_set():
            try:
                reply: Any = await self.clients.blocking.xread({key: last_id}, count=500,
                                                               block=CHANGES_BLOCK_MS)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("reading cron changes failed", error=str(exc))
                await _wait(halt, 1.0)
                continue
            for _stream, entries in reply or []:
                cron_ids, script_ids = set(), set()
                for entry_id, fields in entries:
                    last_id = _text(entry_id)
                    data = {_text(k): _text(v) for k, v in fields.items()}
                    if data.get("scriptId"):
                        script_ids.add(data["scriptId"])
                    if data.get("id"):
                        cron_ids.add(data["id"])
                await self.apply_changes(cron_ids, script_ids)

    async def apply_changes(self, cron_ids: Iterable[str], script_ids: Iterable[str] = ()) -> None:
        """Re-read the changed jobs (and the funcs of re-published scripts) from the store."""
        cron_ids = set(cron_ids)
        for script_id in script_ids:
            async for func in self._funcs_of_script(script_id):
                cron_ids.add(FIXED_PREFIX + func["id"])
        now = self.now_ms()
        last = await self._last_fires(sorted(cron_ids))
        for cron_id in cron_ids:
            job = await self._read_job(cron_id)
            if job is None:
                self.table.remove(cron_id)
                log.info("cron job removed", cron_id=cron_id)
                continue
            if job.get("funcId") and job["funcId"] not in self.funcs:
                func = await self.store.find(Entity.FUNC, job["funcId"])
                if func is not None:
                    self.funcs[func["id"]] = func
            self._missing_func.discard(cron_id)
            self._upsert(job, last.get(cron_id), now)
            log.info("cron job loaded", cron_id=cron_id, scheduled=cron_id in self.table.jobs)
        self._wakeup.set()

    async def _funcs_of_script(self, script_id: str) -> Any:
        cursor = None
        while True:
            page = await self.store.list(Entity.FUNC, filters={"scriptId": script_id}, limit=PAGE,
                                         cursor=cursor)
            for func in page.items:
                self.funcs[func["id"]] = func
                self.table.update_func(func)
                yield func
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    async def _read_job(self, cron_id: str) -> dict[str, Any] | None:
        if cron_id.startswith(FIXED_PREFIX):
            func = await self.store.find(Entity.FUNC, cron_id[len(FIXED_PREFIX):])
            if func is None:
                return None
            self.funcs[func["id"]] = func
            self.table.update_func(func)
            return fixed_job(func)
        return await self.store.find(Entity.CRON_JOB, cron_id)

    # --- chores ---------------------------------------------------------------------------------
    async def _janitor(self) -> None:
        limits = {cid: int(s.job["taskRecordLimit"]) for cid, s in self.table.jobs.items()
                  if s.job.get("taskRecordLimit")}
        await janitor.sweep(self.redis, self.keys, self.streams, self.store, self.settings,
                            queues=self.queues, now=self.now(), record_limits=limits)

    async def _every(self, interval: float, step: Callable[[], Awaitable[None]], halt: asyncio.Event,
                     *, first: bool = True) -> None:
        if not first:
            await _wait(halt, interval)
        while not halt.is_set():
            started = time.monotonic()
            try:
                await step()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("periodic step failed", step=getattr(step, "__name__", "?"), error=str(exc))
            await _wait(halt, max(interval - (time.monotonic() - started), 0.0))


async def _wait(event: asyncio.Event, seconds: float) -> None:
    """Sleep ``seconds`` or until ``event`` is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(event.wait(), timeout=seconds)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
