"""Partitions of the cron jobs leased per Beat (real Redis), and the job table under overload
(pure logic, fixed times)."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

import redis.asyncio as aioredis
from tests.beat.conftest import cron_row, func_row
from tests.beat.test_jobs import FUNC, T0, job
from tests.processes import wait_for

from fluxfunc_beat.jobs import JobTable
from fluxfunc_beat.partitions import PartitionLeases, partition_of
from fluxfunc_common.cron import CronFirer, FireRequest, FireStatus
from fluxfunc_common.keys import Keys
from fluxfunc_common.models import CronJob, Func
from fluxfunc_common.redisconn import RedisClients
from fluxfunc_common.settings import Settings
from fluxfunc_common.store import Store
from fluxfunc_common.streams import StreamProtocol


def leases(redis: aioredis.Redis, keys: Keys, token: str, lease: float = 1.0, n: int = 16) -> PartitionLeases:
    return PartitionLeases(redis, keys, partitions=n, lease_seconds=lease, token=token)


async def test_a_job_has_one_partition_everywhere() -> None:
    counts = Counter(partition_of(f"cron-{i}", 16) for i in range(16_000))
    assert partition_of("cron-42", 16) == partition_of("cron-42", 16)
    assert set(counts) == set(range(16)) and min(counts.values()) > 800  # spread, not lumped


async def test_two_beats_share_the_partitions_evenly(redis_client: aioredis.Redis, keys: Keys) -> None:
    a, b = leases(redis_client, keys, "a"), leases(redis_client, keys, "b")
    assert len((await a.step()).gained) == 16  # alone: every partition
    assert not (await b.step()).gained and b.members == 2  # all held; b is counted
    assert len((await a.step()).lost) == 8  # a sheds what is over its share ...
    assert len((await b.step()).gained) == 8  # ... and b takes it
    assert a.held.isdisjoint(b.held) and len(a.held | b.held) == 16
    assert set(a.epochs()) == a.held and set(b.epochs()) == b.held
    await b.release_all()  # a graceful stop: a takes them back at once
    assert len((await a.step()).gained) == 8 and len(a.held) == 16
    await a.release_all()


async def test_a_dead_beats_partitions_are_taken_over_after_its_lease(
        redis_client: aioredis.Redis, keys: Keys) -> None:
    a, b = leases(redis_client, keys, "a"), leases(redis_client, keys, "b")
    await a.step()
    await b.step()
    await a.step()
    await b.step()
    dead = set(b.held)  # b stops here, as if SIGKILLed: no release, no more renewals
    assert len(dead) == 8

    async def took_over() -> bool:
        await a.step()
        await asyncio.sleep(a.next_round())
        return len(a.held) == 16

    await wait_for(took_over, 30, interval=0)
    assert a.members == 1
    # b's partitions have a new epoch: whatever b still sends is fenced
    assert all(a.epochs()[p] > (b.leases[p].epoch or 0) for p in dead)
    await a.release_all()


async def test_a_membership_lapses_rounds_before_the_partition_leases(
        redis_client: aioredis.Redis, keys: Keys) -> None:
    """A dead Beat is counted out rounds before its partitions lapse (so the others' share has
    grown by then), and a partition lapses a round within the lease of the Beat's last round."""
    a = leases(redis_client, keys, "a", lease=6)
    await a.step()
    async with redis_client.pipeline(transaction=False) as pipe:
        pipe.time()
        pipe.zscore(keys.beat_members(), "a")
        for p in sorted(a.held):
            pipe.pttl(keys.beat_partition(p))
        (sec, usec), member_expiry, *ttls = await pipe.execute()
    member_left = member_expiry - (sec * 1000 + usec // 1000)
    round_ms = a.round * 1000
    assert len(ttls) == 16 and member_left + 2 * round_ms < min(ttls)
    assert max(ttls) <= 6000 - round_ms
    await a.release_all()


async def test_a_beat_short_of_its_share_takes_a_partition_the_moment_it_lapses(
        redis_client: aioredis.Redis, keys: Keys) -> None:
    """A Beat short of its share does not wait for its fixed round: its next round is due when
    the first partition it lacks lapses, and that round takes it (not a moment before)."""
    a, b = leases(redis_client, keys, "a", lease=30), leases(redis_client, keys, "b", lease=30)
    for beat in (a, b, a, b):
        await beat.step()
    dead = set(b.held)  # b dies: its membership has lapsed, its leases lapse in 450 ms
    await redis_client.zrem(keys.beat_members(), "b")
    sec, usec = await redis_client.time()
    for p in dead:
        await redis_client.pexpireat(keys.beat_partition(p), sec * 1000 + usec // 1000 + 450)
    await a.step()
    assert a.share == 16 and a.held.isdisjoint(dead)  # nothing taken before its lease lapsed
    rounds = 0
    while len(a.held) < 16:
        assert a.next_round() < a.round  # due at the lapse, not at the fixed round
        await asyncio.sleep(a.next_round())
        assert (await a.step()).gained == dead
        rounds += 1
    assert rounds == 1 and all(a.epochs()[p] > (b.leases[p].epoch or 0) for p in dead)
    await a.release_all()


async def test_a_fire_of_a_partition_taken_over_is_fenced(
        clients: RedisClients, store: Store, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    redis, keys = clients.main, clients.keys
    firer = CronFirer(redis, keys, StreamProtocol(redis, keys), store, settings)
    a = leases(redis, keys, "a", lease=30)
    await a.step()
    jobs = [CronJob.from_row(cron_row(f"cron-{i}")) for i in range(40)]
    func = Func.from_row(func_row())
    stale = dict(a.epochs())
    taken = partition_of("cron-0", 16)
    await redis.incr(keys.beat_partition_epoch(taken))  # another Beat took that partition over
    requests = sorted((FireRequest(j, func, T0, partition=partition_of(j.id, 16)) for j in jobs),
                      key=lambda r: r.partition)
    outcomes = await firer.fire_many(requests, epoch=stale)
    by_status = {(r.partition == taken, o.status) for r, o in zip(requests, outcomes, strict=True)}
    assert by_status == {(True, FireStatus.FENCED), (False, FireStatus.FIRED)}
    assert await redis.xlen(keys.queue("cron")) == sum(r.partition != taken for r in requests)
    del stale[taken]  # a partition missing from the epochs is not even sent
    again = await firer.fire_many([r for r in requests if r.partition == taken][:1], epoch=stale)
    assert again[0].status is FireStatus.FENCED
    await a.release_all()


def test_pop_due_takes_bounded_batches_oldest_first() -> None:
    table = JobTable(late_ms=25_000)
    for i in range(1000):
        table.upsert(job(f"j{i:04d}"), FUNC, last_ms=None, now_ms=T0 + 10)
    seen: list[tuple[str, int]] = []
    while batch := table.pop_due(T0 + 1000, limit=300):
        assert len(batch) <= 300
        seen += [(d.job.id, d.fire_ms) for d in batch]
    assert sorted(seen) == [(f"j{i:04d}", T0 + 1000) for i in range(1000)]  # each once
    assert table.next_due_ms() == T0 + 2000


def test_a_beat_behind_schedule_applies_each_jobs_misfire_policy() -> None:
    """Popped 7.5 s after its due time with a 1 s lag bound: an every-second job fires its last
    second only; an every-5-s job has no fire within the bound: ``fireOnce`` fires the newest
    missed one, ``skip`` none. Just-loaded jobs (a takeover) catch up over the late window."""
    table = JobTable(late_ms=25_000)
    table.upsert(job("sec"), FUNC, last_ms=None, now_ms=T0)
    table.upsert(job("once5", "*/5 * * * * *"), FUNC, last_ms=None, now_ms=T0)
    table.upsert(job("skip5", "*/5 * * * * *", misfirePolicy="skip"), FUNC, last_ms=None, now_ms=T0)
    assert len(table.pop_due(T0 + 5000, max_lag_ms=1000)) == 7  # loaded: catches up (5 + 1 + 1)
    assert table.shed == 0 and table.lag_ms == 0  # a catch-up is not lag
    fired = sorted((d.job.id, d.fire_ms) for d in table.pop_due(T0 + 12_500, max_lag_ms=1000))
    assert fired == [("once5", T0 + 10_000), ("sec", T0 + 12_000)]
    assert table.shed == 3 and table.lag_ms == 6500  # "sec" was due at T0 + 6 s
    late = JobTable(late_ms=25_000)  # no lag bound: every late fire, as before
    late.upsert(job("sec"), FUNC, last_ms=None, now_ms=T0)
    late.pop_due(T0 + 1000)
    assert len(late.pop_due(T0 + 8500)) == 7
