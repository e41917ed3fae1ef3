"""Delayed cron runs (``delayed_cron_job``): each fire's runs, made exactly once, in one step."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import orjson
from tests.beat.conftest import cron_row, fired_entries, func_row

from fluxfunc_common.cron import CronFirer, FireRequest, FireStatus, fire_task_id
from fluxfunc_common.cronscript import run_delays
from fluxfunc_common.models import CronJob, Func
from fluxfunc_common.redisconn import RedisClients
from fluxfunc_common.settings import Settings
from fluxfunc_common.store import Store
from fluxfunc_common.streams import StreamProtocol


def delayed_func(delays: list[int]) -> Func:
    row = func_row()
    row["extraConfig"] = {**row["extraConfig"], "delayedCronExpr": delays}
    return Func.from_row(row)


def firer_for(clients: RedisClients, store: Store, settings: Settings) -> CronFirer:
    return CronFirer(clients.main, clients.keys, StreamProtocol(clients.main, clients.keys), store, settings)


def test_run_delays_follow_dataflux_func() -> None:
    assert run_delays(Func.from_row(func_row())) == (0,)
    assert run_delays(delayed_func([60, 0, 30, 30])) == (0, 30, 60)
    assert run_delays(delayed_func([60])) == (60,)  # the list replaces the run at 0


async def test_each_fire_makes_its_runs_once(clients: RedisClients, store: Store,
                                             make_settings: Callable[..., Settings]) -> None:
    firer = firer_for(clients, store, make_settings())
    fire_ms = int(time.time() * 1000)
    request = FireRequest(CronJob.from_row(cron_row("cron-d")), delayed_func([0, 30, 3600]), fire_ms)
    outcomes = await firer.fire_many([request], epoch=None)
    assert [o.status for o in outcomes] == [FireStatus.FIRED] * 3
    assert len({o.task_id for o in outcomes}) == 3
    assert outcomes[0].task_id == fire_task_id("cron-d", fire_ms, deployment=await firer.deployment())
    [now_env] = await fired_entries(clients.main, clients.keys)
    assert now_env["id"] == outcomes[0].task_id and now_env.get("eta") is None
    scored: Any = await clients.main.zrange(clients.keys.delayed("cron"), 0, -1, withscores=True)
    due = dict(scored)
    assert due == {outcomes[1].task_id.encode(): fire_ms + 30_000,
                   outcomes[2].task_id.encode(): fire_ms + 3_600_000}
    raw: Any = await clients.main.hget(clients.keys.delayed_body("cron"), outcomes[2].task_id)
    body = orjson.loads(raw)
    assert body["eta"] == fire_ms / 1000 + 3600 and body["triggerTime"] == fire_ms / 1000
    assert body["originId"] == "cron-d" and body["origin"] == "cronJob"
    # a re-sent fire (another Beat, a retried batch) makes none of them again
    again = await firer_for(clients, store, make_settings()).fire_many([request], epoch=None)
    assert [o.status for o in again] == [FireStatus.DUPLICATE] * 3
    assert [o.task_id for o in again] == [o.task_id for o in outcomes]
    assert len(await fired_entries(clients.main, clients.keys)) == 1
    assert await clients.main.zcard(clients.keys.delayed("cron")) == 2


async def test_a_late_delayed_run_goes_straight_to_the_queue(
        clients: RedisClients, store: Store, make_settings: Callable[..., Settings]) -> None:
    firer = firer_for(clients, store, make_settings())
    fire_ms = int(time.time() * 1000) - 120_000  # fired late: its +60 s run is already due
    request = FireRequest(CronJob.from_row(cron_row("cron-l")), delayed_func([60]), fire_ms)
    [o] = await firer.fire_many([request], epoch=None)
    assert o.status is FireStatus.FIRED
    [env] = await fired_entries(clients.main, clients.keys)
    assert env["id"] == o.task_id and env["eta"] == fire_ms / 1000 + 60


async def test_a_stale_leader_makes_no_run(clients: RedisClients, store: Store,
                                           make_settings: Callable[..., Settings]) -> None:
    await clients.main.set(clients.keys.beat_epoch(), 5)
    firer = firer_for(clients, store, make_settings())
    now_ms = int(time.time() * 1000)
    request = FireRequest(CronJob.from_row(cron_row("cron-f")), delayed_func([0, 30]), now_ms)
    outcomes = await firer.fire_many([request], epoch=4)
    assert [o.status for o in outcomes] == [FireStatus.FENCED] * 2
    assert await fired_entries(clients.main, clients.keys) == []
    assert await clients.main.zcard(clients.keys.delayed("cron")) == 0
