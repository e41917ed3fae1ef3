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
``cron.set``/``cron.clear``  a cron job's ``cronExpr`` changed by a script (validated like
                         the management API; the configured one kept for ``clear``); the Beat
                         follows at once (``cron_changed``)
``cron.get``/``cron.all``    the current expression / every script-set one
``cron.pause``/``cron.resume``  ``isDisabled`` of a cron job
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
        row = entry.model_dump(mode="json", by_alias=True)
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
        job = await self._job_row(p)
        expr = str(p.get("cron_expr") or "").strip()
        schedule.validate(expr, job.timezone)  # ScheduleError → the call fails with its message
        await self.store.kv_set(SCRIPT_CRON_SCOPE, job.id, job.cron_expr, not_exists=True)
        await self._changed(job.id, {"cronExpr": expr})
        return None

    async def cron_get(self, p: EntityParams) -> object:
        found = await self._entry("cronJob", str(p["id"]))
        return found.cron_expr if isinstance(found, CronJob) else None

    async def cron_all(self, p: EntityParams) -> object:
        out: dict[str, object] = {}
        for job_id in await self.store.kv_items(SCRIPT_CRON_SCOPE):
            row = await self.store.find(Entity.CRON_JOB, job_id)
            if row is not None:
                out[job_id] = CronJob.from_row(row).cron_expr
        return out

    async def cron_clear(self, p: EntityParams) -> object:
        job = await self._job_row(p)
        configured = await self.store.kv_get(SCRIPT_CRON_SCOPE, job.id)
        if isinstance(configured, str) and configured:
            await self._changed(job.id, {"cronExpr": configured})
        await self.store.kv_delete(SCRIPT_CRON_SCOPE, job.id)
        return None

    async def cron_pause(self, p: EntityParams) -> object:
        job = await self._job_row(p)
        await self._changed(job.id, {"isDisabled": True})
        return None

    async def cron_resume(self, p: EntityParams) -> object:
        job = await self._job_row(p)
        await self._changed(job.id, {"isDisabled": False})
        return None
