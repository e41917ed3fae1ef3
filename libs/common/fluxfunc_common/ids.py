"""Identifiers: time-ordered task ids (ULID text) and prefixed entity ids."""

from __future__ import annotations

import os
import secrets
import time

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def ulid(now_ms: int | None = None) -> str:
    """A 26-character ULID: 48-bit millisecond time then 80 random bits, sortable as text."""
    ms = int(time.time() * 1000) if now_ms is None else now_ms
    value = (ms << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))


def task_id(now_ms: int | None = None) -> str:
    """A new task id: ``task-<ULID>``; ids made later sort later."""
    return "task-" + ulid(now_ms)


def entity_id(prefix: str) -> str:
    """A new id for a sync API (``sapi``), async API (``aapi``), cron job (``cron``), …"""
    return f"{prefix}-{secrets.token_hex(8)}"


def instance_id() -> str:
    """A process-incarnation name ``{host}-{pid}-{random}``; a restart never reuses it."""
    host = os.uname().nodename.split(".")[0] or "host"
    return f"{host}-{os.getpid()}-{secrets.token_hex(3)}"
