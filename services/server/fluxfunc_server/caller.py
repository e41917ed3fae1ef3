"""Running a call: build the envelope, enqueue it, and (for sync calls) wait for the result.

A sync call waits until the function finishes or cannot finish any more: the task must
start within the queueing margin (the envelope's ``expires``; the worker ends it
``expired`` after that) and then run within its timeout, plus a grace for the worker's
hard kill. There is no global cap. ``maxWait`` shortens the wait; when a wait ends without
a result the caller gets the task id (HTTP 202) and the result stays fetchable from
``/api/v1/tasks/{id}``. Successful results of funcs with ``cacheResult`` are cached.

An ``idempotencyKey`` is scoped (:func:`idempotency_scope`): anonymous callers of one entry
point share a scope, admins share another; the same key in another scope is another key.
Within a scope the key remembers its func: reusing it for another func is a 409.

A sync call without ``maxWait`` to a queue that no live worker reads is refused at once (503
``EQueueNoConsumer``) instead of waiting for its expiry.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import orjson

from fluxfunc_common import queues
from fluxfunc_common.envelope import Origin, TaskEnvelope, TaskResult, TaskStatus
from fluxfunc_common.errors import Conflict, NoConsumer
from fluxfunc_common.models import Func, JSONObject
from fluxfunc_common.queues import LiveQueues
from fluxfunc_common.streams import Enqueued
from fluxfunc_common.tasks import build_envelope
from fluxfunc_server.batcher import EnqueueBatcher
from fluxfunc_server.context import AppContext
from fluxfunc_server.invocation import CallOptions

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
    http_request: JSONObject | None = None
    record_limit: int | None = None
    # who is calling: "admin" (direct calls), or "<entry id>/<API-auth principal>" for the
    # sync/async APIs (``apiauth.AuthInput.principal``, "anyone" without API auth)
    principal: str = "admin"


def idempotency_scope(spec: CallSpec) -> str:
    """The scope of a caller's idempotency keys: a digest of the origin and the principal
    (which names the entry point for API calls)."""
    return hashlib.sha256(f"{spec.origin.value}\x1f{spec.principal}".encode()).hexdigest()[:32]


def check_conflict(enq: Enqueued, idempotency_key: str | None) -> Enqueued:
    """409 when the key was first used (in the same scope) for another func."""
    if enq.conflict:
        raise Conflict("This idempotencyKey was already used for another function",
                       {"idempotencyKey": idempotency_key})
    return enq


class Caller:
    """Enqueue-and-wait against one Server's context."""

    def __init__(self, ctx: AppContext) -> None:
        self.ctx = ctx
        self.batcher = EnqueueBatcher(ctx.streams, max_len=ctx.settings.redis.queue_max_len)
        self.live = LiveQueues(ctx.redis, ctx.keys, seen_seconds=ctx.settings.worker.lease_seconds)

    @property
    def max_len(self) -> int:
        return self.ctx.settings.redis.queue_max_len

    def envelope(self, func: Func, kwargs: JSONObject, spec: CallSpec,
                 options: CallOptions, *, reply_to: str | None = None,
                 expires: float | None = None, now: float | None = None) -> TaskEnvelope:
        now = self.ctx.clock.time() if now is None else now
        return build_envelope(
            func, kwargs, origin=spec.origin, origin_id=spec.origin_id, now=now,
            settings=self.ctx.settings.tasks, queue=options.queue, eta=options.eta,
            expires=expires, reply_to=reply_to, idempotency_key=options.idempotency_key,
            # the scope only goes into the envelope with a key: no digest for the others
            idempotency_scope=idempotency_scope(spec) if options.idempotency_key else None,
            trace_id=spec.trace_id, http_request=spec.http_request, record_limit=spec.record_limit,
        )

    async def enqueue(self, func: Func, kwargs: JSONObject, spec: CallSpec,
                      options: CallOptions) -> Enqueued:
        """Fire and forget: the task id (the first one when the idempotency key was seen)."""
        enq = await self.batcher.enqueue(self.envelope(func, kwargs, spec, options))
        return check_conflict(enq, options.idempotency_key)

    async def enqueue_many(self, envs: list[TaskEnvelope]) -> list[Enqueued]:
        """All in one pipeline; a key reused for another func is a 409 naming its call, before
        any call is enqueued (or, when two requests race, after)."""
        conflicts = await self.ctx.streams.idempotency_conflicts(envs)
        enqueued = [] if conflicts else await self.ctx.streams.enqueue_many(envs, max_len=self.max_len)
        conflicts = conflicts or [i for i, enq in enumerate(enqueued) if enq.conflict]
        if conflicts:
            i = conflicts[0]
            raise Conflict(f"calls[{i}]: this idempotencyKey was already used for another function",
                           {"index": i, "idempotencyKey": envs[i].idempotency_key})
        return enqueued

    async def run(self, func: Func, kwargs: JSONObject, spec: CallSpec,
                  options: CallOptions) -> SyncOutcome:
        """Enqueue with a reply note to this process and wait (see the module docstring)."""
        cache_key = self._cache_key(func, kwargs, spec.principal)
        if cache_key is not None:
            raw = await self.ctx.redis.get(cache_key)
            if raw is not None:
                hit = TaskResult.model_validate_json(raw)
                return SyncOutcome(hit.id, hit, cached=True)
        now = self.ctx.clock.time()
        timeout = func.options.effective_timeout(self.ctx.settings.tasks)
        start = max(now, options.eta or now)
        deadline = func.options.queue_deadline(start, timeout, sync=True)
        assert deadline is not None  # a sync call's task never waits without limit
        waiter = self.ctx.waiter
        env = self.envelope(func, kwargs, spec, options, reply_to=waiter.reply_key,
                            expires=deadline, now=now)
        wait = (deadline - now) + timeout + KILL_GRACE
        if options.max_wait is not None:
            wait = min(wait, options.max_wait)
        elif not await self.live.read(env.queue):  # it would only wait: say so at once
            raise NoConsumer(queues.no_consumer(env.queue), {"queue": env.queue})
        fut = waiter.register(env.id)  # before enqueueing: a fast result cannot be missed
        try:
            enq = check_conflict(await self.batcher.enqueue(env), options.idempotency_key)
        except BaseException:
            waiter.discard(env.id)
            raise
        if enq.duplicate and enq.task_id != env.id:  # another call owns the notification
            waiter.discard(env.id)
            result = await waiter.poll(enq.task_id, wait)
        else:
            result = await waiter.wait(env.id, fut, wait)
        if result is not None and cache_key is not None and result.status is TaskStatus.SUCCESS:
            await self.ctx.redis.set(cache_key, result.to_json(), ex=func.options.cache_seconds)
        return SyncOutcome(enq.task_id, result)

    def _cache_key(self, func: Func, kwargs: JSONObject, principal: str) -> str | None:
        """``keys.result_cache(funcId, sha256(principal, canonical kwargs, func version))`` or
        None: a cached result is never served to another caller (entry + API-auth principal)."""
        if func.options.cache_seconds is None:
            return None
        version = func.version.encode()
        canonical = orjson.dumps(kwargs, option=orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS,
                                 default=str)
        digest = hashlib.sha256(principal.encode() + b"\0" + canonical + b"\0" + version).hexdigest()
        return self.ctx.keys.result_cache(func.id, digest)
