"""Per-entry throttling: fixed windows counted in Redis, all rules in one pipelined round trip.

``throttling`` = ``{"bySecond": n, "byMinute": n, "byHour": n, "byDay": n}`` (DataFlux Func's
``byMonth`` = 30 days and ``byYear`` = 365 days are accepted too). Each rule counts calls in
the current window (``INCR`` + ``EXPIRE``); a call over any limit → 429 EClientRateLimit with
``{rule, limit, currentCount, waitSeconds}``. Windows are aligned to the epoch, as in
DataFlux Func, so a burst may straddle a window edge.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import redis.asyncio as aioredis

from fluxfunc_common.errors import RateLimited
from fluxfunc_common.keys import Keys

WINDOWS: dict[str, int] = {
    "bySecond": 1,
    "byMinute": 60,
    "byHour": 3600,
    "byDay": 86_400,
    "byMonth": 30 * 86_400,
    "byYear": 365 * 86_400,
}


def rules_of(throttling: Mapping[str, Any] | None) -> list[tuple[str, int, int]]:
    """(rule, window seconds, limit) of each positive limit."""
    out = []
    for rule, limit in (throttling or {}).items():
        window = WINDOWS.get(rule)
        if window and isinstance(limit, int) and not isinstance(limit, bool) and limit > 0:
            out.append((rule, window, limit))
    return out


async def check(redis: aioredis.Redis, keys: Keys, entry_id: str,
                throttling: Mapping[str, Any] | None, now: float) -> None:
    """Count this call in every window; raise :class:`RateLimited` when one is over."""
    rules = rules_of(throttling)
    if not rules:
        return
    pipe = redis.pipeline(transaction=False)
    for rule, window, _ in rules:
        key = keys.throttle(entry_id, rule, int(now // window))
        pipe.incr(key)
        pipe.expire(key, window + 1)
    replies = await pipe.execute()
    for i, (rule, window, limit) in enumerate(rules):
        count = int(replies[2 * i])
        if count > limit:
            wait = math.ceil((int(now // window) + 1) * window - now)
            err = RateLimited(
                f"Throttled: more than {limit} calls per {rule[2:].lower()}",
                {"rule": rule, "limit": limit, "currentCount": count, "waitSeconds": wait},
            )
            err.headers = {"Retry-After": str(wait)}  # type: ignore[attr-defined]
            raise err
