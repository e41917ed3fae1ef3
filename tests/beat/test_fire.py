"""Firing: dedup, fencing, overlap, store claims across deployments — real Redis and stores."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
from tests.beat.conftest import cron_row, fire_counts, fired_entries, func_row

from fluxfunc_common import cron
from fluxfunc_common.cron import CronFirer, FireRequest, FireStatus, fire_task_id
from fluxfunc_common.envelope import Origin, TaskEnvelope, TaskStatus
from fluxfunc_common.keys import Keys
from fluxfunc_common.models import CronJob, Func
from fluxfunc_common.redisconn import RedisClients
from fluxfunc_common.settings import Settings, StoreSettings
from fluxfunc_common.store import Entity, Store, open_store
from fluxfunc_common.streams import StreamProtocol
from fluxfunc_common.tasks import build_envelope

T0 = 1_704_067_200_000  # 2024-01-01T00:00:00Z


def firer_for(clients: RedisClients, store: Store, settings: Settings) -> CronFirer:
    return CronFirer(clients.main, clients.keys, StreamProtocol(clients.main, clients.keys), store, settings)


def requests(jobs: list[dict[str, Any]], fire_ms: int) -> list[FireRequest]:
    func = Func.from_row(func_row())
    return [FireRequest(CronJob.from_row(j), func, fire_ms) for j in jobs]


def manual_run(clients: RedisClients, store: Store, settings: Settings, job: dict[str, Any],
               fire_ms: int) -> Any:
    """What the Server's ``POST /api/v1/cron/{id}`` does."""
    return cron.fire(clients.main, clients.keys, StreamProtocol(clients.main, clients.keys), store, settings,
                     CronJob.from_row(job), Func.from_row(func_row()), fire_ms=fire_ms, manual=True)


@pytest.fixture
async def any_store(store_url: str) -> AsyncIterator[Store]:
    async with open_store(StoreSettings(url=store_url)) as s:
        yield s


async def test_fire_enqueues_once(clients: RedisClients, store: Store,
                                  make_settings: Callable[..., Settings]) -> None:
    firer = firer_for(clients, store, make_settings())
    job = cron_row("cron-a", kwargs={"n": 7})
    [first] = await firer.fire_many(requests([job], T0), epoch=None)
    [again] = await firer.fire_many(requests([job], T0), epoch=None)
    assert first.status is FireStatus.FIRED and first.queue == "cron"
    assert again.status is FireStatus.DUPLICATE and again.task_id == first.task_id
    [env] = await fired_entries(clients.main, clients.keys)
    assert env["id"] == first.task_id and env["origin"] == "cronJob" and env["originId"] == "cron-a"
    assert env["triggerTime"] == T0 / 1000 and env["kwargs"] == {"n": 7} and env["cronExpr"] == "* * * * * *"
    assert await clients.main.hget(clients.keys.beat_last(), "cron-a") == str(T0).encode()
    header = orjson.loads(await clients.main.get(clients.keys.enqueued(first.task_id)))
    assert header["originId"] == "cron-a" and header["id"] == first.task_id  # reported as queued
    # the template-rendered body is exactly the envelope a producer would build for this fire
    [(_, fields)] = await clients.main.xrange(clients.keys.queue("cron"))
    settings = make_settings()
    expected = build_envelope(func_row(), {"n": 7}, origin=Origin.CRON_JOB, now=T0 / 1000,
                              settings=settings.tasks, origin_id="cron-a", task_id=first.task_id,
                              cron_expr="* * * * * *")
    assert TaskEnvelope.model_validate_json(fields[b"body"]) == expected
    assert fields[b"task"].decode() == first.task_id and fields[b"origin"] == b"cronJob"
    # a second firer of the same deployment (another Beat) names the fire the same way
    other = firer_for(clients, store, make_settings())
    [third] = await other.fire_many(requests([job], T0), epoch=None)
    assert third.status is FireStatus.DUPLICATE and third.task_id == first.task_id


async def test_a_stale_epoch_fires_nothing(clients: RedisClients, store: Store,
                                           make_settings: Callable[..., Settings]) -> None:
    firer = firer_for(clients, store, make_settings())
    await clients.main.set(clients.keys.beat_epoch(), 5)
    out = await firer.fire_many(requests([cron_row("cron-a"), cron_row("cron-b")], T0), epoch=4)
    assert {o.status for o in out} == {FireStatus.FENCED}
    assert await fired_entries(clients.main, clients.keys) == []
    assert not await clients.main.hexists(clients.keys.beat_last(), "cron-a")
    # its guard was claimed ahead with this deployment's task id: the holder of the new epoch
    # (a Beat of the same deployment) finds it its own and fires
    out = await firer.fire_many(requests([cron_row("cron-a")], T0), epoch=5)
    assert out[0].status is FireStatus.FIRED
    assert await clients.main.get(clients.keys.beat_fired("cron-a", T0)) == out[0].task_id.encode()


async def test_overlap_skip_is_recorded_and_manual_runs_obey_it(
        clients: RedisClients, store: Store, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    firer = firer_for(clients, store, settings)
    job = cron_row("cron-s", overlapPolicy="skip")
    [one] = await firer.fire_many(requests([job], T0), epoch=None)
    [two] = await firer.fire_many(requests([job], T0 + 1000), epoch=None)  # one is still queued
    assert one.status is FireStatus.FIRED and two.status is FireStatus.SKIPPED
    assert one.task_id in two.detail
    record = await store.get_task_record(two.task_id)
    assert record is not None and record["status"] == TaskStatus.SKIPPED.value
    assert record["originId"] == "cron-s" and record["origin"] == "cronJob"
    # the Server's manual run goes through the same rule
    manual = await manual_run(clients, store, settings, job, T0 + 1500)
    assert manual.status is FireStatus.SKIPPED
    # running (worker marker) still counts as in flight; a result ends it
    await clients.main.set(clients.keys.running(one.task_id), "{}")
    [three] = await firer.fire_many(requests([job], T0 + 2000), epoch=None)
    assert three.status is FireStatus.SKIPPED
    await clients.main.set(clients.keys.result(one.task_id), "{}")
    [four] = await firer.fire_many(requests([job], T0 + 3000), epoch=None)
    assert four.status is FireStatus.FIRED
    manual = await manual_run(clients, store, settings, job, T0 + 3500)
    assert manual.status is FireStatus.SKIPPED  # four is in flight now
    # overlapPolicy allow: fires whatever runs
    allow = cron_row("cron-allow", overlapPolicy="allow")
    out = await firer.fire_many(requests([allow], T0) + requests([allow], T0 + 1000), epoch=None)
    assert [o.status for o in out] == [FireStatus.FIRED, FireStatus.FIRED]
    entries = fire_counts(await fired_entries(clients.main, clients.keys))
    assert entries == {("cron-s", T0): 1, ("cron-s", T0 + 3000): 1, ("cron-allow", T0): 1,
                       ("cron-allow", T0 + 1000): 1}


async def test_manual_runs_dedup_apart_from_scheduled_fires(
        clients: RedisClients, store: Store, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    job = cron_row("cron-m")
    [scheduled] = await firer_for(clients, store, settings).fire_many(requests([job], T0), epoch=None)
    manual = await manual_run(clients, store, settings, job, T0)
    again = await manual_run(clients, store, settings, job, T0)
    assert scheduled.status is manual.status is FireStatus.FIRED
    assert manual.task_id != scheduled.task_id and again.status is FireStatus.DUPLICATE
    assert await clients.main.hget(clients.keys.beat_last(), "cron-m") == str(T0).encode()


async def test_a_full_queue_refuses_without_marking_the_fire(
        clients: RedisClients, store: Store, make_settings: Callable[..., Settings]) -> None:
    firer = firer_for(clients, store, make_settings(redis={"queue_max_len": 1}))
    out = await firer.fire_many(requests([cron_row("cron-a"), cron_row("cron-b")], T0), epoch=None)
    assert [o.status for o in out] == [FireStatus.FIRED, FireStatus.FAILED]
    assert "full" in out[1].detail
    assert not await clients.main.exists(clients.keys.beat_fired("cron-b", T0))
    assert await clients.main.hget(clients.keys.beat_last(), "cron-b") is None
    # its enq marker, set when the fire was claimed ahead, goes too: the task never reads queued
    assert not await clients.main.exists(clients.keys.enqueued(out[1].task_id))
    assert await clients.main.exists(clients.keys.enqueued(out[0].task_id))


async def test_a_fire_claimed_ahead_reads_queued_before_its_moment_and_fires_once(
        clients: RedisClients, store: Store, make_settings: Callable[..., Settings]) -> None:
    """The common fire (overlap 'allow', due now) has its enq marker set when it is claimed,
    before the moment; sending the prepared batch fires it, and sending it again is a duplicate
    found by the watermark (the marker no longer decides)."""
    firer = firer_for(clients, store, make_settings())
    prepared = await firer.prepare(requests([cron_row("cron-q")], T0))
    [tid] = prepared.tids
    assert await clients.main.exists(clients.keys.enqueued(tid))  # queued from the claim on
    assert await clients.main.xlen(clients.keys.queue("cron")) == 0
    [first] = await firer.send(prepared, epoch=None)
    [again] = await firer.send(prepared, epoch=None)
    assert first.status is FireStatus.FIRED and again.status is FireStatus.DUPLICATE
    assert len(await fired_entries(clients.main, clients.keys)) == 1


async def test_two_deployments_sharing_the_store_never_double_fire(
        any_store: Store, redis_server: Any, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    clients = []
    for ns in ("dep-a-" + settings.redis.namespace, "dep-b-" + settings.redis.namespace):
        main = aioredis.Redis.from_url(redis_server.url)
        clients.append(RedisClients(main, main, Keys(ns)))
    try:
        firers = [firer_for(c, any_store, settings) for c in clients]
        assert await firers[0].deployment() != await firers[1].deployment()
        jobs = [cron_row(f"cron-{i:02d}") for i in range(50)]
        for second in range(3):
            batch = requests(jobs, T0 + second * 1000)
            a, b = await asyncio.gather(*(f.fire_many(batch, epoch=None) for f in firers))
            for x, y in zip(a, b, strict=True):
                assert {x.status, y.status} == {FireStatus.FIRED, FireStatus.DUPLICATE}
        counts = fire_counts([e for c in clients for e in await fired_entries(c.main, c.keys)])
        assert counts == {(j["id"], T0 + s * 1000): 1 for j in jobs for s in range(3)}
        for c in clients:  # the loser knows the fire happened (its next takeover will not redo it)
            lasts = await c.main.hmget(c.keys.beat_last(), [j["id"] for j in jobs])
            assert set(lasts) == {str(T0 + 2000).encode()}
    finally:
        for c in clients:
            await c.main.aclose()


async def test_a_fire_claimed_before_a_crash_is_still_ours(
        clients: RedisClients, store: Store, make_settings: Callable[..., Settings]) -> None:
    """Killed between the store claim and Redis: the next leader fires it, once."""
    firer = firer_for(clients, store, make_settings())
    tid = fire_task_id("cron-a", T0, deployment=await firer.deployment())
    assert await store.claim_cron_fires([("cron-a", T0, tid)]) == [True]
    [out] = await firer.fire_many(requests([cron_row("cron-a")], T0), epoch=None)
    assert out.status is FireStatus.FIRED and out.task_id == tid


async def test_a_fire_claimed_in_redis_before_a_crash_is_still_ours(
        clients: RedisClients, store: Store, make_settings: Callable[..., Settings]) -> None:
    """Killed after its fires were claimed (store and Redis guard, ahead of the moment) but
    before they were sent: the next Beat of the deployment fires them, once."""
    dead = firer_for(clients, store, make_settings())
    await dead.prepare(requests([cron_row("cron-a"), cron_row("cron-b")], T0))
    tid = fire_task_id("cron-a", T0, deployment=await dead.deployment())
    assert await clients.main.get(clients.keys.beat_fired("cron-a", T0)) == tid.encode()
    assert await fired_entries(clients.main, clients.keys) == []  # nothing sent before its moment
    nxt = firer_for(clients, store, make_settings())
    out = await nxt.fire_many(requests([cron_row("cron-a"), cron_row("cron-b")], T0), epoch=None)
    assert [o.status for o in out] == [FireStatus.FIRED, FireStatus.FIRED] and out[0].task_id == tid
    again = await nxt.fire_many(requests([cron_row("cron-a"), cron_row("cron-b")], T0), epoch=None)
    assert {o.status for o in again} == {FireStatus.DUPLICATE}
    fired = fire_counts(await fired_entries(clients.main, clients.keys))
    assert fired == {("cron-a", T0): 1, ("cron-b", T0): 1}


async def test_a_prepared_batch_sent_twice_fires_once(
        clients: RedisClients, store: Store, make_settings: Callable[..., Settings]) -> None:
    """A batch sent again (its reply lost) finds the jobs' watermarks past its fires."""
    firer = firer_for(clients, store, make_settings())
    prepared = await firer.prepare(requests([cron_row("cron-a"), cron_row("cron-b")], T0))
    first = await firer.send(prepared, epoch=None)
    second = await firer.send(prepared, epoch=None)
    assert {o.status for o in first} == {FireStatus.FIRED}
    assert [(o.status, o.task_id) for o in second] == [(FireStatus.DUPLICATE, o.task_id) for o in first]
    assert len(await fired_entries(clients.main, clients.keys)) == 2


async def test_a_guard_held_by_another_task_is_a_duplicate(
        clients: RedisClients, store: Store, make_settings: Callable[..., Settings]) -> None:
    firer = firer_for(clients, store, make_settings())
    await clients.main.set(clients.keys.beat_fired("cron-a", T0), "task-someone-else", px=60_000)
    [out] = await firer.fire_many(requests([cron_row("cron-a")], T0), epoch=None)
    assert out.status is FireStatus.DUPLICATE and out.task_id == "task-someone-else"
    assert await fired_entries(clients.main, clients.keys) == []


async def test_store_claims_batch_and_prune(any_store: Store) -> None:
    claims = [(f"c{i}", T0 + s * 1000, f"t{i}-{s}") for i in range(500) for s in range(2)]
    assert await any_store.claim_cron_fires(claims) == [True] * 1000
    again = [(c, m, t if i % 2 else "other") for i, (c, m, t) in enumerate(claims)]
    assert await any_store.claim_cron_fires(again) == [bool(i % 2) for i in range(1000)]
    await any_store.claim_cron_fires([("monthly", T0 - 30 * 86_400_000, "tm")])
    # a day's retention, but every job keeps its newest claim
    assert await any_store.prune_cron_fires(T0 + 1000, keep_latest=True) == 500
    assert await any_store.claim_cron_fires([("monthly", T0 - 30 * 86_400_000, "x")]) == [False]
    assert await any_store.claim_cron_fires([("c1", T0, "again")]) == [True]  # pruned: claimable


async def test_a_job_fires_on_its_funcs_queue_and_deadline(
        clients: RedisClients, store: Store, make_settings: Callable[..., Settings]) -> None:
    func = func_row("demo__basic.nightly", fixedCronExpr="0 0 3 * * *", queue="slow", expires=60, timeout=5)
    await store.create(Entity.FUNC, func)
    job = CronJob.from_row(cron_row("nightly", "0 0 3 * * *", func_id="demo__basic.nightly"))
    firer = firer_for(clients, store, make_settings())
    [out] = await firer.fire_many([FireRequest(job, Func.from_row(func), T0)], epoch=None)
    assert out.status is FireStatus.FIRED and out.queue == "slow"
    [env] = await fired_entries(clients.main, clients.keys, "slow")
    assert env["originId"] == "nightly" and env["funcId"] == "demo__basic.nightly"
    assert env["expires"] == T0 / 1000 + 60 and env["timeout"] == 5  # the queue deadline of this fire


async def test_fires_after_redis_lost_its_scripts(clients: RedisClients, store: Store,
                                                  make_settings: Callable[..., Settings]) -> None:
    firer = firer_for(clients, store, make_settings())
    jobs = [cron_row(f"cron-{i:04d}") for i in range(1200)]  # three script calls, sent concurrently
    out = await firer.fire_many(requests(jobs, T0), epoch=None)
    assert {o.status for o in out} == {FireStatus.FIRED}
    await clients.main.script_flush()  # a Redis restart or a failover to a replica
    out = await firer.fire_many(requests(jobs, T0 + 1000), epoch=None)
    assert {o.status for o in out} == {FireStatus.FIRED}
    assert [o.cron_id for o in out] == [j["id"] for j in jobs]  # outcomes in request order
    assert len(await fired_entries(clients.main, clients.keys)) == 2400
