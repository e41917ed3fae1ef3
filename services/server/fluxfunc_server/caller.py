"""Running a call: build the envelope, enqueue it, and (for sync calls) wait for the result.

A sync call waits until the function finishes or cannot finish any more: the task must
start within the queueing margin (the envelope's ``expires``; the worker ends it
``expired`` after that) and then run within its timeout, plus a grace for the worker's
hard kill. There is no global cap. ``maxWait`` shortens the wait; when a wait ends without
a result the caller gets the task id (HTTP 202) and the result stays fetchable from
``/api/v1/tasks/{id}``. Successful results of funcs with ``cacheResult`` are cached.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import orjson

from fluxfunc_common.envelope import Origin, TaskEnvelope, TaskResult, TaskStatus
from fluxfunc_common.streams import Enqueued
from fluxfunc_common.tasks import build_envelope, func_timeout
from fluxfunc_server.batcher import EnqueueBatcher
from fluxfunc_server.context import AppContext
from fluxfunc_server.invocation import CallOptions

MIN_QUEUE_MARGIN = 30.0  # seconds a sync task may wait in its queue (unless the func says)
KILL_GRACE = 10.0  # the worker's SIGTERM → SIGKILL grace plus reporting


@dataclass
class SyncOutcome:
    """A finished task (``result``), or only its id when the wait ended first."""

    task_id: str
    result: TaskResult | None
    cached: bool = False


@dataclass
class CallSpec:
    """Everything that identifies one call besides the func and its kwargs."""

    origin: Origin
    origin_id: str | None = None
    trace_id: str | None = None
    http_request: dict[str, Any] | None = None
    record_limit: int | None = None


class Caller:
    """Enqueue-and-wait against one Server's context."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.batcher = EnqueueBatcher(ctx.streams, max_len=ctx.settings.redis.queue_max_len)

    @property
    def max_len(self) -> int:
        return self.ctx.settings.redis.queue_max_len

    def envelope(self, func: dict[str, Any], kwargs: dict[str, Any], spec: CallSpec,
                 options: CallOptions, *, reply_to: str | None = None,
                 expires: float | None = None, now: float | None = None) -> TaskEnvelope:
        now = self.ctx.clock.time() if now is None else now
        return build_envelope(
            func, kwargs, origin=spec.origin, origin_id=spec.origin_id, now=now,
            settings=self.ctx.settings.tasks, queue=options.queue, eta=options.eta,
            expires=expires, reply_to=reply_to, idempotency_key=options.idempotency_key,
            trace_id=spec.trace_id, http_request=spec.http_request, record_limit=spec.record_limit,
        )

    async def enqueue(self, func: dict[str, Any], kwargs: dict[str, Any], spec: CallSpec,
                      options: CallOptions) -> Enqueued:
        """Fire and forget: the task id (the first one when the idempotency key was seen)."""
        return await self.batcher.enqueue(self.envelope(func, kwargs, spec, options))

    async def enqueue_many(self, envs: list[TaskEnvelope]) -> list[Enqueued]:
        return await self.ctx.streams.enqueue_many(envs, max_len=self.max_len)

    async def run(self, func: dict[str, Any], kwargs: dict[str, Any], spec: CallSpec,
                  options: CallOptions) -> SyncOutcome:
        """Enqueue with a reply note to this process and wait (see the module docstring)."""
        cache_key = self._cache_key(func, kwargs)
        if cache_key is not None:
            raw = await self.ctx.redis.get(cache_key)
            if raw is not None:
                hit = TaskResult.model_validate_json(raw)
                return SyncOutcome(hit.id, hit, cached=True)
        now = self.ctx.clock.time()
        timeout = func_timeout(func, self.ctx.settings.tasks)
        extra = func.get("extraConfig") or {}
        margin = float(extra.get("expires") or max(timeout, MIN_QUEUE_MARGIN))
        start = max(now, options.eta or now)
        waiter = self.ctx.waiter
        env = self.envelope(func, kwargs, spec, options, reply_to=waiter.reply_key,
                            expires=start + margin, now=now)
        wait = (start - now) + margin + timeout + KILL_GRACE
        if options.max_wait is not None:
            wait = min(wait, options.max_wait)
        fut = waiter.register(env.id)  # before enqueueing: a fast result cannot be missed
        try:
            enq = await self.batcher.enqueue(env)
        except BaseException:
            waiter.discard(env.id)
            raise
        if enq.duplicate and enq.task_id != env.id:  # another call owns the notification
            waiter.discard(env.id)
            result = await waiter.poll(enq.task_id, wait)
        else:
            result = await waiter.wait(env.id, fut, wait)
        if result is not None and cache_key is not None and result.status is TaskStatus.SUCCESS:
            await self.ctx.redis.set(cache_key, result.to_json(), ex=int(extra["cacheResult"]))
        return SyncOutcome(enq.task_id, result)

    def _cache_key(self, func: dict[str, Any], kwargs: dict[str, Any]) -> str | None:
        """``keys.result_cache(funcId, sha1(canonical kwargs + func version))`` or None."""
        ttl = (func.get("extraConfig") or {}).get("cacheResult")
        if not ttl or not isinstance(ttl, int | float) or ttl < 1:
            return None
        version = str(func.get("updateTime") or func.get("createTime") or "").encode()
        canonical = orjson.dumps(kwargs, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS,
                                 default=str)
        digest = hashlib.sha1(canonical + b"\0" + version, usedforsecurity=False).hexdigest()
        return self.ctx.keys.result_cache(func["id"], digest)
