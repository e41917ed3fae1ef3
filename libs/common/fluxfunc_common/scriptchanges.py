"""Which script each publish generation changed (docs/internals.md, Notifications).

Every publish or delete of a script runs ``lua/script_changed.lua``: ``INCR scripts:version``
(the *generation*) and, in the same atomic step, ``XADD scripts:changes <gen>-0 script <id>``.
A reader that saw generation ``old`` and now sees ``new`` asks :func:`between` for the scripts
of the steps ``old+1 … new``; it gets None — "assume everything changed" — when any step has
no entry (it was trimmed away, or written by something that only bumped the counter), so a
reader can never miss a change, only over-invalidate.
"""

from __future__ import annotations

from typing import Any

import redis.asyncio as aioredis

from fluxfunc_common import luascripts
from fluxfunc_common.keys import Keys

MAXLEN = 1000  # steps kept (approximately): a reader further behind drops everything


async def announce(redis: aioredis.Redis, keys: Keys, script_id: str,
                   pipe: Any = None) -> None:
    """Queue (on ``pipe``) or run: bump the generation and log that ``script_id`` changed."""
    script = luascripts.register(redis, "script_changed")
    await script(keys=[keys.scripts_version(), keys.scripts_changes()], args=[script_id, MAXLEN],
                 client=pipe if pipe is not None else redis)


async def between(redis: aioredis.Redis, keys: Keys, old: int, new: int) -> frozenset[str] | None:
    """The scripts changed by the steps after generation ``old`` up to ``new``; None when the
    log does not hold every one of those steps."""
    if new <= old:
        return None
    entries = await redis.xrange(keys.scripts_changes(), f"{old + 1}-0", f"{new}-0") or []
    gens: list[int] = []
    scripts: set[str] = set()
    for entry_id, fields in entries:
        script = (fields or {}).get(b"script") or (fields or {}).get("script")
        if entry_id is None or script is None:
            return None
        gens.append(int(_text(entry_id).partition("-")[0]))
        scripts.add(_text(script))
    return frozenset(scripts) if gens == list(range(old + 1, new + 1)) else None


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
