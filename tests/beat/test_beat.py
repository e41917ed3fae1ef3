"""The Beat leader in process on a real Redis and SQLite: change propagation, misfires after
downtime, restarts, losing the lease, a failed batch retried. Waits are for conditions, with
deadlines for a busy machine; time-dependent rules run on a clock the test drives."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
from tests.beat.conftest import cron_row, fire_counts, fired_entries, func_row, seed
from tests.processes import wait_for

from fluxfunc_beat.beat import Beat
from fluxfunc_common.clock import FakeClock, SystemClock
from fluxfunc_common.cron import FireRequest, FireStatus
from fluxfunc_common.models import CronJob, Func
from fluxfunc_common.redisconn import RedisClients
from fluxfunc_common.settings import Settings
from fluxfunc_common.store import Entity, Store

LEASE = 3.0


@pytest.fixture
def settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(beat={"lease_seconds": LEASE})


async def announce(clients: RedisClients, cron_id: str, op: str) -> str:
    """What the Server does after a cron-job change (docs/internals.md); the entry id."""
    entry = await clients.main.xadd(clients.keys.cron_changed(), {"id": cron_id, "op": op}, maxlen=10_000,
                                    approximate=True)
    return entry.decode() if isinstance(entry, bytes) else str(entry)


def contiguous(counts: dict[tuple[str, int], int], cron_id: str) -> list[int]:
    """The fire seconds of a job, asserting each fired once and none is missing in between."""
    ms = sorted(m for (c, m), n in counts.items() if c == cron_id and n)
    assert all(counts[(cron_id, m)] == 1 for m in ms), f"{cron_id} fired twice"
    assert ms == list(range(ms[0], ms[-1] + 1000, 1000)), f"{cron_id} has a gap"
    return ms


async def test_changes_take_effect_without_polling(
        clients: RedisClients, store: Store, settings: Settings, run_beat: Callable[..., Any],
        monkeypatch: pytest.MonkeyPatch) -> None:
    await store.create(Entity.FUNC, func_row())
    running = await run_beat(settings)
    await running.leading()
    beat: Beat = running.beat
    lists: list[Any] = []
    original = store.list

    async def counted(*args: Any, **kwargs: Any) -> Any:
        lists.append(args)
        return await original(*args, **kwargs)

    monkeypatch.setattr(store, "list", counted)

    async def in_table(cron_id: str, present: bool = True) -> bool:
        return (cron_id in beat.table.jobs) is present

    # each change is applied on its announcement (well within a second on an idle machine; the
    # deadlines here are for a busy one), reading only the changed job: no polling of the table
    await store.create(Entity.CRON_JOB, cron_row("cron-new"))
    await announce(clients, "cron-new", "create")
    await wait_for(lambda: in_table("cron-new"), 10, interval=0.01)

    async def fired() -> bool:
        return any(e["originId"] == "cron-new" for e in await fired_entries(clients.main, clients.keys))

    await wait_for(fired, 10, interval=0.02)  # the next whole second after the change
    await store.update(Entity.CRON_JOB, "cron-new", {"cronExpr": "0 0 * * *"})
    await announce(clients, "cron-new", "update")

    async def rescheduled() -> bool:
        return beat.table.jobs["cron-new"].job.cron_expr == "0 0 * * *"

    await wait_for(rescheduled, 10, interval=0.01)
    await store.update(Entity.CRON_JOB, "cron-new", {"isDisabled": True})
    await announce(clients, "cron-new", "update")
    await wait_for(lambda: in_table("cron-new", False), 10, interval=0.01)
    await store.delete(Entity.CRON_JOB, "cron-new")
    deleted = await announce(clients, "cron-new", "delete")

    async def applied() -> bool:  # the catalog has applied every change announced
        return beat.catalog.changes_id == deleted

    await wait_for(applied, 10, interval=0.01)
    assert lists == []  # only the changed ids were read: no polling of the whole table


async def test_a_publish_refreshes_the_funcs_of_the_jobs(
        clients: RedisClients, store: Store, settings: Settings, run_beat: Callable[..., Any]) -> None:
    await seed(store, 1)
    running = await run_beat(settings)
    await running.leading()
    extra = {**func_row()["extraConfig"], "timeout": 99}
    await store.update(Entity.FUNC, func_row()["id"], {"extraConfig": extra})
    await clients.main.incr(clients.keys.scripts_version())  # what the Server does on publish

    async def new_timeout() -> bool:
        return any(e["timeout"] == 99 for e in await fired_entries(clients.main, clients.keys))

    await wait_for(new_timeout, 10)


async def test_a_change_costs_the_same_with_ten_thousand_jobs(
        clients: RedisClients, store: Store, settings: Settings) -> None:
    beat = Beat(settings, clients, store)
    await beat.partitions.step()  # one Beat: every partition
    await store.create(Entity.FUNC, func_row())
    func = Func.from_row(func_row())
    beat.catalog.funcs = {func.id: func}
    now = beat.now_ms()
    started = time.perf_counter()
    for i in range(10_000):
        job = CronJob.from_row(cron_row(f"cron-{i:05d}", "0 * * * *", updateTime=now / 1000))
        beat.table.upsert(job, func, last_ms=None, now_ms=now)
    whole_table = time.perf_counter() - started
    took = []
    for n in range(3):  # the best of three: a ratio to the whole table, whatever the machine's load
        await store.create(Entity.CRON_JOB, cron_row(f"cron-x{n}"))
        started = time.perf_counter()
        await beat.catalog.apply_changes([f"cron-x{n}"])
        took.append(time.perf_counter() - started)
    assert "cron-x2" in beat.table.jobs and len(beat.table) == 10_003
    assert min(took) < whole_table / 10, f"one change took {min(took):.4f}s, the table {whole_table:.3f}s"


async def test_misfire_policies_after_downtime(
        clients: RedisClients, store: Store, settings: Settings, run_beat: Callable[..., Any]) -> None:
    late_ms = int((LEASE + 10) * 1000)
    # hourly jobs whose last fire was half an hour ago: missed (not late), whatever the time now
    minute = time.gmtime(time.time() - 1800).tm_min
    store.clock = FakeClock(time.time() - 86_400)  # type: ignore[attr-defined]  # created yesterday
    await seed(store, 0)
    jobs = {"cron-once": "fireOnce", "cron-skip": "skip"}
    for cron_id, policy in jobs.items():
        await store.create(Entity.CRON_JOB, cron_row(cron_id, f"{minute} * * * *", misfirePolicy=policy))
    await store.create(Entity.CRON_JOB, cron_row("cron-sec", misfirePolicy="skip"))
    store.clock = FakeClock(time.time())  # type: ignore[attr-defined]
    down_since = int(time.time() * 1000) - 3 * 3_600_000 - 60_000  # every Beat down for 3 hours
    await clients.main.hset(clients.keys.beat_last(), mapping=dict.fromkeys([*jobs, "cron-sec"], down_since))
    before_ms = int(time.time() * 1000)
    running = await run_beat(settings)
    await running.leading()

    async def caught_up() -> bool:  # the catch-up batch is one script call: all of it or none
        return any(e["originId"] == "cron-sec" for e in await fired_entries(clients.main, clients.keys))

    await wait_for(caught_up, 10)
    caught_up_ms = running.beat.now_ms()

    async def ticked_on() -> bool:  # and a regular second after it
        counts = fire_counts(await fired_entries(clients.main, clients.keys))
        return any(c == "cron-sec" and ms >= caught_up_ms for c, ms in counts)

    await wait_for(ticked_on, 10)
    counts = fire_counts(await fired_entries(clients.main, clients.keys))
    missed_from = caught_up_ms - late_ms  # the last hourly fire before the late window
    last_hourly = missed_from - missed_from % 3_600_000 + minute * 60_000
    if last_hourly > missed_from:
        last_hourly -= 3_600_000
    assert counts[("cron-once", last_hourly)] == 1
    assert [k for k in counts if k[0] == "cron-once"] == [("cron-once", last_hourly)]  # once, not 3 times
    assert not [k for k in counts if k[0] == "cron-skip"]
    # a per-second job with misfirePolicy skip: the seconds of the late window are fired (from
    # its start, without a gap to the regular ones), none older
    seconds = contiguous(counts, "cron-sec")
    assert before_ms - late_ms - 1000 <= seconds[0] <= caught_up_ms - late_ms + 1000


async def test_restart_never_double_fires(
        clients: RedisClients, store: Store, settings: Settings, run_beat: Callable[..., Any]) -> None:
    ids = await seed(store, 20)

    async def fired_seconds(at_least: int) -> bool:
        """Every job has fired at least ``at_least`` distinct seconds."""
        counts = fire_counts(await fired_entries(clients.main, clients.keys))
        return all(sum(1 for c, _ in counts if c == cron_id) >= at_least for cron_id in ids)

    first = await run_beat(settings)
    await first.leading()
    await wait_for(lambda: fired_seconds(2), 10, interval=0.1)
    await first.close()  # graceful: the lease is released
    second = await run_beat(settings)
    await second.leading()
    await wait_for(lambda: fired_seconds(4), 10, interval=0.1)
    await second.close()
    counts = fire_counts(await fired_entries(clients.main, clients.keys))
    spans = {cron_id: contiguous(counts, cron_id) for cron_id in ids}
    assert all(len(s) >= 4 for s in spans.values())
    assert sum(counts.values()) == await _claims(store)


async def _claims(store: Store) -> int:
    async with store.db.session() as s:  # type: ignore[attr-defined]
        rows = await s.fetchall("SELECT COUNT(*) FROM cron_fires")
    return int(rows[0][0])


async def test_a_leader_that_loses_its_lease_stops_at_once(
        clients: RedisClients, store: Store, settings: Settings, run_beat: Callable[..., Any]) -> None:
    await seed(store, 5)
    running = await run_beat(settings, clock=LeaseNeverRunsOut())
    await running.leading()
    await wait_for(lambda: fired_entries(clients.main, clients.keys), 10)
    # another Beat took over (the leases expired during a pause): new tokens, new epochs
    await clients.main.set(clients.keys.beat_leader(), "someone-else", px=60_000)
    await clients.main.incr(clients.keys.beat_epoch())
    for p in range(settings.beat.partitions):
        await clients.main.set(clients.keys.beat_partition(p), "someone-else", px=60_000)
        await clients.main.incr(clients.keys.beat_partition_epoch(p))
    # every script call from here on carries a stale epoch (Redis runs them one at a time)
    before = len(await fired_entries(clients.main, clients.keys))
    # its own leases never run out: it stops because the next fire is fenced or the next
    # renewal fails, not by waiting its leases out
    await wait_for(lambda: _not(running.beat.leading.is_set()), 30, interval=0.02)
    await wait_for(lambda: _not(bool(running.beat.partitions.held)), 30, interval=0.02)
    assert not running.beat.leadership.valid() and not running.beat.partitions.epochs()
    assert len(await fired_entries(clients.main, clients.keys)) == before  # no fire after the takeover


class LeaseNeverRunsOut(SystemClock):
    """Real time, but a frozen monotonic clock: a lease, once renewed, stays valid."""

    def monotonic(self) -> float:
        return 0.0


async def _not(value: bool) -> bool:
    return not value


async def test_a_failed_batch_is_retried_while_late(
        clients: RedisClients, store: Store, make_settings: Callable[..., Settings],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """With no firing through a store outage (``store_outage_seconds: 0``), a batch whose
    claims failed waits in the backlog."""
    beat = Beat(make_settings(beat={"lease_seconds": LEASE, "store_outage_seconds": 0}), clients, store)
    await seed(store, 3)
    await beat.sync_time()
    assert (await beat.partitions.step()).gained  # one Beat: every partition
    await beat.catalog.load_all()
    real = store.claim_cron_fires
    calls = 0

    async def flaky(claims: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("database went away")
        return await real(claims)

    monkeypatch.setattr(store, "claim_cron_fires", flaky)
    now = beat.now_ms()
    due = (beat.table.next_due_ms() or now) + 10
    with pytest.raises(ConnectionError):
        await beat.scheduler.fire_due(due)
    assert len(beat.scheduler._backlog) == 3
    await beat.scheduler.fire_due(due)  # nothing new is due: only the backlog fires
    await beat.scheduler.sent()
    assert beat.scheduler.counts[FireStatus.FIRED.value] == 3 and beat.scheduler._backlog == []
    assert len(await fired_entries(clients.main, clients.keys)) == 3
    await beat.partitions.release_all()


async def test_a_store_outage_fires_on_and_claims_after(
        clients: RedisClients, store: Store, settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    """The store cannot take claims: the fires go out all the same (deduplicated in Redis),
    their claims wait in memory and are written once the store answers again."""
    beat = Beat(settings, clients, store)
    ids = await seed(store, 3)
    await beat.sync_time()
    assert (await beat.partitions.step()).gained  # one Beat: every partition
    await beat.catalog.load_all()
    real = store.claim_cron_fires
    down = True

    async def outage(claims: Any) -> Any:
        if down:
            raise ConnectionError("database went away")
        return await real(claims)

    monkeypatch.setattr(store, "claim_cron_fires", outage)
    due = (beat.table.next_due_ms() or beat.now_ms()) + 10
    await beat.scheduler.fire_due(due)
    await beat.scheduler.sent()
    assert beat.scheduler.counts[FireStatus.FIRED.value] == 3 and beat.scheduler._backlog == []
    assert beat.firer.unclaimed == 3
    fired = fire_counts(await fired_entries(clients.main, clients.keys))
    with pytest.raises(ConnectionError):
        await beat.firer.write_unclaimed()
    assert beat.firer.unclaimed == 3
    down = False
    await beat.firer.write_unclaimed()
    assert beat.firer.unclaimed == 0
    # the claims are there: another deployment claiming the same fires is refused
    again = await real([(cron_id, ms, "task-elsewhere") for cron_id, ms in fired])
    assert not any(again) and {c for c, _ in fired} == set(ids)
    await beat.partitions.release_all()


async def test_a_store_outage_past_its_bound_stops_firing(
        clients: RedisClients, store: Store, make_settings: Callable[..., Settings],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Past ``beat.store_outage_seconds`` the fires are no longer sent without claims (on a
    clock the test drives)."""
    clock = FakeClock(time.time())
    beat = Beat(make_settings(beat={"lease_seconds": LEASE, "store_outage_seconds": 0.2}), clients, store,
                clock=clock)
    await seed(store, 2)
    await beat.sync_time()
    assert (await beat.partitions.step()).gained  # one Beat: every partition
    await beat.catalog.load_all()

    async def outage(claims: Any) -> Any:
        raise ConnectionError("database went away")

    monkeypatch.setattr(store, "claim_cron_fires", outage)
    due = (beat.table.next_due_ms() or beat.now_ms()) + 10
    await beat.scheduler.fire_due(due)  # the outage starts: fired without claims
    await beat.scheduler.sent()
    clock.advance(0.3)  # past the bound
    with pytest.raises(ConnectionError):
        await beat.scheduler.fire_due(due + 1000)
    assert len(beat.scheduler._backlog) == 2
    await beat.partitions.release_all()


def test_fires_that_could_not_be_sent_follow_the_misfire_policy(
        clients: RedisClients, store: Store, settings: Settings) -> None:
    """A failed batch's fires older than the late window: a ``fireOnce`` job keeps its newest
    (fired once when a batch goes through), a ``skip`` job none; late ones are all kept."""
    beat = Beat(settings, clients, store)
    now = beat.now_ms()
    old, late = now - beat.late_ms - 5000, now - 1000
    once, skip, both = (CronJob.from_row(cron_row("cron-once")),
                        CronJob.from_row(cron_row("cron-skip", misfirePolicy="skip")),
                        CronJob.from_row(cron_row("cron-both")))
    func = Func.from_row(func_row())
    requests = [FireRequest(once, func, old - 1000), FireRequest(once, func, old),
                FireRequest(skip, func, old), FireRequest(both, func, old), FireRequest(both, func, late)]
    beat.scheduler._retry_later(requests)
    assert sorted((r.job.id, r.fire_ms) for r in beat.scheduler._backlog) == [
        ("cron-both", late), ("cron-once", old)]



async def test_the_redis_time_offset_never_puts_the_beat_ahead(
        clients: RedisClients, store: Store, make_settings: Callable[..., Settings],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A Redis busy with a batch answers TIME late: the Beat's idea of Redis time must not run
    ahead of it (its fires would go out before their second), whatever the round trip."""
    clock = FakeClock(1_700_000_000.0)
    beat = Beat(make_settings(), clients, store, clock=clock)
    trips = iter([(0.4, 0.0), (0.2, 0.05), (0.01, 0.3)])  # (Redis reads TIME after, answer after)

    async def server_time() -> float:
        read, answered = next(trips)
        clock.now += read
        redis_now = clock.now + 5.0  # Redis is 5 s ahead of this machine
        clock.now += answered
        return redis_now

    monkeypatch.setattr(beat.streams, "server_time", server_time)
    await beat.sync_time()
    assert beat.offset <= 5.0  # never ahead of Redis
    assert beat.offset >= 5.0 - 0.25  # the quickest round trip (0.25 s) bounds the error


async def test_a_beat_stops_at_once_in_the_middle_of_a_long_discovery(
        clients: RedisClients, store: Store, settings: Settings, run_beat: Callable[..., Any],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Stopped while the queue discovery scans a big keyspace (seconds under load, never looking
    at the stop flag; redis-py on Python 3.11 loses most cancels of such a loop of quick
    commands): the Beat does not wait it out, and gives its leases up so that another Beat
    takes over at once."""
    scanning = asyncio.Event()

    async def deaf_scan(self: Beat) -> None:  # loses its first cancels
        scanning.set()
        lost = 0
        while True:
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                lost += 1
                if lost == 5:
                    raise

    monkeypatch.setattr(Beat, "discover_queues", deaf_scan)
    running = await run_beat(settings)
    await running.leading()
    await asyncio.wait_for(scanning.wait(), 10)
    running.stop.set()
    await asyncio.wait([running.task], timeout=10)  # a deadline for a busy machine
    assert running.task.done()  # it used to wait for the scan (here: forever)
    keys = clients.keys
    leases = [keys.beat_leader(), *(keys.beat_partition(p) for p in range(settings.beat.partitions))]
    assert await clients.main.exists(*leases) == 0
