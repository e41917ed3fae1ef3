"""Deployment-wide counts of subscription messages for ``GET /metrics``: per connector, the
messages that became tasks (``enqueued``) and those dropped because their func does not exist
(``dropped``).

The Beat leader's pumps add to one Redis hash after each batch they enqueued
(``keys.subscription_counts()``), so the figures survive a leader change and are the same
whichever Server replica is scraped. The Server forgets the fields of connectors that no longer
exist, so the hash stays as small as the set of connectors (docs/operations.md).
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum

import redis.asyncio as aioredis

from fluxfunc_common.keys import Keys
from fluxfunc_common.taskstats import SEP
from fluxfunc_common.text import as_text

Counts = dict[tuple[str, str], int]  # (connector id, outcome) → messages


class Outcome(StrEnum):
    ENQUEUED = "enqueued"
    DROPPED = "dropped"


async def add(redis: aioredis.Redis, keys: Keys, connector_id: str, outcome: Outcome, n: int) -> None:
    """Count ``n`` messages of a connector's subscriptions."""
    if n:
        await redis.hincrby(keys.subscription_counts(), f"{connector_id}{SEP}{outcome.value}", n)


async def read(redis: aioredis.Redis, keys: Keys) -> Counts:
    """The whole hash (one HGETALL)."""
    counts: Counts = {}
    for name, value in (await redis.hgetall(keys.subscription_counts())).items():
        connector_id, _, outcome = as_text(name).rpartition(SEP)
        counts[(connector_id, outcome)] = int(value)
    return counts


async def forget(redis: aioredis.Redis, keys: Keys, counts: Counts,
                 keep: Callable[[str], bool]) -> Counts:
    """``counts`` without the connectors ``keep`` refuses (deleted ones), whose fields are
    also removed from the hash."""
    drop = [k for k in counts if not keep(k[0])]
    if drop:
        await redis.hdel(keys.subscription_counts(), *(SEP.join(k) for k in drop))
    return {k: n for k, n in counts.items() if keep(k[0])}
