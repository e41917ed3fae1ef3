"""The consumer's writes on entries it holds: renew, complete, retry, dead-letter, release.

Every call here is owner-checked by (consumer, lease token) inside its Lua script."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from fluxfunc_common.envelope import TaskEnvelope, TaskResult
from fluxfunc_common.keys import Keys
from fluxfunc_common.streams.base import ProtocolBase, by_queue
from fluxfunc_common.streams.entries import (
    INLINE_LIMIT,
    REPLY_MAXLEN,
    Delivery,
    ScriptCall,
    header,
    result_ttl_ms,
)
from fluxfunc_common.taskstats import bucket_label
from fluxfunc_common.text import as_text


def complete_call(keys: Keys, group: str, consumer: str, d: Delivery, result: TaskResult,
                  ttl_ms: int, minute: int) -> ScriptCall:
    """The ``complete`` script call of one delivery (also sent by ``claim``)."""
    env, k = d.envelope, keys
    blob = result.to_json().encode()
    keys_ = [k.queue(d.queue), k.result(env.id), k.running(env.id), k.stats(d.queue, minute),
             k.enqueued(env.id), k.task_counts(), k.task_durations(), k.leases(d.queue),
             k.task_origin_counts()]
    if env.reply_to:
        keys_.append(env.reply_to)
    ran = result.start_time is not None and result.end_time is not None
    seconds = max(0.0, result.end_time - result.start_time) if ran else 0.0  # type: ignore[operator]
    args = [group, consumer, d.entry_id, d.lease, blob, ttl_ms, env.id, result.status.value,
            int(len(blob) <= INLINE_LIMIT), REPLY_MAXLEN, env.func_id,
            bucket_label(seconds) if ran else "", repr(seconds), env.origin.value]
    return "complete", keys_, args


def dead_call(keys: Keys, group: str, consumer: str, queue: str, entry_id: str, count: int,
              result: TaskResult | None, reason: str, ttl_ms: int, *, task: str, func: str,
              body: Any, reply_to: str | None = None, lease: str = "") -> ScriptCall:
    """The ``dead`` script call of one entry (also for a malformed one, ``result`` None when
    the entry names no task)."""
    k = keys
    blob = result.to_json().encode() if result else b""
    keys_ = [k.queue(queue), k.dead(), k.result(task), k.running(task), k.task_counts(), k.leases(queue),
             k.task_origin_counts()]
    if reply_to and result:
        keys_.append(reply_to)
    status = result.status.value if result else ""
    origin = result.origin.value if result else ""
    args = [group, consumer, entry_id, count, blob, ttl_ms, task, status,
            int(len(blob) <= INLINE_LIMIT), REPLY_MAXLEN, reason, queue, func, body, lease, origin]
    return "dead", keys_, args


class Settling(ProtocolBase):
    """Owner-checked writes of a consumer on the entries it holds."""

    async def touch(self, consumer: str, deliveries: Sequence[Delivery]) -> list[str]:
        """Owner-checked lease renewal; returns entry ids this consumer no longer owns."""
        calls = [("touch", [self.keys.queue(q), self.keys.leases(q)],
                  [self.group, consumer, *[x for d in ds for x in (d.entry_id, d.lease)]])
                 for q, ds in by_queue(deliveries).items()]
        return [as_text(i) for lost in await self._eval_many(calls) for i in lost]

    async def complete(self, consumer: str, delivery: Delivery, result: TaskResult, *,
                       result_ttl_ms: int) -> bool:
        """Owner-checked: SET result PX ttl, XADD reply note (if replyTo), XACK+XDEL, all in
        one script. False (nothing written) when the entry is no longer ours.
        ``result_ttl_ms <= 0`` keeps no result (and drops the ``enq`` marker)."""
        return (await self.complete_many(consumer, [(delivery, result, result_ttl_ms)]))[0]

    async def complete_many(self, consumer: str,
                            items: Sequence[tuple[Delivery, TaskResult, int]]) -> list[bool]:
        """Many completions in one pipeline: (delivery, result, result_ttl_ms) each."""
        minute = await self._server_minute()
        calls = [complete_call(self.keys, self.group, consumer, d, r, ttl, minute) for d, r, ttl in items]
        return [bool(r) for r in await self._eval_many(calls)]

    async def ack_duplicate(self, consumer: str, delivery: Delivery) -> bool:
        """Owner-checked XACK+XDEL of an entry whose task already has a result."""
        q = delivery.queue
        return bool(await self._eval("ack", [self.keys.queue(q), self.keys.leases(q)],
                                     [self.group, consumer, delivery.entry_id, delivery.lease]))

    async def retry(self, consumer: str, delivery: Delivery, next_env: TaskEnvelope,
                    due_ms: int) -> bool:
        """Owner-checked: put ``next_env`` (attempt+1) in the delayed set due at ``due_ms``
        and XACK+XDEL the entry. False when not ours. Also refreshes the ``enq`` marker and
        drops the running marker, so the task reads as ``queued`` again."""
        k, q = self.keys, delivery.queue
        keys = [k.queue(q), k.delayed(next_env.queue), k.delayed_body(next_env.queue),
                k.running(next_env.id), k.enqueued(next_env.id), k.leases(q)]
        ttl = result_ttl_ms(next_env) + max(0, int(due_ms - time.time() * 1000))
        args = [self.group, consumer, delivery.entry_id, delivery.lease, next_env.id,
                next_env.to_json(), int(due_ms), header(next_env), ttl]
        return bool(await self._eval("retry", keys, args))

    async def dead(self, consumer: str, delivery: Delivery, result: TaskResult, *,
                   reason: str, result_ttl_ms: int) -> bool:
        """Owner-checked: XADD to the dead stream (reason, queue, entry id, task, count, body),
        SET result (status dead), reply note, XACK+XDEL."""
        env = delivery.envelope
        call = dead_call(self.keys, self.group, consumer, delivery.queue, delivery.entry_id,
                         delivery.count, result, reason, result_ttl_ms, task=env.id,
                         func=env.func_id, body=env.to_json(), reply_to=env.reply_to,
                         lease=delivery.lease)
        return bool((await self._eval_many([call]))[0])

    async def release(self, consumer: str, deliveries: Sequence[Delivery], *,
                      lease_ms: int) -> int:
        """Owner-checked XCLAIM … IDLE (10×lease) so any worker reclaims them at once."""
        calls = [("release", [self.keys.queue(q), self.keys.leases(q)],
                  [self.group, consumer, 10 * lease_ms, *[x for d in ds for x in (d.entry_id, d.lease)]])
                 for q, ds in by_queue(deliveries).items()]
        return sum(int(n) for n in await self._eval_many(calls))

    async def delete_consumer_if_empty(self, queue: str, consumer: str) -> bool:
        """XGROUP DELCONSUMER only when the consumer has nothing pending (one script)."""
        return bool(await self._eval("delconsumer_if_empty", [self.keys.queue(queue)],
                                     [self.group, consumer]))

    async def safe_trim(self, queue: str, *, exact: bool = False) -> int:
        """XTRIM MINID ~ below both the smallest pending id and last-delivered-id
        (of every group). ``exact`` trims with ``=`` (tests; costlier)."""
        return int(await self._eval("safe_trim", [self.keys.queue(queue)], ["=" if exact else "~"]))
