"""What the leader runs besides cron: the delayed-task promoter and the janitor (real Redis,
SQLite)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from tests.beat.conftest import fired_entries, func_row, seed
from tests.processes import wait_for

from fluxfunc_beat import janitor, promoter
from fluxfunc_beat.beat import Beat
from fluxfunc_common.envelope import Origin, TaskEnvelope
from fluxfunc_common.redisconn import RedisClients
from fluxfunc_common.settings import Settings
from fluxfunc_common.store import Entity, Store
from fluxfunc_common.streams import StreamProtocol
from fluxfunc_common.tasks import build_envelope


def envelope(settings: Settings, queue: str = "default", **kwargs: Any) -> TaskEnvelope:
    return build_envelope(func_row(), {}, origin=Origin.DIRECT, now=time.time(), settings=settings.tasks,
                          queue=queue, **kwargs)


async def test_promoter_moves_eta_delay_and_retry_backoff_when_due(
        clients: RedisClients, make_settings: Callable[..., Settings], run_beat: Callable[..., Any]) -> None:
    settings = make_settings(beat={"lease_seconds": 3})
    streams = StreamProtocol(clients.main, clients.keys)
    await streams.ensure_groups(["default"])
    due = await streams.server_time() + 1.0
    eta = envelope(settings, eta=due)  # ETA (and delay: the Server turns it into an ETA)
    other = envelope(settings, "special", eta=due)  # a queue only one call named
    assert (await streams.enqueue(eta, max_len=1000)).due_ms is not None
    assert (await streams.enqueue(other, max_len=1000)).due_ms is not None
    first = envelope(settings)  # retry backoff: a failed attempt goes back delayed
    await streams.enqueue(first, max_len=1000)
    [delivery] = await streams.read("w1", ["default"], 10, block_ms=0)
    retry = first.model_copy(update={"attempt": 2})
    assert await streams.retry("w1", delivery, retry, due_ms=int(due * 1000))
    running = await run_beat(settings)
    await running.leading()

    async def promoted() -> bool:
        ids = {e["id"] for q in ("default", "special")
               for e in await fired_entries(clients.main, clients.keys, q)}
        return {eta.id, other.id, first.id} <= ids

    if await streams.server_time() < due - 0.2:  # (a busy machine may start the Beat later)
        assert not await promoted()  # nothing is due yet
    await wait_for(promoted, 15, interval=0.02)  # well within a second when the machine is idle
    assert await clients.main.zcard(clients.keys.delayed("default")) == 0
    [moved] = [e for e in await fired_entries(clients.main, clients.keys, "default") if e["id"] == first.id]
    assert moved["attempt"] == 2


async def test_promoter_sleep_is_clamped() -> None:
    assert promoter.sleep_for(None, 0) == promoter.MAX_SLEEP
    assert promoter.sleep_for(10, 0) == promoter.MIN_SLEEP
    assert promoter.sleep_for(200, 0) == 0.2
    assert promoter.sleep_for(60_000, 0) == promoter.MAX_SLEEP


async def test_janitor_removes_only_dead_empty_consumers(
        clients: RedisClients, store: Store, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    streams = StreamProtocol(clients.main, clients.keys)
    keys = clients.keys
    await streams.ensure_groups(["default"])
    await streams.enqueue_many([envelope(settings) for _ in range(250)], max_len=1000)
    done = await streams.read("dead-empty", ["default"], 200, block_ms=0)  # dies after finishing
    await clients.main.xack(keys.queue("default"), streams.group, *[d.entry_id for d in done])
    holder = await streams.read("dead-holder", ["default"], 1, block_ms=0)  # dies holding an entry
    await clients.main.xgroup_createconsumer(keys.queue("default"), streams.group, "alive")
    await clients.main.set(keys.svc("worker", "alive"), "{}", px=60_000)  # live heartbeat

    async def dead_ones_quiet() -> bool:  # idle for the janitor's 10 ms (Redis 7.2+: `inactive`)
        consumers = await clients.main.xinfo_consumers(keys.queue("default"), streams.group)
        return all(int(c.get("inactive", c.get("idle", -1))) >= 10 for c in consumers
                   if c["name"] in (b"dead-empty", b"dead-holder"))

    await wait_for(dead_ones_quiet, 10, interval=0.01)
    report = await janitor.sweep(clients.main, keys, streams, store, settings, queues=["default"],
                                 now=time.time(), consumer_idle_ms=10)
    assert report.consumers_removed == ["default/dead-empty"]
    assert report.consumers_busy == ["default/dead-holder"]  # its entry would become a ghost
    consumers = await clients.main.xinfo_consumers(keys.queue("default"), streams.group)
    names = {c["name"].decode() for c in consumers}
    assert names == {"dead-holder", "alive"}
    pending = await clients.main.xpending(keys.queue("default"), streams.group)
    assert pending["pending"] == 1 and holder[0].entry_id == pending["min"].decode()
    # the safety-net trim removed acked entries (delivered, no longer pending) only: whole
    # stream nodes of them (MINID ~), never the pending or the undelivered ones
    assert 100 <= report.trimmed <= 200
    assert await clients.main.xlen(keys.queue("default")) == 250 - report.trimmed
    assert len(await clients.main.xrange(keys.queue("default"), holder[0].entry_id)) == 50


async def test_janitor_retention(clients: RedisClients, store: Store,
                                 make_settings: Callable[..., Settings]) -> None:
    settings = make_settings(tasks={"record_retention_days": 1, "record_limit": 3})
    streams = StreamProtocol(clients.main, clients.keys)
    now = time.time()

    def record(i: int, origin_id: str, age_days: float) -> dict[str, Any]:
        return {"id": f"task-{origin_id}-{i:03d}", "funcId": "f", "origin": "cronJob", "originId": origin_id,
                "status": "success", "queue": "cron", "triggerTime": now - age_days * 86_400 + i}

    await store.insert_task_records([record(i, "cron-old", 2) for i in range(2)])  # past retention
    await store.insert_task_records([record(i, "cron-many", 0) for i in range(6)])  # over the count
    await store.insert_task_records([record(i, "cron-own", 0) for i in range(6)])  # its own limit 5
    now_ms = int(now * 1000)
    old_ms, month_ms = now_ms - 2 * 86_400_000, now_ms - 20 * 86_400_000
    await store.claim_cron_fires([("cron-sec", old_ms + i * 1000, f"t{i}") for i in range(3)])
    await store.claim_cron_fires([("cron-sec", now_ms, "t-new"), ("cron-monthly", month_ms, "m")])
    await clients.main.xadd(clients.keys.dead(), {"reason": "old"}, id=f"{now_ms - 15 * 86_400_000}-0")
    await clients.main.hset(clients.keys.beat_last(), mapping={"cron-sec": now_ms, "cron-deleted": now_ms})
    report = await janitor.sweep(clients.main, clients.keys, streams, store, settings, queues=[], now=now,
                                 record_limits={"cron-own": 5}, cron_ids={"cron-sec", "cron-monthly"})
    assert report.records_pruned == 2 + 3 + 1
    assert report.claims_pruned == 3  # the monthly job keeps its only (old) claim
    assert await store.claim_cron_fires([("cron-monthly", month_ms, "x")]) == [False]
    assert report.last_forgotten == 1
    assert await clients.main.hkeys(clients.keys.beat_last()) == [b"cron-sec"]
    assert report.dead_trimmed >= 0 and await clients.main.xlen(clients.keys.dead()) <= 1


async def test_janitor_purges_expired_store_rows(clients: RedisClients, store: Store,
                                                make_settings: Callable[..., Settings]) -> None:
    """DFF.STORE rows past their expiry are deleted (reads already hide them); live ones stay."""
    await store.kv_set("script", "expired", 1, expires=-1)
    await store.kv_set("script", "live", 2, expires=3600)
    await store.kv_set("script", "forever", 3)
    report = await janitor.sweep(clients.main, clients.keys, StreamProtocol(clients.main, clients.keys),
                                 store, make_settings(), queues=[], now=time.time())
    assert report.store_purged == 1
    assert await store.kv_items("script") == {"live": 2, "forever": 3}


async def test_janitor_clears_cron_overrides_a_day_past_their_expiry(
        clients: RedisClients, store: Store, make_settings: Callable[..., Settings]) -> None:
    now = time.time()
    old = await store.create(Entity.CRON_JOB, {"id": "cron-old-pause", "funcId": "f", "cronExpr": "* * * * *",
                                              "pauseExpireTime": now - 2 * 86_400})
    recent = {"id": "cron-recent-pause", "funcId": "f", "cronExpr": "* * * * *", "pauseExpireTime": now - 60}
    await store.create(Entity.CRON_JOB, recent)
    report = await janitor.sweep(clients.main, clients.keys, StreamProtocol(clients.main, clients.keys),
                                 store, make_settings(), queues=[], now=now)
    assert report.overrides_cleared == 1
    cleared = await store.get(Entity.CRON_JOB, "cron-old-pause")
    assert "pauseExpireTime" not in cleared and cleared["updateTime"] == old["updateTime"]
    assert (await store.get(Entity.CRON_JOB, "cron-recent-pause"))["pauseExpireTime"] == now - 60


async def test_the_leader_runs_the_janitor_with_its_jobs(
        clients: RedisClients, store: Store, make_settings: Callable[..., Settings]) -> None:


    beat = Beat(make_settings(), clients, store)
    await seed(store, 2, taskRecordLimit=1)
    await beat.sync_time()
    await beat.catalog.load_all()
    await beat.discover_queues()
    await clients.main.hset(clients.keys.beat_last(), mapping={"cron-t0000": 1, "cron-gone": 1})
    await store.insert_task_records([
        {"id": f"task-{i}", "funcId": "f", "origin": "cronJob", "originId": "cron-t0000",
         "status": "success", "queue": "cron", "triggerTime": time.time() - i} for i in range(3)])
    report = await beat.run_janitor()
    assert report.records_pruned == 2  # the job's own taskRecordLimit
    assert report.last_forgotten == 1
    assert await clients.main.hkeys(clients.keys.beat_last()) == [b"cron-t0000"]
