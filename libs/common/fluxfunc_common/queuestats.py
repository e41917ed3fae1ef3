"""Queue inspection: what an operator wants to know about each task stream, read from Redis.

Read-only and side-effect free, shared by ``fluxfunc streams`` and the Server's ops overview.
Every figure comes from one cheap Redis command per queue (``XLEN``, ``XINFO GROUPS``,
``XINFO CONSUMERS``, ``XPENDING`` summary, ``ZCARD``), sent in one pipeline; dead letters are
counted per queue from the dead-letter stream (bounded scan). Whether a live worker reads a
queue comes from the worker heartbeats (``{ns}:svc:worker:*``, each listing its queues).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any, TypedDict

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from fluxfunc_common.heartbeat import list_services
from fluxfunc_common.keys import GROUP, Keys
from fluxfunc_common.text import as_text

DEAD_SCAN_LIMIT = 10_000


class ConsumerFigures(TypedDict):
    """One consumer of a queue's group (``XINFO CONSUMERS``); ``inactiveMs`` is None before
    Redis 7.2 and for a consumer that never read."""

    name: str
    pending: int
    idleMs: int
    inactiveMs: int | None


class QueueRow(TypedDict):
    """One queue's figures (:func:`queue_stats`), as ``fluxfunc streams`` prints them and the
    ops overview answers them."""

    queue: str
    exists: bool
    noConsumer: bool
    length: int
    pending: int
    lag: int
    consumers: list[ConsumerFigures]
    oldestPendingAgeMs: int | None
    delayed: int
    dead: int
    throughputLastMinute: int


class PendingEntry(TypedDict):
    """One delivered-but-unacked entry (:func:`pending_entries`)."""

    entry: str
    consumer: str
    idleMs: int
    deliveries: int
    task: str | None


def entry_ms(entry_id: str) -> int:
    """The millisecond time part of a stream entry id (``1700000000000-3`` → 1700000000000)."""
    return int(entry_id.split("-", 1)[0])


async def discover_queues(redis: aioredis.Redis, keys: Keys, configured: Iterable[str] = ()) -> list[str]:
    """Every queue that has a stream (``SCAN`` of ``{ns}:queue:*``) plus the configured ones."""
    found = set(configured)
    async for key in redis.scan_iter(match=keys.queue_pattern(), count=500, _type="stream"):
        found.add(keys.queue_name(as_text(key)))
    return sorted(found)


async def live_queues(redis: aioredis.Redis, keys: Keys) -> set[str]:
    """The queues some live worker reads, from the worker heartbeats."""
    found: set[str] = set()
    for service in await list_services(redis, keys):
        if service.get("role") == "worker":
            found.update(str(q) for q in service.get("queues") or ())
    return found


async def server_ms(redis: aioredis.Redis) -> int:
    """Redis ``TIME`` in ms: ages are measured on the clock that stamped the entry ids."""
    seconds, micros = await redis.time()
    return int(seconds) * 1000 + int(micros) // 1000


async def dead_counts(redis: aioredis.Redis, keys: Keys, *, limit: int = DEAD_SCAN_LIMIT) -> Counter[str]:
    """Dead letters per queue (the newest ``limit`` letters are looked at)."""
    counts: Counter[str] = Counter()
    rows = await redis.xrevrange(keys.dead(), "+", "-", count=limit)
    for _entry, fields in rows or ():
        counts[as_text((fields or {}).get(b"queue", b"?"))] += 1
    return counts


def _group(groups: Any) -> dict[str, Any] | None:
    if isinstance(groups, ResponseError):
        return None
    for g in groups or ():
        if as_text(g.get("name")) == GROUP:
            return dict(g)
    return None


def _consumers(raw: Any) -> list[ConsumerFigures]:
    if isinstance(raw, ResponseError):
        return []
    out: list[ConsumerFigures] = [
        {"name": as_text(c["name"]), "pending": int(c.get("pending", 0)), "idleMs": int(c.get("idle", 0)),
         "inactiveMs": None if c.get("inactive") in (None, -1) else int(c["inactive"])}
        for c in raw or ()]
    return sorted(out, key=lambda c: c["name"])


def _row(queue: str, now_ms: int, replies: Sequence[Any], dead: int, consumed: bool) -> QueueRow:
    length, groups, consumers, summary, delayed, throughput = replies
    group = _group(groups)
    pending = int(group["pending"]) if group else 0
    length = 0 if isinstance(length, ResponseError) else int(length or 0)
    lag = group.get("lag") if group else None
    if lag is None:
        # Completed entries are XACK+XDEL'ed, so whatever is in the stream and not pending is
        # still waiting for a first delivery (Redis < 7 has no lag, 7 often reports null).
        lag = max(length - pending, 0)
    oldest = None
    if group and pending and isinstance(summary, dict) and summary.get("min"):
        oldest = max(now_ms - entry_ms(as_text(summary["min"])), 0)
    delayed = 0 if isinstance(delayed, ResponseError) else int(delayed or 0)
    return {
        "queue": queue,
        "exists": group is not None or length > 0 or delayed > 0,  # false: nothing ever came
        "noConsumer": not consumed,
        "length": length,
        "pending": pending,
        "lag": int(lag),
        "consumers": _consumers(consumers),
        "oldestPendingAgeMs": oldest,
        "delayed": delayed,
        "dead": dead,
        "throughputLastMinute": 0 if not throughput or isinstance(throughput, ResponseError)
        else int(throughput),
    }


async def queue_stats(redis: aioredis.Redis, keys: Keys, queues: Sequence[str]) -> list[QueueRow]:
    """One :class:`QueueRow` per queue: ``queue, exists, length, pending, lag, consumers [{name,
    pending, idleMs, inactiveMs}], oldestPendingAgeMs, delayed, dead, throughputLastMinute,
    noConsumer``.

    ``oldestPendingAgeMs`` is the age of the oldest delivered-but-unacked entry (since it was
    enqueued), None when nothing is pending. ``throughputLastMinute`` counts tasks completed
    in the previous whole minute (Redis time). A queue whose stream does not exist yet reads
    as zeros with ``exists`` false. ``noConsumer`` is true when no live worker reads the queue:
    its tasks wait until one does."""
    now_ms = await server_ms(redis)
    consumed = await live_queues(redis, keys)
    minute = now_ms // 60_000 - 1
    dead = await dead_counts(redis, keys)
    pipe = redis.pipeline(transaction=False)
    for q in queues:
        stream = keys.queue(q)
        pipe.xlen(stream)
        pipe.xinfo_groups(stream)
        pipe.xinfo_consumers(stream, GROUP)
        pipe.xpending(stream, GROUP)
        pipe.zcard(keys.delayed(q))
        pipe.get(keys.stats(q, minute))
    replies = await pipe.execute(raise_on_error=False)
    return [_row(q, now_ms, replies[i * 6:(i + 1) * 6], dead.get(q, 0), q in consumed)
            for i, q in enumerate(queues)]


async def queue_exists(redis: aioredis.Redis, keys: Keys, queue: str) -> bool:
    """True when the queue's stream exists (it is created by the first task or worker)."""
    return bool(await redis.exists(keys.queue(queue)))


async def pending_entries(redis: aioredis.Redis, keys: Keys, queue: str, *,
                          count: int = 100) -> list[PendingEntry]:
    """``XPENDING`` details of one queue: entry, consumer, idleMs, deliveries, task id."""
    stream = keys.queue(queue)
    try:
        rows = await redis.xpending_range(stream, GROUP, "-", "+", count)
    except ResponseError:
        return []  # no such stream or group
    pipe = redis.pipeline(transaction=False)
    for row in rows:
        pipe.xrange(stream, row["message_id"], row["message_id"])
    bodies = await pipe.execute()
    out: list[PendingEntry] = []
    for row, found in zip(rows, bodies, strict=True):
        task = as_text(found[0][1].get(b"task", b"")) if found else ""
        out.append({"entry": as_text(row["message_id"]), "consumer": as_text(row["consumer"]),
                    "idleMs": int(row["time_since_delivered"]),
                    "deliveries": int(row["times_delivered"]), "task": task or None})
    return out
