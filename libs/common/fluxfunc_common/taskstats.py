"""Deployment-wide task statistics for ``GET /metrics``: how many tasks of each func ended in
each status, a histogram of their run times, and how many tasks of each origin (``syncAPI``,
``cronJob``, ``subscription``, … — the bounded set of :class:`~fluxfunc_common.envelope.Origin`)
ended in each status.

Workers add to three Redis hashes inside the same scripts that complete or dead-letter a task
(``complete.lua``, ``dead.lua``), so the figures are exact, cost no extra round trip, and
are the same whichever Server replica is scraped. This module owns the bucket bounds and the
field layout of those hashes.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass, field

import redis.asyncio as aioredis

from fluxfunc_common.keys import Keys
from fluxfunc_common.text import as_text

SEP = "\x1f"
# upper bounds (seconds) of the run-time buckets; the last one is +Inf
BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                              60.0, 300.0, 1800.0, 3600.0, math.inf)


LABELS: tuple[str, ...] = tuple("+Inf" if math.isinf(b) else repr(b) for b in BUCKETS)
_LAST = len(BUCKETS) - 1


def bucket_label(seconds: float) -> str:
    """The hash field suffix of the bucket ``seconds`` falls in (``le`` of Prometheus)."""
    return LABELS[min(bisect_left(BUCKETS, seconds), _LAST)]


@dataclass
class FuncDurations:
    """One func's run-time histogram: per-bucket counts (not cumulative) and their sum."""

    buckets: dict[str, int] = field(default_factory=dict)
    total: float = 0.0

    def cumulative(self) -> list[tuple[str, float]]:
        """``(le, count)`` pairs, cumulative, every bound present, +Inf last."""
        out, running = [], 0
        for label in LABELS:
            running += self.buckets.get(label, 0)
            out.append((label, float(running)))
        return out


@dataclass
class TaskStats:
    counts: dict[tuple[str, str], int] = field(default_factory=dict)  # (func, status) → n
    durations: dict[str, FuncDurations] = field(default_factory=dict)  # func → histogram
    origins: dict[tuple[str, str], int] = field(default_factory=dict)  # (origin, status) → n


async def forget_funcs(redis: aioredis.Redis, keys: Keys, stats: TaskStats,
                       keep: Callable[[str], bool]) -> TaskStats:
    """``stats`` without the funcs ``keep`` refuses (deleted ones), whose fields are also
    removed from both hashes so they stay as small as the set of funcs."""
    drop = {func for func, _ in stats.counts} | set(stats.durations)
    drop = {func for func in drop if not keep(func)}
    if not drop:
        return stats
    counts = [SEP.join(k) for k in stats.counts if k[0] in drop]
    durations = [f"{func}{SEP}{part}" for func in drop for part in (*LABELS, "sum")]
    async with redis.pipeline(transaction=False) as pipe:
        if counts:
            pipe.hdel(keys.task_counts(), *counts)
        pipe.hdel(keys.task_durations(), *durations)
        await pipe.execute()
    return TaskStats({k: n for k, n in stats.counts.items() if k[0] not in drop},
                     {f: h for f, h in stats.durations.items() if f not in drop}, stats.origins)


async def read_task_stats(redis: aioredis.Redis, keys: Keys) -> TaskStats:
    """The three hashes in one round trip."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.hgetall(keys.task_counts())
        pipe.hgetall(keys.task_durations())
        pipe.hgetall(keys.task_origin_counts())
        counts_raw, durations_raw, origins_raw = await pipe.execute()
    stats = TaskStats()
    for name, value in counts_raw.items():
        func, _, status = as_text(name).rpartition(SEP)
        stats.counts[(func, status)] = int(value)
    for name, value in origins_raw.items():
        origin, _, status = as_text(name).rpartition(SEP)
        stats.origins[(origin, status)] = int(value)
    for name, value in durations_raw.items():
        func, _, part = as_text(name).rpartition(SEP)
        hist = stats.durations.setdefault(func, FuncDurations())
        if part == "sum":
            hist.total = float(value)
        else:
            hist.buckets[part] = int(value)
    return stats
