"""The parent side of ``DFF.SYNC_API``, ``DFF.ASYNC_API`` and ``DFF.CRON_JOB``: the store
work of the entity helpers a child asks for (:mod:`~fluxfunc_worker.dffentities`).

=======================  =====================================================================
``entity.get``           one sync API / async API / cron job (an implicit ``cron-fixed-`` job
                         too), as the management API shows it (no API auth secrets), or None
``entity.query``         all of a kind, DataFlux Func's ``fields`` and ``filters``
                         (``{field: {op: value}}``, ops :data:`OPS`)
``entity.call``          a task of the entry's func, as calling the entry would make: refused
                         when disabled or expired; fixed kwargs may not be overridden; the
                         kwargs check of the Server (:mod:`~fluxfunc_worker.callchecks`)
``cron.set``/``cron.clear``  a script's expression over the configured one
                         (``dynamicCronExpr``, validated like the management API), until
                         ``dynamicCronExprExpireTime`` when ``expires`` is given; the Beat
                         follows at once (``cron_changed``) and ends it at its expiry itself
``cron.get``/``cron.all``    the expression in force / every job's script-set one
``cron.pause``/``cron.resume``  a timed pause (``pauseExpireTime``) with ``expires``, else
                         ``isDisabled``; resume ends both
=======================  =====================================================================
"""

from __future__ import annotations

import fnmatch
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol, cast

import redis.asyncio as aioredis

from fluxfunc_common import schedule
from fluxfunc_common.envelope import Origin
from fluxfunc_common.errors import QueueFull
from fluxfunc_common.keys import Keys
from fluxfunc_common.models import FIXED_CRON_PREFIX, AsyncApi, CronJob, EntryPoint, Func, SyncApi
from fluxfunc_common.settings import Settings
from fluxfunc_common.store import Entity, EntityStore, KvStore
from fluxfunc_common.store.kv import INTERNAL_SCOPE
from fluxfunc_common.streams import StreamProtocol
from fluxfunc_common.tasks import build_envelope
from fluxfunc_worker.callchecks import call_limits, merge_kwargs, refuse_bad_kwargs
from fluxfunc_worker.dffparams import EntityKind, EntityParams
from fluxfunc_worker.published import PublishedScripts
from fluxfunc_worker.rpc import RpcError

CRON_CHANGED_MAXLEN = 10_000  # as the Server trims the stream
SCRIPT_CRON_SCOPE = f"{INTERNAL_SCOPE}:cronJob.configuredCronExpr"  # kv: cron id → configured expression

KINDS: dict[str, tuple[Entity, type[EntryPoint], Origin]] = {
    "syncAPI": (Entity.SYNC_API, SyncApi, Origin.SYNC_API),
    "asyncAPI": (Entity.ASYNC_API, AsyncApi, Origin.ASYNC_API),
    "cronJob": (Entity.CRON_JOB, CronJob, Origin.CRON_JOB),
}
HIDDEN = frozenset({"apiAuth"})  # never handed to a script (may hold secrets)
FIELD_ALIASES = {"crontab": "cronExpr"}  # DataFlux Func's old field name

OPS: dict[str, Callable[[object, object], bool]] = {
    "eq": lambda a, b: a == b,
    "ne": lambda a, b: a != b,
    "gt": lambda a, b: a is not None and a > b,  # type: ignore[operator]
    "ge": lambda a, b: a is not None and a >= b,  # type: ignore[operator]
    "lt": lambda a, b: a is not None and a < b,  # type: ignore[operator]
    "le": lambda a, b: a is not None and a <= b,  # type: ignore[operator]
    "in": lambda a, b: a in cast(list[object], b),
    "notin": lambda a, b: a not in cast(list[object], b),
    "like": lambda a, b: isinstance(a, str) and fnmatch.fnmatchcase(a, str(b).replace("%", "*")),
    "isnull": lambda a, b: a is None,
    "isnotnull": lambda a, b: a is not None,
}


class EntryStore(EntityStore, KvStore, Protocol):
    """What the entity helpers reach: entries and funcs, and a kv scope of their own."""


def _until(expires: object, what: str) -> float | None:
    """The epoch time ``expires`` seconds from now (None without ``expires``)."""
    if expires is None or expires == 0:
        return None
    if isinstance(expires, bool) or not isinstance(expires, (int, float)) or expires < 0:
        raise RpcError(f"DFF.CRON_JOB.{what}: expires must be a number of seconds, not {expires!r}")
    return time.time() + float(expires)


def _matches(row: Mapping[str, object], filters: Mapping[str, object]) -> bool:
    for field, conditions in filters.items():
        value = row.get(FIELD_ALIASES.get(field, field))
        if not isinstance(conditions, dict):
            conditions = {"eq": conditions}
        for op, wanted in conditions.items():
            test = OPS.get(str(op))
            if test is None:
                raise RpcError(f"unknown filter operator {op!r} (known: {', '.join(OPS)})")
            if not test(value, wanted):
                return False
    return True


class EntityCalls:
    """``entity.*`` and ``cron.*`` of the DFF RPC."""

    def __init__(self, settings: Settings, store: EntryStore, redis: aioredis.Redis, keys: Keys,
                 streams: StreamProtocol, published: PublishedScripts) -> None:
        self.settings = settings
        self.store = store
        self.redis = redis
        self.keys = keys
        self.streams = streams
        self.published = published

    def methods(self) -> dict[str, Callable[[EntityParams], Awaitable[object]]]:
        return {"entity.get": self.get, "entity.query": self.query, "entity.call": self.call,
                "cron.set": self.cron_set, "cron.get": self.cron_get, "cron.all": self.cron_all,
                "cron.clear": self.cron_clear, "cron.pause": self.cron_pause,
                "cron.resume": self.cron_resume}

    # --- reading -------------------------------------------------------------------------------
    async def _entry(self, kind: EntityKind, entry_id: str) -> EntryPoint | None:
        entity, model, _ = KINDS[kind]
        if kind == "cronJob" and entry_id.startswith(FIXED_CRON_PREFIX):
            func = await self.published.func(entry_id.removeprefix(FIXED_CRON_PREFIX))
            return None if func is None else CronJob.implicit_for(func)
        row = await self.store.find(entity, entry_id)
        return None if row is None else model.from_row(row)

    @staticmethod
    def _shown(entry: EntryPoint) -> dict[str, object]:
        """As the management API shows it: no API auth; a cron job's override and pause
        only while in force."""
        row = entry.model_dump(mode="json", by_alias=True)
        if isinstance(entry, CronJob):
            row.update(entry.overrides_at(time.time()))
        return {k: v for k, v in row.items() if k not in HIDDEN}

    async def get(self, p: EntityParams) -> object:
        found = await self._entry(p["kind"], str(p["id"]))
        return None if found is None else self._shown(found)

    async def query(self, p: EntityParams) -> object:
        entity, model, _ = KINDS[p["kind"]]
        fields = [FIELD_ALIASES.get(f, f) for f in p.get("fields") or []]
        out: list[dict[str, object]] = []
        cursor: str | None = None
        while True:
            page = await self.store.list(entity, limit=500, cursor=cursor)
            for row in page.items:
                shown = self._shown(model.from_row(row))
                if _matches(shown, p.get("filters") or {}):
                    out.append({f: shown.get(f) for f in fields} if fields else shown)
            if page.next_cursor is None:
                return out
            cursor = page.next_cursor

    # --- calling -------------------------------------------------------------------------------
    async def call(self, p: EntityParams) -> object:
        """The task id of a new task of the entry."""
        kind, entry_id = p["kind"], str(p["id"])
        entry = await self._entry(kind, entry_id)
        if entry is None:
            raise RpcError(f"no {kind} {entry_id!r}")
        now = time.time()
        if entry.is_disabled:
            raise RpcError(f"{kind} {entry_id} is disabled")
        if entry.expired(now):
            raise RpcError(f"{kind} {entry_id} has expired")
        func = await self.published.func(entry.func_id)
        if func is None:
            raise RpcError(f"{kind} {entry_id}: no published function {entry.func_id!r}")
        kwargs = merge_kwargs(entry.kwargs, p.get("kwargs") or {}, f"DFF.{kind}")
        return await self._enqueue(p, func, entry, kwargs, now)

    async def _enqueue(self, p: EntityParams, func: Func, entry: EntryPoint,
                       kwargs: dict[str, object], now: float) -> str:
        what = f"DFF.{p['kind']}"
        refuse_bad_kwargs(func, kwargs, what)
        timeout, expires = call_limits(p.get("timeout"), p.get("expires"), self.settings.tasks.max_timeout,
                                       what)
        origin = KINDS[p["kind"]][2]
        queue = p.get("queue") or (entry.queue if isinstance(entry, CronJob) else None)
        env = build_envelope(func, kwargs, origin=origin, now=now, settings=self.settings.tasks,
                             origin_id=entry.id, queue=queue or None,
                             expires=now + expires if expires else None,
                             cron_expr=entry.cron_expr if isinstance(entry, CronJob) else None,
                             record_limit=entry.task_record_limit)
        if timeout:
            env = env.model_copy(update={"timeout": timeout})
        try:
            enqueued = await self.streams.enqueue(env, max_len=self.settings.redis.queue_max_len)
        except QueueFull:
            raise RpcError(f"queue {env.queue!r} is full") from None
        return str(enqueued.task_id)

    # --- cron jobs -----------------------------------------------------------------------------
    async def _job_row(self, p: EntityParams) -> CronJob:
        job_id = str(p["id"])
        if job_id.startswith(FIXED_CRON_PREFIX):
            raise RpcError(f"{job_id} is the cron job of a fixed_cron_expr: change it in the script")
        row = await self.store.find(Entity.CRON_JOB, job_id)
        if row is None:
            raise RpcError(f"no cronJob {job_id!r}")
        return CronJob.from_row(row)

    async def _changed(self, job_id: str, changes: dict[str, object]) -> None:
        await self.store.update(Entity.CRON_JOB, job_id, changes)
        await self.redis.xadd(self.keys.cron_changed(), {"id": job_id, "op": "update"},
                              maxlen=CRON_CHANGED_MAXLEN, approximate=True)

    async def cron_set(self, p: EntityParams) -> object:
        """A script's expression, until ``expires`` seconds from now or until cleared (the
        configured ``cronExpr`` stays as it is)."""
        job = await self._job_row(p)
        expr = str(p.get("cron_expr") or "").strip()
        schedule.validate(expr, job.timezone)  # ScheduleError → the call fails with its message
        until = _until(p.get("expires"), "set_cron_expr")
        await self._changed(job.id, {"dynamicCronExpr": expr, "dynamicCronExprExpireTime": until})
        return None

    async def cron_get(self, p: EntityParams) -> object:
        found = await self._entry("cronJob", str(p["id"]))
        return found.expr_at(time.time()) if isinstance(found, CronJob) else None

    async def cron_all(self, p: EntityParams) -> object:
        """Every job a script set an expression of (one not expired), with that expression."""
        now, out = time.time(), {}
        for row in await self._all_jobs():
            job = CronJob.from_row(row)
            if job.override_at(now) is not None:
                out[job.id] = job.dynamic_cron_expr
        for job_id in await self.store.kv_items(SCRIPT_CRON_SCOPE):  # set by an older fluxfunc
            found = await self.store.find(Entity.CRON_JOB, job_id)
            if found is not None and job_id not in out:
                out[job_id] = CronJob.from_row(found).cron_expr
        return out

    async def _all_jobs(self) -> list[dict[str, object]]:
        rows: list[dict[str, object]] = []
        cursor: str | None = None
        while True:
            page = await self.store.list(Entity.CRON_JOB, limit=500, cursor=cursor)
            rows += page.items
            if page.next_cursor is None:
                return rows
            cursor = page.next_cursor

    async def cron_clear(self, p: EntityParams) -> object:
        job = await self._job_row(p)
        changes: dict[str, object] = {"dynamicCronExpr": None, "dynamicCronExprExpireTime": None}
        configured = await self.store.kv_get(SCRIPT_CRON_SCOPE, job.id)
        if isinstance(configured, str) and configured:  # an older fluxfunc changed cronExpr
            changes["cronExpr"] = configured
        await self._changed(job.id, changes)
        await self.store.kv_delete(SCRIPT_CRON_SCOPE, job.id)
        return None

    async def cron_pause(self, p: EntityParams) -> object:
        """With ``expires``: no fire for that many seconds (``pauseExpireTime``); without:
        ``isDisabled`` until resumed."""
        job = await self._job_row(p)
        until = _until(p.get("expires"), "pause")
        await self._changed(job.id, {"pauseExpireTime": until} if until else {"isDisabled": True})
        return None

    async def cron_resume(self, p: EntityParams) -> object:
        job = await self._job_row(p)
        await self._changed(job.id, {"isDisabled": False, "pauseExpireTime": None})
        return None
