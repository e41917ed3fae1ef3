"""Results and the reply notes a waiting Server reads."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fluxfunc_common.envelope import TaskResult
from fluxfunc_common.streams.base import ProtocolBase
from fluxfunc_common.streams.entries import REPLY_MAXLEN, ReplyNote, entry_fields
from fluxfunc_common.text import as_text


class Replies(ProtocolBase):
    """Reading results: the result key of a task, a Server's reply stream."""

    async def get_result(self, task_id: str) -> TaskResult | None:
        """The stored result of a task, None when absent or expired."""
        raw = await self.redis.get(self.keys.result(task_id))
        return None if raw is None else TaskResult.model_validate_json(raw)

    async def open_reply_stream(self, server_id: str, *, ttl_ms: int = 120_000) -> str:
        """Create/refresh this Server's reply stream; returns its key."""
        key = self.keys.reply(server_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xadd(key, {"init": "1"}, maxlen=REPLY_MAXLEN, approximate=True)
            pipe.pexpire(key, ttl_ms)
            await pipe.execute()
        return key

    async def read_replies(self, reply_key: str, last_id: str, *, block_ms: int = 1000,
                           count: int = 500) -> tuple[str, list[ReplyNote]]:
        """XREAD BLOCK on the blocking client; returns (new last id, notes)."""
        reply: Any = await self.blocking.xread({reply_key: last_id}, count=count, block=block_ms)
        if isinstance(reply, Mapping):  # RESP3
            reply = list(reply.items())
        notes: list[ReplyNote] = []
        for _stream, entries in reply or ():
            for entry_id, raw in entries:
                last_id = as_text(entry_id)
                f = entry_fields(raw)
                if "task" not in f:
                    continue  # the init entry
                result = TaskResult.model_validate_json(f["result"]) if f.get("result") else None
                notes.append(ReplyNote(as_text(f["task"]), as_text(f["status"]), result))
        return last_id, notes
