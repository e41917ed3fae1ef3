"""The delayed-task promoter: moves due ETA/delay/retry tasks onto their streams.

Run by the Beat leader only. ``StreamProtocol.promote`` is one atomic Lua mover using Redis
``TIME``, so a second runner would be harmless, just wasteful. The loop sleeps until the
earliest due task, clamped to [50 ms, 500 ms]. The queues
it looks at: the configured ones, those named by funcs and cron jobs, and every queue with a
stream or a delayed set (found by SCAN once a minute).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable

import redis.asyncio as aioredis

from fluxfunc_common.keys import Keys
from fluxfunc_common.lifecycle import sleep_or_stop
from fluxfunc_common.logs import get_logger
from fluxfunc_common.streams import StreamProtocol
from fluxfunc_common.text import as_text

MIN_SLEEP = 0.05
MAX_SLEEP = 0.5
BATCH = 500

log = get_logger("beat.promoter")


async def delayed_queues(redis: aioredis.Redis, keys: Keys) -> set[str]:
    """Queues that have a delayed set (SCAN; the Beat runs it once a minute)."""
    prefix = keys.delayed("")
    found = set()
    async for key in redis.scan_iter(match=keys.delayed("*"), count=1000, _type="zset"):
        found.add(as_text(key)[len(prefix):])
    return found


def sleep_for(next_due_ms: int | None, now_ms: int) -> float:
    """Seconds until the next round: clamp(next due − now, 50 ms, 500 ms)."""
    if next_due_ms is None:
        return MAX_SLEEP
    return min(max((next_due_ms - now_ms) / 1000, MIN_SLEEP), MAX_SLEEP)


async def promote_once(streams: StreamProtocol, queues: Iterable[str]) -> tuple[int, int | None]:
    """One round over every queue: (tasks moved, earliest next due ms)."""
    moved, earliest = 0, None
    for queue in queues:
        while True:
            n, nxt = await streams.promote(queue, batch=BATCH)
            moved += n
            if n < BATCH:
                break
        if nxt is not None and (earliest is None or nxt < earliest):
            earliest = nxt
    return moved, earliest


async def run_promoter(
    streams: StreamProtocol,
    queues: Callable[[], Iterable[str]],
    now_ms: Callable[[], int],
    stop: asyncio.Event,
) -> None:
    """Promote until ``stop`` is set; a failed round is logged and retried."""
    while not stop.is_set():
        try:
            moved, earliest = await promote_once(streams, list(queues()))
            if moved:
                log.debug("promoted delayed tasks", moved=moved)
            delay = sleep_for(earliest, now_ms())
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.warning("promote round failed", error=str(exc))
            delay = MAX_SLEEP
        await sleep_or_stop(stop, delay)
