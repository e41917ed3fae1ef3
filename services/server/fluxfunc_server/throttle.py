"""Per-entry throttling, counted in Redis: every rule of a call in one pipelined round trip.

``throttling`` = ``{"bySecond": n, "byMinute": n, "byHour": n, "byDay": n}`` (DataFlux Func's
``byMonth`` = 30 days and ``byYear`` = 365 days are accepted too), plus ``"window"``:

- ``"sliding"`` (default): a sliding-window counter. The count of the current fixed window
  plus the previous window's count weighted by how much of it still overlaps the last
  ``window`` seconds; no burst of twice the limit across a window edge.
- ``"fixed"``: DataFlux Func's windows aligned to the epoch (a burst may straddle an edge).

A call over any limit → 429 EClientRateLimit with ``{rule, limit, currentCount,
waitSeconds}`` and a ``Retry-After`` header. Unlike DataFlux Func, a refused call is not
counted (its increments are taken back), so a client hammering a throttled entry does not
keep itself locked out.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

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
MODES = ("sliding", "fixed")


@dataclass(frozen=True, slots=True)
class Rule:
    name: str
    window: int
    limit: int


class ThrottleDetail(TypedDict):
    rule: str
    limit: int
    currentCount: int
    waitSeconds: int


class Throttled(RateLimited):
    """Too many calls: throttled."""

    def __init__(self, message: str, detail: ThrottleDetail) -> None:
        super().__init__(message, dict(detail))
        self.headers = {"Retry-After": str(detail["waitSeconds"])}


def rules_of(throttling: Mapping[str, Any] | None) -> list[Rule]:
    """The rules with a positive integer limit."""
    out = []
    for name, limit in (throttling or {}).items():
        window = WINDOWS.get(name)
        if window and isinstance(limit, int) and not isinstance(limit, bool) and limit > 0:
            out.append(Rule(name, window, limit))
    return out


def _wait_fixed(rule: Rule, now: float) -> float:
    return (int(now // rule.window) + 1) * rule.window - now


def _wait_sliding(rule: Rule, now: float, current: int, previous: int) -> float:
    """Seconds until one more call fits (``current`` without the refused call)."""
    start = int(now // rule.window) * rule.window
    room = rule.limit - current - 1  # what the previous window's weighted share may still use
    if room >= 0 and previous > 0:
        return max(start + rule.window * (1 - room / previous) - now, 0.0)
    # the current window alone is full: wait into the next one until its weight fades enough
    fade = 0.0 if current <= 0 else rule.window * max(0.0, 1 - (rule.limit - 1) / current)
    return start + rule.window + fade - now


async def check(redis: aioredis.Redis, keys: Keys, entry_id: str,
                throttling: Mapping[str, Any] | None, now: float) -> None:
    """Count this call in every rule; raise :class:`Throttled` when one is over its limit."""
    rules = rules_of(throttling)
    if not rules:
        return
    sliding = (throttling or {}).get("window", "sliding") != "fixed"
    pipe = redis.pipeline(transaction=False)
    current_keys = []
    for rule in rules:
        bucket = int(now // rule.window)
        key = keys.throttle(entry_id, rule.name, bucket)
        current_keys.append(key)
        pipe.incr(key)
        pipe.expire(key, 2 * rule.window + 1)
        if sliding:
            pipe.get(keys.throttle(entry_id, rule.name, bucket - 1))
    replies = await pipe.execute()
    step = 3 if sliding else 2
    for i, rule in enumerate(rules):
        count = int(replies[i * step])
        previous = int(replies[i * step + 2] or 0) if sliding else 0
        weight = 1 - (now - int(now // rule.window) * rule.window) / rule.window
        estimate = count + previous * weight
        if estimate <= rule.limit:
            continue
        undo = redis.pipeline(transaction=False)
        for key in current_keys:
            undo.decr(key)
        await undo.execute()
        wait = _wait_sliding(rule, now, count - 1, previous) if sliding else _wait_fixed(rule, now)
        raise Throttled(
            f"Throttled: more than {rule.limit} calls per {rule.name[2:].lower()}",
            {"rule": rule.name, "limit": rule.limit, "currentCount": math.ceil(estimate - 1),
             "waitSeconds": max(1, math.ceil(wait))},
        )
