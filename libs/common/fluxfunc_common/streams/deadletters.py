"""The dead-letter stream: listing letters and putting one back on its queue."""

from __future__ import annotations

from typing import Any

from fluxfunc_common.envelope import TaskEnvelope
from fluxfunc_common.errors import NotFound, QueueFull
from fluxfunc_common.streams.base import ProtocolBase
from fluxfunc_common.streams.entries import Enqueued, entry_fields, header, result_ttl_ms
from fluxfunc_common.text import as_text


class DeadLetters(ProtocolBase):
    """Reading and requeueing dead letters."""

    async def dead_letters(self, *, count: int = 100, start: str = "-",
                           newest_first: bool = False) -> list[dict[str, str]]:
        """Dead letters as dicts (``id`` plus reason, queue, entry, task, func, count, body,
        time in ms), oldest first from ``start`` or newest first down from ``start`` (``+``)."""
        key = self.keys.dead()
        rows: Any
        if newest_first:
            rows = await self.redis.xrevrange(key, "+" if start == "-" else start, "-", count=count)
        else:
            rows = await self.redis.xrange(key, start, "+", count=count)
        return [{"id": as_text(i), **{k: as_text(v) for k, v in entry_fields(f).items()}} for i, f in rows]

    async def requeue_dead(self, entry_id: str, *, max_len: int) -> Enqueued:
        """Put a dead letter's envelope back on its queue (attempt reset) and delete the letter.
        The old result is deleted; eta, expires, replyTo and lastError are cleared."""
        rows = await self.redis.xrange(self.keys.dead(), entry_id, entry_id)
        if not rows:
            raise NotFound(f"no dead letter {entry_id}")
        old = TaskEnvelope.model_validate_json(entry_fields(rows[0][1])["body"])
        env = old.model_copy(update={"attempt": 1, "eta": None, "expires": None, "reply_to": None,
                                     "last_error": None})
        k = self.keys
        reply = await self._eval(
            "requeue", [k.dead(), k.queue(env.queue), k.enqueued(env.id), k.result(env.id)],
            [entry_id, max_len, env.id, env.func_id, env.origin.value, env.to_json(), header(env),
             result_ttl_ms(env)])
        kind = as_text(reply[0])
        if kind == "gone":
            raise NotFound(f"no dead letter {entry_id}")
        if kind == "full":
            raise QueueFull(detail={"rejected": [env.id]})
        return Enqueued(env.id, as_text(reply[1]))
