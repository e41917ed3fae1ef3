"""The producer's calls: enqueue (now or delayed, idempotent), promote due delayed tasks, and
the ``enq`` header a queued task is reported by."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from fluxfunc_common.envelope import TaskEnvelope
from fluxfunc_common.errors import QueueFull
from fluxfunc_common.streams.base import ProtocolBase
from fluxfunc_common.streams.entries import (
    IDEM_TTL_MS,
    Enqueued,
    PreparedEnqueue,
    ScriptCall,
    header,
    result_ttl_ms,
)
from fluxfunc_common.text import as_text

ENQUEUE_BATCH = 500  # tasks per enqueue script call (bounds the time Redis spends in one call)


def _enqueued(env: TaskEnvelope, reply: list[Any]) -> Enqueued | None:
    """The script's answer as an :class:`Enqueued`; None when the queue was full."""
    kind = as_text(reply[0])
    if kind == "ok":
        return Enqueued(env.id, as_text(reply[1]))
    if kind == "delayed":
        return Enqueued(env.id, None, due_ms=int(reply[1]))
    if kind == "dup":  # the first task id, with its func when an idempotency key matched
        first, sep, func_id = as_text(reply[1]).partition("\x1f")
        return Enqueued(first, None, duplicate=True, conflict=bool(sep) and func_id != env.func_id)
    return None


class Producing(ProtocolBase):
    """Putting tasks on the streams."""

    def _enqueue_args(self, env: TaskEnvelope, max_len: int, idem_ttl_ms: int) -> tuple[list[Any], list[Any]]:
        """One task's 5 keys and 10 args of the (batch) ``enqueue`` script."""
        k = self.keys
        key, scope = env.idempotency_key, env.idempotency_scope or ""
        idem = k.idem(key, scope) if key else k.enqueued(env.id)
        keys = [k.queue(env.queue), k.enqueued(env.id), k.delayed(env.queue), k.delayed_body(env.queue), idem]
        eta = "" if env.eta is None else int(env.eta * 1000)
        args = [env.id, env.func_id, env.origin.value, env.to_json(), max_len, header(env), eta,
                result_ttl_ms(env), idem_ttl_ms, f"{env.id}\x1f{env.func_id}" if key else ""]
        return keys, args

    async def enqueue(self, env: TaskEnvelope, *, max_len: int,
                      idem_ttl_ms: int = IDEM_TTL_MS) -> Enqueued:
        """Enqueue now, or into the delayed set when ``env.eta`` is in the future (Redis time).
        Idempotency key → same task id; re-sent task id → no-op; XLEN ≥ max_len → QueueFull.
        Also writes the ``enq`` marker (task header JSON) used for ``status=queued``."""
        return (await self.enqueue_many([env], max_len=max_len, idem_ttl_ms=idem_ttl_ms))[0]

    async def enqueue_many(self, envs: Sequence[TaskEnvelope], *, max_len: int,
                           idem_ttl_ms: int = IDEM_TTL_MS) -> list[Enqueued]:
        """The same for many envelopes in one pipeline (one round trip).

        Each envelope is all-or-nothing; if any hit a full queue, :class:`QueueFull` is raised
        after the others were enqueued, with ``detail = {"accepted": [ids], "rejected": [ids]}``."""
        return await self.enqueue_prepared([self.prepare_enqueue(e, max_len=max_len, idem_ttl_ms=idem_ttl_ms)
                                            for e in envs])

    def prepare_enqueue(self, env: TaskEnvelope, *, max_len: int,
                        idem_ttl_ms: int = IDEM_TTL_MS) -> PreparedEnqueue:
        """Serialise one envelope for :meth:`enqueue_prepared` (a batcher does this in the
        caller's own request, so an envelope that cannot be serialised fails only there)."""
        keys, args = self._enqueue_args(env, max_len, idem_ttl_ms)
        return PreparedEnqueue(env, keys, args)

    async def enqueue_prepared(self, items: Sequence[PreparedEnqueue]) -> list[Enqueued]:
        """:meth:`enqueue_many` of envelopes already serialised."""
        calls: list[ScriptCall] = []
        for i in range(0, len(items), ENQUEUE_BATCH):  # one script call per batch: less per-call cost
            part = items[i:i + ENQUEUE_BATCH]
            calls.append(("enqueue", [x for p in part for x in p.keys], [x for p in part for x in p.args]))
        replies = [r for batch in await self._eval_many(calls) for r in batch]
        envs = [p.env for p in items]
        done = [_enqueued(env, r) for env, r in zip(envs, replies, strict=True)]
        rejected = [env.id for env, d in zip(envs, done, strict=True) if d is None]
        if rejected:
            accepted = [d.task_id for d in done if d is not None]
            raise QueueFull(detail={"accepted": accepted, "rejected": rejected})
        return [d for d in done if d is not None]

    async def idempotency_conflicts(self, envs: Sequence[TaskEnvelope]) -> list[int]:
        """Indexes of the envelopes whose idempotency key was already used (in its scope) for
        another func: a check before a batch is enqueued, so it can be refused whole."""
        keyed = [(i, e) for i, e in enumerate(envs) if e.idempotency_key]
        if not keyed:
            return []
        values = await self.redis.mget([self.keys.idem(e.idempotency_key or "", e.idempotency_scope or "")
                                        for _, e in keyed])
        out = []
        for (i, env), value in zip(keyed, values, strict=True):
            _, sep, func_id = as_text(value or b"").partition("\x1f")
            if sep and func_id != env.func_id:
                out.append(i)
        return out

    async def promote(self, queue: str, *, batch: int = 500) -> tuple[int, int | None]:
        """Move due delayed tasks (Redis TIME) onto the stream; return (moved, next due ms)."""
        k = self.keys
        moved, nxt = await self._eval("promote", [k.delayed(queue), k.delayed_body(queue), k.queue(queue)],
                                      [batch])
        return int(moved), None if nxt is None else int(float(nxt))

    async def queued_header(self, task_id: str) -> dict[str, object] | None:
        """The ``enq`` marker of a task (id, funcId, origin, originId, queue, triggerTime, eta)."""
        raw = await self.redis.get(self.keys.enqueued(task_id))
        return None if raw is None else dict(orjson.loads(raw))
