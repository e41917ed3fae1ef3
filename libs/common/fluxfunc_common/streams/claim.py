"""The consumer's taking calls: read, claim (read + start check), start, reclaim and the
re-read of its own pending entries; each takes the entries under a new lease token.

A stream entry whose body is not a valid envelope never reaches the caller: it is moved to the
dead-letter stream with reason ``malformed: …`` and acked here."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic import ValidationError

from fluxfunc_common.envelope import Origin, TaskEnvelope, TaskResult, TaskStatus
from fluxfunc_common.keys import Keys
from fluxfunc_common.streams.base import ProtocolBase, by_queue
from fluxfunc_common.streams.entries import (
    DEFAULT_RESULT_TTL_S,
    Claimed,
    Delivery,
    Reclaimed,
    ScriptCall,
    Start,
    entry_fields,
    new_lease,
    top_level,
)
from fluxfunc_common.streams.settle import complete_call, dead_call
from fluxfunc_common.text import as_text


def undecodable_call(keys: Keys, group: str, consumer: str, queue: str, entry_id: str, count: int,
                     fields: Mapping[str, Any], reason: str) -> ScriptCall:
    """The ``dead`` call of an entry whose envelope cannot be read: it is dead-lettered,
    and its task (when the entry names one) ends ``failure`` with the reason, told to a
    waiting sync caller when the body still names its reply stream."""
    task, func = as_text(fields.get("task", b"")), as_text(fields.get("func", b""))
    body = fields.get("body", b"")
    if not task:
        return dead_call(keys, group, consumer, queue, entry_id, count, None, reason, 0, task=task,
                         func=func, body=body)
    known = top_level(body)
    reply_to = known.get("replyTo")
    if not (isinstance(reply_to, str) and reply_to.startswith(keys.reply(""))):
        reply_to = None
    origin = known.get("origin")
    ttl = known.get("resultTtl")
    result = TaskResult(
        id=task, func_id=func, status=TaskStatus.FAILURE, queue=queue,
        origin=Origin(origin) if origin in set(Origin) else Origin.DIRECT,
        origin_id=known.get("originId") if isinstance(known.get("originId"), str) else None,
        end_time=time.time(), exception=f"The task envelope cannot be read: {reason}")
    ttl_s = ttl if isinstance(ttl, int) and ttl > 0 else DEFAULT_RESULT_TTL_S
    return dead_call(keys, group, consumer, queue, entry_id, count, result, reason, ttl_s * 1000,
                     task=task, func=func, body=body, reply_to=reply_to)


class Claiming(ProtocolBase):
    """How a consumer takes entries."""

    async def read(
        self, consumer: str, queues: Sequence[str], count: int, *, block_ms: int = 2000
    ) -> list[Delivery]:
        """Up to ``count`` new entries: non-blocking probe per queue in priority order, then one
        blocking read over all queues (on the blocking client) if nothing came back.
        ``block_ms <= 0`` skips the blocking read. The entries are taken under a new lease."""
        out: list[Delivery] = []
        lease = new_lease()
        for queue in queues:
            if len(out) >= count:
                break
            streams: dict[Any, Any] = {self.keys.queue(queue): ">"}
            reply: Any = await self.redis.xreadgroup(self.group, consumer, streams, count=count - len(out))
            out += await self._deliveries(consumer, reply, lease=lease)
        if not out and block_ms > 0 and count > 0:
            streams = {self.keys.queue(q): ">" for q in queues}
            reply = await self.blocking.xreadgroup(self.group, consumer, streams, count=count, block=block_ms)
            out = await self._deliveries(consumer, reply, lease=lease)
        await self._take_leases(out)
        return out

    async def _take_leases(self, deliveries: Sequence[Delivery]) -> None:
        """Write the lease tokens of entries taken outside a script (``read``)."""
        if not deliveries:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for q, ds in by_queue(deliveries).items():
                pipe.hset(self.keys.leases(q), mapping={d.entry_id: d.lease for d in ds})
            await pipe.execute()

    async def _deliveries(self, consumer: str, reply: Any, counts: Mapping[str, int] | None = None,
                          *, lease: str) -> list[Delivery]:
        """Parse an XREADGROUP reply; malformed bodies go to the dead letters."""
        if isinstance(reply, Mapping):  # RESP3
            reply = list(reply.items())
        out: list[Delivery] = []
        for stream, entries in reply or ():
            queue = self.keys.queue_name(as_text(stream))
            out += await self._parse_entries(consumer, queue, entries, counts, lease)
        return out

    async def _parse_entries(self, consumer: str, queue: str, entries: Iterable[Any],
                             counts: Mapping[str, int] | None,
                             lease: str | Mapping[str, str]) -> list[Delivery]:
        """Deliveries of the valid entries, each under ``lease`` (one token, or one per entry
        id); malformed ones are dead-lettered at once (owner check by consumer only)."""
        out: list[Delivery] = []
        bad: list[tuple[str, int, dict[str, Any], str]] = []
        for entry_id, raw in entries:
            eid = as_text(entry_id)
            count = counts.get(eid, 1) if counts else 1
            fields = entry_fields(raw)
            try:
                env = TaskEnvelope.model_validate_json(fields["body"])
            except (KeyError, ValidationError, ValueError) as exc:
                bad.append((eid, count, fields, f"malformed: {type(exc).__name__}: {exc}"[:500]))
                continue
            token = lease if isinstance(lease, str) else lease.get(eid) or new_lease()
            out.append(Delivery(queue, eid, env, count, token))
        if bad:
            await self._eval_many([undecodable_call(self.keys, self.group, consumer, queue, eid, n, f, reason)
                                   for eid, n, f, reason in bad])
        return out

    async def read_own_pending(self, consumer: str, queues: Sequence[str]) -> list[Delivery]:
        """Entries already delivered to this consumer (after a lost read reply), under the
        lease token they already hold, or a new one (to be taken by :meth:`start`) when none
        was written. Read with XPENDING + XRANGE, not ``XREADGROUP … 0``: a re-read is no
        delivery, so it changes neither ownership nor the delivery count."""
        out: list[Delivery] = []
        for queue in queues:
            stream = self.keys.queue(queue)
            counts = await self._own_pending(stream, consumer)
            if not counts:
                continue
            async with self.redis.pipeline(transaction=False) as pipe:
                for eid in counts:
                    pipe.xrange(stream, eid, eid)
                pipe.hmget(self.keys.leases(queue), list(counts))
                *ranges, tokens = await pipe.execute()
            gone = [eid for eid, found in zip(counts, ranges, strict=True) if not found]
            if gone:  # deleted while pending
                await self.redis.xack(stream, self.group, *gone)
                await self.redis.hdel(self.keys.leases(queue), *gone)
            held = {eid: as_text(v) for eid, v in zip(counts, tokens, strict=True) if v is not None}
            live = [found[0] for found in ranges if found]
            out += await self._parse_entries(consumer, queue, live, counts, held)
        return out

    async def _own_pending(self, stream: str, consumer: str, *, page: int = 500) -> dict[str, int]:
        """Entry id → delivery count of everything pending for ``consumer``, in id order."""
        counts: dict[str, int] = {}
        start = "-"
        while True:
            rows = await self.redis.xpending_range(stream, self.group, start, "+", page,
                                                   consumername=consumer)
            counts.update((as_text(r["message_id"]), int(r["times_delivered"])) for r in rows)
            if len(rows) < page:
                return counts
            start = "(" + as_text(rows[-1]["message_id"])

    async def claim(
        self,
        consumer: str,
        queues: Sequence[str],
        count: int,
        *,
        marker_ttl_ms: int,
        block_ms: int = 2000,
        completions: Sequence[tuple[Delivery, TaskResult, int]] = (),
    ) -> tuple[list[bool], list[Claimed]]:
        """``read`` and ``start`` in one round trip: up to ``count`` new entries, probing the
        queues in priority order, each with its start check done and running marker set.

        ``completions`` ((delivery, result, result_ttl_ms) each, as for ``complete_many``) go
        in the same pipeline, before the read; their outcomes are the first item returned.
        When nothing was waiting, one blocking read over all queues follows (blocking client;
        ``block_ms <= 0`` skips it) and its entries are started with :meth:`start` — except in
        a call carrying completions, which never blocks (their outcomes are not held up)."""
        k = self.keys
        calls = []
        if completions:
            minute = await self._server_minute()
            calls = [complete_call(k, self.group, consumer, d, r, ttl, minute) for d, r, ttl in completions]
        lease = new_lease()
        calls.append(("claim", [*map(k.queue, queues), *map(k.leases, queues)],
                      [self.group, consumer, count, k.result(""), k.cancel(""), k.running(""),
                       marker_ttl_ms, lease]))
        replies = await self._eval_many(calls)
        done = [bool(r) for r in replies[:-1]]
        claimed: list[Claimed] = []
        for index, entries, codes in replies[-1] or ():
            by_id = {as_text(e[0]): Start(int(c)) for e, c in zip(entries, codes, strict=True)}
            for d in await self._parse_entries(consumer, queues[int(index) - 1], entries, None, lease):
                claimed.append(Claimed(d, by_id[d.entry_id]))
        if claimed or block_ms <= 0 or count <= 0 or completions:
            return done, claimed
        streams: dict[Any, Any] = {k.queue(q): ">" for q in queues}
        reply: Any = await self.blocking.xreadgroup(self.group, consumer, streams, count=count,
                                                    block=block_ms)
        deliveries = await self._deliveries(consumer, reply, lease=lease)
        starts = await self.start(consumer, deliveries, marker_ttl_ms=marker_ttl_ms)
        return done, [Claimed(d, s) for d, s in zip(deliveries, starts, strict=True)]

    async def start(self, consumer: str, deliveries: Sequence[Delivery], *,
                    marker_ttl_ms: int) -> list[Start]:
        """The start check of entries got otherwise (reclaim, own pending): already
        completed, cancelled, or run (running marker set), in one script call that also takes
        each entry under its delivery's lease token."""
        if not deliveries:
            return []
        k = self.keys
        keys = [x for d in deliveries for x in (k.result(d.envelope.id), k.cancel(d.envelope.id),
                                                 k.running(d.envelope.id), k.leases(d.queue))]
        args = [consumer, marker_ttl_ms,
                *[x for d in deliveries for x in (d.envelope.attempt, d.entry_id, d.lease)]]
        return [Start(int(c)) for c in await self._eval("start", keys, args)]

    async def reclaim(self, consumer: str, queue: str, *, min_idle_ms: int, count: int,
                      cursor: str = "0-0") -> Reclaimed:
        """XAUTOCLAIM entries idle ≥ min_idle_ms, with each one's delivery count, taken under a
        new lease token (the previous holder can no longer write them)."""
        lease = new_lease()
        nxt, entries, counts, deleted = await self._eval(
            "reclaim", [self.keys.queue(queue), self.keys.leases(queue)],
            [self.group, consumer, min_idle_ms, cursor, count, lease])
        ids = [as_text(e[0]) for e in entries]
        deliveries = await self._parse_entries(
            consumer, queue, entries, dict(zip(ids, map(int, counts), strict=True)), lease)
        return Reclaimed(as_text(nxt), deliveries, [as_text(i) for i in deleted])
