"""What the task streams carry: the stream entries handed to a consumer, the answers of the
producer and consumer calls, and the bodies written next to an entry (the ``enq`` header)."""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import orjson

from fluxfunc_common.envelope import TaskEnvelope, TaskResult
from fluxfunc_common.text import as_text

INLINE_LIMIT = 64 * 1024  # results up to this size travel inside the reply note
REPLY_MAXLEN = 10_000
IDEM_TTL_MS = 86_400_000
DEFAULT_RESULT_TTL_S = 3600


@dataclass(frozen=True, slots=True)
class Delivery:
    """One stream entry handed to this consumer."""

    queue: str
    entry_id: str
    envelope: TaskEnvelope
    count: int = 1  # delivery count (1 on first read; +1 per reclaim or re-read)
    lease: str = ""  # the lease token this consumer holds the entry under


class Start(IntEnum):
    """What a consumer may do with an entry it just got (``claim``/``start``)."""

    RUN = 0  # the running marker is set: run it
    DONE = 1  # the task already has a result (a re-delivery): ack it, never run it twice
    CANCELLED = 2  # the task has a cancel flag: end it ``cancelled`` without running it


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery plus its start check."""

    delivery: Delivery
    start: Start


@dataclass(frozen=True, slots=True)
class Enqueued:
    task_id: str
    entry_id: str | None  # None for delayed tasks and duplicates
    duplicate: bool = False  # same idempotency key (or task id) seen before: task_id is the first one
    conflict: bool = False  # the idempotency key was first used (same scope) for another func
    due_ms: int | None = None  # set when the task went to the delayed set


@dataclass(frozen=True, slots=True)
class PreparedEnqueue:
    """One envelope's keys and arguments of the ``enqueue`` script."""

    env: TaskEnvelope
    keys: list[Any]
    args: list[Any]


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


# (script name, keys, args) of one script call
ScriptCall = tuple[str, list[Any], list[Any]]


def is_entry_id(text: str) -> bool:
    """Whether ``text`` is a complete stream entry id (``<ms>-<seq>``, both below 2^64)."""
    ms, sep, seq = text.partition("-")
    return bool(sep) and all(p.isascii() and p.isdigit() and len(p) <= 20 and int(p) < 2**64
                             for p in (ms, seq))


def new_lease() -> str:
    """A fresh lease token (one per taking call: the hash is keyed by entry id)."""
    return secrets.token_hex(8)


def entry_fields(raw: Any) -> dict[str, Any]:
    """Entry fields as a str-keyed dict, from a parsed dict or a flat Lua list."""
    if isinstance(raw, Mapping):
        return {as_text(k): v for k, v in raw.items()}
    it = iter(raw or ())
    return {as_text(k): v for k, v in zip(it, it, strict=False)}


def top_level(body: Any) -> dict[str, Any]:
    """The top-level fields of an envelope body that does not validate ({} when it is not
    even a JSON object)."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def header(env: TaskEnvelope) -> bytes:
    """The ``enq`` marker: what the Server reports for a ``queued`` task."""
    return orjson.dumps({"id": env.id, "funcId": env.func_id, "origin": env.origin.value,
                         "originId": env.origin_id, "queue": env.queue,
                         "triggerTime": env.trigger_time, "eta": env.eta})


def result_ttl_ms(env: TaskEnvelope) -> int:
    return (env.result_ttl or DEFAULT_RESULT_TTL_S) * 1000
