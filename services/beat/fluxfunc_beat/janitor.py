"""The janitor: periodic clean-up run by the Beat leader (research/streams-protocol.md A.9–A.10).

Each round, for every known queue: remove consumers that are idle for over an hour, have no
live worker heartbeat and nothing pending (``delete_consumer_if_empty`` checks and deletes in
one script, so pending entries are never orphaned); the safety-net ``safe_trim``. Then: trim
the dead-letter stream by age (14 days) and prune task records (``tasks.record_retention_days``
and ``tasks.record_limit`` per origin, with each cron job's own ``taskRecordLimit``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from fluxfunc_common.keys import Keys
from fluxfunc_common.logs import get_logger
from fluxfunc_common.settings import Settings
from fluxfunc_common.store import Store
from fluxfunc_common.streams import StreamProtocol

INTERVAL = 180.0
CONSUMER_IDLE_MS = 3600 * 1000
DEAD_LETTER_DAYS = 14

log = get_logger("beat.janitor")


@dataclass
class JanitorReport:
    consumers_removed: list[str] = field(default_factory=list)
    trimmed: int = 0
    dead_trimmed: int = 0
    records_pruned: int = 0


def _decode(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


async def stream_queues(redis: aioredis.Redis, keys: Keys) -> set[str]:
    """Queue names of every task stream present in this namespace."""
    found = set()
    async for key in redis.scan_iter(match=keys.queue_pattern(), count=500, _type="stream"):
        found.add(keys.queue_name(_decode(key)))
    return found


async def dead_consumers(redis: aioredis.Redis, keys: Keys, queue: str, *, group: str,
                         idle_ms: int = CONSUMER_IDLE_MS) -> list[str]:
    """Consumers of a queue idle ≥ ``idle_ms`` with no live worker heartbeat."""
    try:
        consumers = await redis.xinfo_consumers(keys.queue(queue), group)
    except ResponseError:  # no stream or no group yet
        return []
    idle = []
    for c in consumers:
        info = {_decode(k): v for k, v in c.items()}
        quiet = info.get("inactive", info.get("idle", 0))
        if quiet is not None and int(quiet) >= idle_ms:
            idle.append(_decode(info["name"]))
    if not idle:
        return []
    alive = await redis.mget([keys.svc("worker", name) for name in idle])
    return [name for name, beat in zip(idle, alive, strict=True) if beat is None]


async def sweep(
    redis: aioredis.Redis,
    keys: Keys,
    streams: StreamProtocol,
    store: Store,
    settings: Settings,
    *,
    queues: Iterable[str],
    now: float,
    record_limits: dict[str, int] | None = None,
) -> JanitorReport:
    """One janitor round (``now`` = Redis time, epoch s)."""
    report = JanitorReport()
    for queue in sorted(set(queues) | await stream_queues(redis, keys)):
        for name in await dead_consumers(redis, keys, queue, group=streams.group):
            if await streams.delete_consumer_if_empty(queue, name):
                report.consumers_removed.append(f"{queue}/{name}")
        with contextlib.suppress(ResponseError):  # no stream/group yet
            report.trimmed += await streams.safe_trim(queue)
    min_id = f"{int((now - DEAD_LETTER_DAYS * 86400) * 1000)}-0"
    report.dead_trimmed = int(await redis.xtrim(keys.dead(), minid=min_id, approximate=True))
    report.records_pruned = await store.prune_task_records(
        older_than=now - settings.tasks.record_retention_days * 86400,
        keep_per_origin=settings.tasks.record_limit,
        limits=record_limits or None,
    )
    log.info("janitor round", consumers_removed=len(report.consumers_removed), trimmed=report.trimmed,
             dead_trimmed=report.dead_trimmed, records_pruned=report.records_pruned)
    return report
