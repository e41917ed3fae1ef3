"""The Redis Streams task protocol (SPEC §5, research/streams-protocol.md Part A).

The only module that converts between :class:`TaskEnvelope`/:class:`TaskResult` and Redis
stream entries / result keys. Every multi-step mutation is one Lua script (``lua/*.lua``),
so ownership checks and writes are atomic.

INTERFACE STUB: signatures and semantics are the contract; bodies are filled in by the
foundation work.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import redis.asyncio as aioredis

from fluxfunc_common.envelope import TaskEnvelope, TaskResult
from fluxfunc_common.keys import GROUP, Keys


@dataclass(frozen=True, slots=True)
class Delivery:
    """One stream entry handed to this consumer."""

    queue: str
    entry_id: str
    envelope: TaskEnvelope
    count: int = 1  # delivery count (1 on first read; +1 per reclaim)


@dataclass(frozen=True, slots=True)
class Enqueued:
    task_id: str
    entry_id: str | None  # None for delayed tasks and duplicates
    duplicate: bool = False  # same idempotency key (or task id) seen before: task_id is the first one


@dataclass
class Reclaimed:
    cursor: str
    deliveries: list[Delivery] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)  # ids that vanished while pending


@dataclass(frozen=True, slots=True)
class ReplyNote:
    """A notification read from a Server's reply stream."""

    task_id: str
    status: str
    result: TaskResult | None  # inline when small, else None (GET the result key)


class StreamProtocol:
    """Producer and consumer operations on the task streams of one namespace."""

    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        *,
        blocking: aioredis.Redis | None = None,
        group: str = GROUP,
    ) -> None:
        self.redis = redis
        self.blocking = blocking or redis
        self.keys = keys
        self.group = group

    async def ensure_groups(self, queues: Sequence[str]) -> None:
        """XGROUP CREATE <stream> workers 0 MKSTREAM for each queue, ignoring BUSYGROUP."""
        raise NotImplementedError

    async def server_time(self) -> float:
        """Redis TIME as epoch seconds."""
        raise NotImplementedError

    # --- producing -------------------------------------------------------------------
    async def enqueue(self, env: TaskEnvelope, *, max_len: int) -> Enqueued:
        """Enqueue now, or into the delayed set when ``env.eta`` is in the future (Redis time).
        Idempotency key → same task id; re-sent task id → no-op; XLEN ≥ max_len → QueueFull.
        Also writes the ``enq`` marker (task header JSON) used for ``status=queued``."""
        raise NotImplementedError

    async def enqueue_many(self, envs: Sequence[TaskEnvelope], *, max_len: int) -> list[Enqueued]:
        """The same for many envelopes in one pipeline (one round trip)."""
        raise NotImplementedError

    async def promote(self, queue: str, *, batch: int = 500) -> tuple[int, int | None]:
        """Move due delayed tasks (Redis TIME) onto the stream; return (moved, next due ms)."""
        raise NotImplementedError

    async def queued_header(self, task_id: str) -> dict[str, object] | None:
        """The ``enq`` marker of a task (id, funcId, origin, originId, queue, triggerTime, eta)."""
        raise NotImplementedError

    # --- consuming -------------------------------------------------------------------
    async def read(
        self, consumer: str, queues: Sequence[str], count: int, *, block_ms: int = 2000
    ) -> list[Delivery]:
        """Up to ``count`` new entries: non-blocking probe per queue in priority order, then one
        blocking read over all queues (on the blocking client) if nothing came back."""
        raise NotImplementedError

    async def read_own_pending(self, consumer: str, queues: Sequence[str]) -> list[Delivery]:
        """Entries already delivered to this consumer (after a lost read reply)."""
        raise NotImplementedError

    async def touch(self, consumer: str, deliveries: Sequence[Delivery]) -> list[str]:
        """Owner-checked lease renewal; returns entry ids this consumer no longer owns."""
        raise NotImplementedError

    async def complete(self, consumer: str, delivery: Delivery, result: TaskResult, *,
                       result_ttl_ms: int) -> bool:
        """Owner-checked: SET result PX ttl, XADD reply note (if replyTo), XACK+XDEL, all in
        one script. False (nothing written) when the entry is no longer ours."""
        raise NotImplementedError

    async def complete_many(self, consumer: str,
                            items: Sequence[tuple[Delivery, TaskResult, int]]) -> list[bool]:
        """Many completions in one pipeline: (delivery, result, result_ttl_ms) each."""
        raise NotImplementedError

    async def ack_duplicate(self, consumer: str, delivery: Delivery) -> bool:
        """Owner-checked XACK+XDEL of an entry whose task already has a result."""
        raise NotImplementedError

    async def retry(self, consumer: str, delivery: Delivery, next_env: TaskEnvelope,
                    due_ms: int) -> bool:
        """Owner-checked: put ``next_env`` (attempt+1) in the delayed set due at ``due_ms``
        and XACK+XDEL the entry. False when not ours."""
        raise NotImplementedError

    async def reclaim(self, consumer: str, queue: str, *, min_idle_ms: int, count: int,
                      cursor: str = "0-0") -> Reclaimed:
        """XAUTOCLAIM entries idle ≥ min_idle_ms, with each one's delivery count."""
        raise NotImplementedError

    async def dead(self, consumer: str, delivery: Delivery, result: TaskResult, *,
                   reason: str, result_ttl_ms: int) -> bool:
        """Owner-checked: XADD to the dead stream (reason, queue, entry id, task, count, body),
        SET result (status dead), reply note, XACK+XDEL."""
        raise NotImplementedError

    async def release(self, consumer: str, deliveries: Sequence[Delivery], *,
                      lease_ms: int) -> int:
        """Owner-checked XCLAIM … IDLE (10×lease) so any worker reclaims them at once."""
        raise NotImplementedError

    async def delete_consumer_if_empty(self, queue: str, consumer: str) -> bool:
        """XGROUP DELCONSUMER only when the consumer has nothing pending (one script)."""
        raise NotImplementedError

    async def safe_trim(self, queue: str) -> int:
        """XTRIM MINID ~ below both the smallest pending id and last-delivered-id."""
        raise NotImplementedError

    # --- results and replies --------------------------------------------------------------
    async def get_result(self, task_id: str) -> TaskResult | None:
        raise NotImplementedError

    async def open_reply_stream(self, server_id: str, *, ttl_ms: int = 120_000) -> str:
        """Create/refresh this Server's reply stream; returns its key."""
        raise NotImplementedError

    async def read_replies(self, reply_key: str, last_id: str, *, block_ms: int = 1000,
                           count: int = 500) -> tuple[str, list[ReplyNote]]:
        """XREAD BLOCK on the blocking client; returns (new last id, notes)."""
        raise NotImplementedError

    # --- dead letters ---------------------------------------------------------------------
    async def dead_letters(self, *, count: int = 100, start: str = "-") -> list[dict[str, str]]:
        raise NotImplementedError

    async def requeue_dead(self, entry_id: str, *, max_len: int) -> Enqueued:
        """Put a dead letter's envelope back on its queue (attempt reset) and delete the letter."""
        raise NotImplementedError
