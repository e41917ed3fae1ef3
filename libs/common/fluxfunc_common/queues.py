"""Queues and their readers: the queues published functions send to, and the warning for a
queue that no live worker reads (its tasks would otherwise wait without a word).

A worker announces the queues it reads in its heartbeat (:func:`queuestats.live_queues`); a
function's queue is its ``extraConfig.queue``, else the queue of the call's origin
(``default``, ``async`` or ``cron``, see :meth:`models.FuncOptions.queue_name`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from fluxfunc_common.keys import GROUP, Keys
from fluxfunc_common.models import Func
from fluxfunc_common.queuestats import live_queues
from fluxfunc_common.store import Entity, EntityStore

HEARTBEAT_CACHE_SECONDS = 2.0


def func_queue(func: Func | Mapping[str, object]) -> str | None:
    """The queue a function names in ``@DFF.API(queue=...)``, None for the origin's default."""
    return Func.of(func).options.queue


async def func_queues(store: EntityStore) -> set[str]:
    """Every queue that some published function names."""
    funcs = await store.changed_since(Entity.FUNC, 0)
    return {q for f in funcs if (q := func_queue(f))}


def no_consumer(queue: str, *, func: str | None = None) -> str:
    """The warning (and error) text for a queue that no live worker reads."""
    who = f"{func}: " if func else ""
    return (f"{who}queue {queue!r} has no live consumer: its tasks wait until a worker reads it "
            f"(start one with `fluxfunc-worker --queues {queue}`, or restart `fluxfunc up`, which "
            "reads every queue that published functions use)")


def unconsumed(funcs: Iterable[Func | Mapping[str, object]], live: set[str]) -> list[str]:
    """One :func:`no_consumer` warning per function whose own queue no live worker reads."""
    out = []
    for func in map(Func.of, funcs):
        queue = func.options.queue
        if queue is not None and queue not in live:
            out.append(no_consumer(queue, func=func.id or func.name))
    return out


class LiveQueues:
    """Whether some live worker reads a queue, cheap enough to ask on every sync call.

    The worker heartbeats are re-read (one ``SCAN``) in the background when the copy is older
    than ``cache_seconds`` — callers never wait for it, except the very first one. A queue the
    copy does not list still counts as read when a consumer of its group read it within
    ``seen_seconds`` (``XINFO CONSUMERS``, one cheap command): a worker that has just started,
    or one restarting, is not taken for none."""

    def __init__(self, redis: aioredis.Redis, keys: Keys, *, seen_seconds: float,
                 cache_seconds: float = HEARTBEAT_CACHE_SECONDS) -> None:
        self.redis, self.keys = redis, keys
        self.seen_ms = int(seen_seconds * 1000)
        self.cache_seconds = cache_seconds
        self._queues: set[str] | None = None
        self._read_at = 0.0
        self._refresh: asyncio.Task[None] | None = None

    async def _reread(self) -> None:
        try:
            self._queues = await live_queues(self.redis, self.keys)
            self._read_at = time.monotonic()
        except Exception:
            if self._queues is None:
                raise  # the first caller waits for this read: it gets the error
            # otherwise keep the last copy; a later call tries again

    async def _heartbeat_queues(self) -> set[str]:
        stale = time.monotonic() - self._read_at > self.cache_seconds
        if stale and (self._refresh is None or self._refresh.done()):
            self._refresh = asyncio.create_task(self._reread(), name="live-queues")
        if self._queues is None:
            assert self._refresh is not None
            await asyncio.shield(self._refresh)
        return self._queues or set()

    async def read(self, queue: str) -> bool:
        """True when a live worker reads ``queue``."""
        if queue in await self._heartbeat_queues():
            return True
        try:
            consumers = await self.redis.xinfo_consumers(self.keys.queue(queue), GROUP)
        except ResponseError:  # no stream or no group: nobody has ever read it
            return False
        return any(int(c.get("idle", self.seen_ms)) < self.seen_ms for c in consumers)
