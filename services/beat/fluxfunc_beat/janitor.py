"""The janitor: periodic clean-up run by the Beat leader.

Each round, for every known queue:

- **dead consumers**: consumers idle for over an hour whose worker has no live heartbeat
  (``svc:worker:{consumer}``: a worker's consumer name is its instance id) are removed with
  ``delete_consumer_if_empty``, which checks for pending entries and deletes in one script, so
  a pending entry is never orphaned; a consumer that still holds entries waits until
  ``XAUTOCLAIM`` has emptied it;
- the **safety-net trim** ``safe_trim`` (only entries delivered and no longer pending).

Then: the dead-letter stream is trimmed by age (14 days); **task records** are pruned
(``tasks.record_retention_days`` and ``tasks.record_limit`` per origin, with each cron job's
own ``taskRecordLimit``); the store's **fire claims** older than an hour are pruned (each
job's newest claim stays, however old); ``beat:last`` forgets jobs that no longer exist; expired
files posted to functions (``.uploads/``) and unfetched ``DFF.RESP_LARGE_DATA`` data
(``.downloads/``) are deleted from the resource directory; expired ``DFF.STORE`` rows are
purged (reads already hide them); **audit entries** older than
``accounts.audit_retention_days`` are deleted, at most ``AUDIT_BATCHES`` batches per round
(a backlog shrinks over the next rounds without one long delete); a script's **cron
overrides** (``dynamicCronExpr``, ``pauseExpireTime``) a day past their expiry are removed from
their jobs, at most ``OVERRIDE_BATCH`` jobs in one statement a round, without touching
``updateTime`` (the Beat would reschedule the job; an expired override already counts as absent,
so its fires are the same). Results,
idempotency keys, dedup guards and markers expire by TTL in Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from fluxfunc_common import resources
from fluxfunc_common.keys import Keys
from fluxfunc_common.logs import get_logger
from fluxfunc_common.settings import Settings
from fluxfunc_common.store import AccountStore, CronFireStore, KvStore, TaskRecordStore
from fluxfunc_common.streams import StreamProtocol
from fluxfunc_common.text import as_text

INTERVAL = 180.0
CONSUMER_IDLE_MS = 3600 * 1000
DEAD_LETTER_DAYS = 14
# Another deployment only ever tries a fire while it is late (≤ lease + 10 s) or when it is the
# job's newest claim (kept, however old): an hour is ample, and bounds the table under
# 10,000 fires/s to ~36M rows.
CLAIM_RETENTION_MS = 3_600_000
AUDIT_BATCHES = 10  # audit deletes per round, each of at most store/accounts.PRUNE_BATCH rows
OVERRIDE_BATCH = 1000  # cron jobs cleared of expired overrides per round
# An override is removed only this long after it expired: a Beat catching a job up after an
# outage (``fireOnce``) still sees the override that governed the fires it looks back on.
OVERRIDE_GRACE_SECONDS = 86400.0

log = get_logger("beat.janitor")


class JanitorStore(TaskRecordStore, CronFireStore, KvStore, AccountStore, Protocol):
    """What the janitor prunes: task records, fire claims (and cron jobs' expired overrides),
    expired ``DFF.STORE`` rows, the audit log."""


@dataclass
class JanitorReport:
    consumers_removed: list[str] = field(default_factory=list)
    consumers_busy: list[str] = field(default_factory=list)  # dead but still holding entries
    trimmed: int = 0
    dead_trimmed: int = 0
    records_pruned: int = 0
    claims_pruned: int = 0
    last_forgotten: int = 0
    temp_files_removed: int = 0
    store_purged: int = 0
    audit_pruned: int = 0
    overrides_cleared: int = 0


async def stream_queues(redis: aioredis.Redis, keys: Keys) -> set[str]:
    """Queue names of every task stream present in this namespace."""
    found = set()
    async for key in redis.scan_iter(match=keys.queue_pattern(), count=1000, _type="stream"):
        found.add(keys.queue_name(as_text(key)))
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
        info = {as_text(k): v for k, v in c.items()}
        quiet = info.get("inactive", info.get("idle", 0))  # `inactive` is Redis 7.2+
        if quiet is not None and int(quiet) >= idle_ms:
            idle.append(as_text(info["name"]))
    if not idle:
        return []
    alive = await redis.mget([keys.svc("worker", name) for name in idle])
    return [name for name, beat in zip(idle, alive, strict=True) if beat is None]


async def forget_last_fires(redis: aioredis.Redis, keys: Keys, cron_ids: set[str]) -> int:
    """HDEL ``beat:last`` entries of jobs not in ``cron_ids`` (deleted jobs)."""
    gone: list[str] = []
    async for field_name, _ in redis.hscan_iter(keys.beat_last(), count=1000):
        name = as_text(field_name)
        if name not in cron_ids:
            gone.append(name)
    for i in range(0, len(gone), 1000):
        await redis.hdel(keys.beat_last(), *gone[i:i + 1000])
    return len(gone)


async def prune_audit(store: AccountStore, settings: Settings, now: float) -> int:
    """Delete audit entries past ``accounts.audit_retention_days``, a bounded amount per call."""
    older_than = now - settings.accounts.audit_retention_days * 86400
    pruned = 0
    for _ in range(AUDIT_BATCHES):
        gone = await store.prune_audit(older_than)
        pruned += gone
        if not gone:
            break
    return pruned


async def sweep(
    redis: aioredis.Redis,
    keys: Keys,
    streams: StreamProtocol,
    store: JanitorStore,
    settings: Settings,
    *,
    queues: Iterable[str],
    now: float,
    record_limits: dict[str, int] | None = None,
    cron_ids: set[str] | None = None,
    consumer_idle_ms: int = CONSUMER_IDLE_MS,
) -> JanitorReport:
    """One janitor round (``now`` = Redis time, epoch s). ``cron_ids`` = every job the leader
    knows (None: leave ``beat:last`` alone)."""
    report = JanitorReport()
    for queue in sorted(set(queues) | await stream_queues(redis, keys)):
        for name in await dead_consumers(redis, keys, queue, group=streams.group, idle_ms=consumer_idle_ms):
            removed = await streams.delete_consumer_if_empty(queue, name)
            (report.consumers_removed if removed else report.consumers_busy).append(f"{queue}/{name}")
        with contextlib.suppress(ResponseError):  # no stream/group yet
            report.trimmed += await streams.safe_trim(queue)
    min_id = f"{int((now - DEAD_LETTER_DAYS * 86400) * 1000)}-0"
    report.dead_trimmed = int(await redis.xtrim(keys.dead(), minid=min_id, approximate=True))
    report.records_pruned = await store.prune_task_records(
        older_than=now - settings.tasks.record_retention_days * 86400,
        keep_per_origin=settings.tasks.record_limit,
        limits=record_limits or None,
    )
    report.claims_pruned = await store.prune_cron_fires(int(now * 1000) - CLAIM_RETENTION_MS,
                                                        keep_latest=True)
    if cron_ids is not None:
        report.last_forgotten = await forget_last_fires(redis, keys, cron_ids)
    report.temp_files_removed = await asyncio.to_thread(
        resources.sweep_expired, settings.resources.path, now)
    report.store_purged = await store.purge_expired_kv()
    report.audit_pruned = await prune_audit(store, settings, now)
    report.overrides_cleared = await store.clear_expired_cron_overrides(
        now - OVERRIDE_GRACE_SECONDS, limit=OVERRIDE_BATCH)
    log.info("janitor round", consumers_removed=len(report.consumers_removed),
             consumers_busy=len(report.consumers_busy), trimmed=report.trimmed,
             dead_trimmed=report.dead_trimmed, records_pruned=report.records_pruned,
             claims_pruned=report.claims_pruned, last_forgotten=report.last_forgotten,
             temp_files_removed=report.temp_files_removed, store_purged=report.store_purged,
             audit_pruned=report.audit_pruned, overrides_cleared=report.overrides_cleared)
    return report
