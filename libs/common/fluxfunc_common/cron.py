"""Firing cron jobs: shared by the Beat (scheduled fires) and the Server (``POST /api/v1/cron/{id}``).

One fire of a job at ``fire_ms`` goes through, in this order:

1. **Redis, one Lua script** (``lua/cron_fire.lua``): refuse when the caller's Beat epoch is
   no longer current (*fenced*); ``SET NX`` the per-fire guard ``beat:fired:{cron}:{ms}``
   (*duplicate* when it exists); record the fire in ``beat:last``; apply ``overlapPolicy``
   (``skip``: when the task in ``cron:running:{cron}`` has no result and is still running or
   queued, the fire is *skipped*); otherwise point the running marker at the new task.
2. **The store**: ``claim_cron_fire(cron, ms, task)`` on a unique key, so two deployments
   that share only the database (different Redis) never both fire (*duplicate*).
3. **The stream**: ``StreamProtocol.enqueue_many`` (one pipeline for a whole Beat tick), or a
   ``skipped`` task record when the overlap rule said so.

Task ids are deterministic (a ULID whose time is the fire time and whose random part is a
hash of the cron id), so a re-sent enqueue of the same fire is a no-op in the stream
protocol too, and both deployments of a primary/backup pair name a fire the same way.

Funcs whose catalogue entry has ``extraConfig.fixedCronExpr`` are cron jobs as well:
:func:`fixed_job` builds the implicit job ``cron-fixed-<funcId>`` from the funcs table.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from importlib import resources
from typing import Any

import redis.asyncio as aioredis

from fluxfunc_common.envelope import Origin, TaskEnvelope, TaskResult, TaskStatus
from fluxfunc_common.errors import QueueFull
from fluxfunc_common.keys import Keys
from fluxfunc_common.logs import get_logger
from fluxfunc_common.settings import Settings
from fluxfunc_common.store import Store
from fluxfunc_common.streams import StreamProtocol
from fluxfunc_common.tasks import build_envelope, func_timeout

FIXED_PREFIX = "cron-fixed-"
DEFAULT_DEDUP_TTL_MS = 10 * 60 * 1000
MANUAL_SUFFIX = "#manual"  # manual runs dedup apart from the scheduled fire of the same ms
_PIPELINE_CHUNK = 1000
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"

log = get_logger("cron")


class FireStatus(StrEnum):
    FIRED = "fired"  # enqueued
    DUPLICATE = "duplicate"  # this (job, fire time) was already fired (this Redis or the store)
    SKIPPED = "skipped"  # overlapPolicy skip: the previous run is still in flight
    FENCED = "fenced"  # the caller's Beat epoch is stale: it is no longer the leader
    FAILED = "failed"  # could not enqueue (queue full, Redis error): not fired


@dataclass(frozen=True, slots=True)
class FireOutcome:
    cron_id: str
    fire_ms: int
    task_id: str
    status: FireStatus
    queue: str | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class FireRequest:
    """One fire to make: the job, its func (catalogue row) and the scheduled time."""

    job: dict[str, Any]
    func: dict[str, Any]
    fire_ms: int
    dedup_ttl_ms: int = DEFAULT_DEDUP_TTL_MS


# --- jobs -----------------------------------------------------------------------------------


def fixed_job(func: dict[str, Any]) -> dict[str, Any] | None:
    """The implicit cron job of a func published with ``fixed_cron_expr``, or None."""
    expr = (func.get("extraConfig") or {}).get("fixedCronExpr")
    if not expr:
        return None
    return {
        "id": FIXED_PREFIX + func["id"],
        "funcId": func["id"],
        "cronExpr": expr,
        "kwargs": {},
        "timezone": None,
        "misfirePolicy": "fireOnce",
        "overlapPolicy": "skip",
        "isDisabled": False,
        "expireTime": None,
        "createTime": func.get("createTime"),
        "updateTime": func.get("updateTime"),
        "implicit": True,
    }


def overlap_policy(job: dict[str, Any]) -> str:
    return "allow" if job.get("overlapPolicy") == "allow" else "skip"


def misfire_policy(job: dict[str, Any]) -> str:
    return "skip" if job.get("misfirePolicy") == "skip" else "fireOnce"


def fire_task_id(cron_id: str, fire_ms: int, *, manual: bool = False) -> str:
    """``task-<ULID>``: time = fire time, random part = hash of (cron id, fire ms)."""
    digest = hashlib.blake2b(f"{cron_id}\0{fire_ms}\0{int(manual)}".encode(), digest_size=10).digest()
    value = (fire_ms << 80) | int.from_bytes(digest, "big")
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "task-" + "".join(reversed(chars))


def _lua(name: str) -> str:
    return (resources.files("fluxfunc_common") / "lua" / name).read_text(encoding="utf-8")


# --- firing -----------------------------------------------------------------------------------


class CronFirer:
    """Fires batches of cron fires; one per process is enough (holds the loaded scripts)."""

    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        streams: StreamProtocol,
        store: Store,
        settings: Settings,
    ) -> None:
        self.redis, self.keys, self.streams, self.store, self.settings = redis, keys, streams, store, settings
        self._fire = redis.register_script(_lua("cron_fire.lua"))
        self._unmark = redis.register_script(_lua("cron_unmark.lua"))
        self._prefixes = (keys.result(""), keys.running(""), keys.enqueued(""))

    def running_ttl_ms(self, func: dict[str, Any]) -> int:
        """How long a run may hold the overlap marker: wait in queue + timeout + a lease."""
        wait = (func.get("extraConfig") or {}).get("expires") or self.settings.tasks.result_ttl
        lease = self.settings.worker.lease_seconds
        seconds = float(wait) + func_timeout(func, self.settings.tasks) + 2 * lease
        return int(seconds * 1000)

    async def fire_many(
        self, requests: Sequence[FireRequest], *, epoch: int | None, manual: bool = False
    ) -> list[FireOutcome]:
        """Fire each request (see the module docstring); one outcome per request, in order."""
        if not requests:
            return []
        tids = [fire_task_id(r.job["id"], r.fire_ms, manual=manual) for r in requests]
        claims = await self._claim_redis(requests, tids, epoch, manual)
        outcomes: list[FireOutcome | None] = [None] * len(requests)
        todo: list[int] = []
        for i, (status, other) in enumerate(claims):
            if status in ("fired", "skipped"):
                todo.append(i)
            else:
                tid = other if status == "duplicate" and other else tids[i]
                outcomes[i] = self._outcome(requests[i], tid, FireStatus(status))
        won = await self._claim_store(requests, tids, todo, manual)
        envs = {i: self._envelope(requests[i], tids[i]) for i in todo}
        lost = [i for i in todo if not won[i]]
        for i in lost:
            outcomes[i] = self._outcome(requests[i], tids[i], FireStatus.DUPLICATE,
                                        detail="claimed in the store by another deployment")
        to_fire = [i for i in todo if won[i] and claims[i][0] == "fired"]
        to_skip = [i for i in todo if won[i] and claims[i][0] == "skipped"]
        failed = await self._enqueue(requests, envs, to_fire, outcomes)
        await self._record_skipped(requests, envs, claims, to_skip, outcomes)
        await self._unmark_all(requests, tids, claims, [i for i in lost if claims[i][0] == "fired"] + failed)
        done = [o for o in outcomes if o is not None]
        for outcome in done:
            self._log(outcome, manual)
        return done

    async def _claim_redis(
        self, requests: Sequence[FireRequest], tids: list[str], epoch: int | None, manual: bool
    ) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for start in range(0, len(requests), _PIPELINE_CHUNK):
            pipe = self.redis.pipeline(transaction=False)
            for r, tid in zip(requests[start:start + _PIPELINE_CHUNK], tids[start:start + _PIPELINE_CHUNK],
                              strict=True):
                cron_id = r.job["id"]
                k = self.keys
                guard = k.beat_fired(cron_id + (MANUAL_SUFFIX if manual else ""), r.fire_ms)
                await self._fire(
                    keys=[k.beat_epoch(), guard, k.cron_running(cron_id), k.beat_last()],
                    args=["" if epoch is None else epoch, r.dedup_ttl_ms, tid, overlap_policy(r.job),
                          *self._prefixes, self.running_ttl_ms(r.func), cron_id,
                          "" if manual else r.fire_ms],
                    client=pipe,
                )
            for status, other in await pipe.execute():
                out.append((_text(status), _text(other)))
        return out

    async def _claim_store(
        self, requests: Sequence[FireRequest], tids: list[str], todo: list[int], manual: bool
    ) -> dict[int, bool]:
        """Manual runs are one HTTP request each and never collide across deployments."""
        if manual or not todo:
            return dict.fromkeys(todo, True)
        results = await asyncio.gather(
            *(self.store.claim_cron_fire(requests[i].job["id"], requests[i].fire_ms, tids[i]) for i in todo)
        )
        return dict(zip(todo, (bool(r) for r in results), strict=True))

    def _envelope(self, r: FireRequest, tid: str) -> TaskEnvelope:
        job = r.job
        return build_envelope(
            r.func,
            dict(job.get("kwargs") or {}),
            origin=Origin.CRON_JOB,
            now=r.fire_ms / 1000,
            settings=self.settings.tasks,
            origin_id=job["id"],
            queue=job.get("queue") or None,
            task_id=tid,
            cron_expr=job.get("cronExpr"),
            record_limit=job.get("taskRecordLimit"),
        )

    async def _enqueue(
        self,
        requests: Sequence[FireRequest],
        envs: dict[int, TaskEnvelope],
        idx: list[int],
        outcomes: list[FireOutcome | None],
    ) -> list[int]:
        """Enqueue in one pipeline; returns the indexes that could not be enqueued."""
        if not idx:
            return []
        max_len = self.settings.redis.queue_max_len
        rejected: dict[str, str] = {}
        try:
            await self.streams.enqueue_many([envs[i] for i in idx], max_len=max_len)
        except QueueFull as exc:  # the others were enqueued; only these were refused
            rejected = {tid: exc.message for tid in exc.detail.get("rejected", [])}
        failed = []
        for i in idx:
            env = envs[i]
            if env.id in rejected:
                failed.append(i)
                outcomes[i] = self._outcome(requests[i], env.id, FireStatus.FAILED, queue=env.queue,
                                            detail=rejected[env.id])
            else:
                outcomes[i] = self._outcome(requests[i], env.id, FireStatus.FIRED, queue=env.queue)
        return failed

    async def _record_skipped(
        self,
        requests: Sequence[FireRequest],
        envs: dict[int, TaskEnvelope],
        claims: list[tuple[str, str]],
        idx: list[int],
        outcomes: list[FireOutcome | None],
    ) -> None:
        if not idx:
            return
        records = []
        for i in idx:
            env, prev = envs[i], claims[i][1]
            detail = f"previous run {prev} has not finished (overlapPolicy skip)"
            result = TaskResult.for_envelope(env, TaskStatus.SKIPPED, end_time=env.trigger_time,
                                             exception=f"Skipped: {detail}")
            records.append(result.model_dump(by_alias=True, mode="json"))
            outcomes[i] = self._outcome(requests[i], env.id, FireStatus.SKIPPED, queue=env.queue,
                                        detail=detail)
        await self.store.insert_task_records(records)

    async def _unmark_all(
        self, requests: Sequence[FireRequest], tids: list[str], claims: list[tuple[str, str]], idx: list[int]
    ) -> None:
        if not idx:
            return
        pipe = self.redis.pipeline(transaction=False)
        for i in idx:
            r = requests[i]
            await self._unmark(keys=[self.keys.cron_running(r.job["id"])],
                               args=[tids[i], claims[i][1], self.running_ttl_ms(r.func)], client=pipe)
        await pipe.execute()

    @staticmethod
    def _outcome(r: FireRequest, tid: str, status: FireStatus, *, queue: str | None = None,
                 detail: str = "") -> FireOutcome:
        return FireOutcome(cron_id=r.job["id"], fire_ms=r.fire_ms, task_id=tid, status=status,
                           queue=queue, detail=detail)

    @staticmethod
    def _log(o: FireOutcome, manual: bool) -> None:
        level = log.warning if o.status is FireStatus.FAILED else log.info
        level("cron fire", cron_id=o.cron_id, fire_ms=o.fire_ms, task_id=o.task_id, status=o.status.value,
              queue=o.queue, manual=manual, **({"detail": o.detail} if o.detail else {}))


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else str(value)


async def fire(
    redis: aioredis.Redis,
    keys: Keys,
    streams: StreamProtocol,
    store: Store,
    settings: Settings,
    job: dict[str, Any],
    func: dict[str, Any],
    *,
    fire_ms: int,
    epoch: int | None = None,
    manual: bool = False,
) -> FireOutcome:
    """Fire one cron job once (the Server's manual run: ``manual=True``, ``fire_ms`` = now).

    ``epoch`` fences a Beat leader (None: not fenced). Disabled/expired checks are the
    caller's: this function fires what it is given.
    """
    firer = CronFirer(redis, keys, streams, store, settings)
    outcomes = await firer.fire_many([FireRequest(job, func, fire_ms)], epoch=epoch, manual=manual)
    return outcomes[0]
