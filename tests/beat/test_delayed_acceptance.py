"""Delayed cron runs across a leader SIGKILL: two `fluxfunc-beat` processes, jobs every second
on a func with ``delayed_cron_job=[0, 2]``; every main and delayed run is made exactly once."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from tests.beat.conftest import BeatProcess, cron_row, func_row
from tests.beat.test_acceptance import LEASE, _beat_alive, _new_epoch, leader_pid, whole_second
from tests.processes import wait_for

from fluxfunc_beat.leader import current_leader
from fluxfunc_common.keys import Keys
from fluxfunc_common.redisconn import RedisClients
from fluxfunc_common.settings import Settings
from fluxfunc_common.store import Entity, Store

DELAY = 2
JOBS = 20


async def runs(redis: aioredis.Redis, keys: Keys) -> list[tuple[str, int, int]]:
    """(cron id, fire ms, delay s) of every run: on the cron stream or still delayed."""
    entries: Any = await redis.xrange(keys.queue("cron"))
    delayed: Any = await redis.hgetall(keys.delayed_body("cron"))
    bodies = [fields[b"body"] for _, fields in entries] + list(delayed.values())
    out = []
    for raw in bodies:
        body = json.loads(raw)
        fire_ms = round(body["triggerTime"] * 1000)
        delay = round(body["eta"] - body["triggerTime"]) if body.get("eta") else 0
        out.append((body["originId"], fire_ms, delay))
    return out


async def ran_through(redis: aioredis.Redis, keys: Keys, ids: list[str], ms: int) -> bool:
    latest: dict[str, int] = {}
    for cron_id, fire_ms, _ in await runs(redis, keys):
        latest[cron_id] = max(latest.get(cron_id, 0), fire_ms)
    return all(latest.get(cron_id, 0) >= ms for cron_id in ids)


@pytest.mark.slow
async def test_every_main_and_delayed_run_once_across_a_sigkill(
        clients: RedisClients, store: Store, make_settings: Callable[..., Settings],
        beat_procs: Callable[[Settings, str], BeatProcess]) -> None:
    settings = make_settings(beat={"lease_seconds": LEASE})
    redis, keys = clients.main, clients.keys
    await store.create(Entity.FUNC, func_row(delayedCronExpr=[0, DELAY]))
    ids = [f"cron-d{i:03d}" for i in range(JOBS)]
    for cron_id in ids:
        await store.create(Entity.CRON_JOB, cron_row(cron_id))
    procs = {"a": beat_procs(settings, "a")}
    await wait_for(lambda: leader_pid(redis, keys), 30, what="a Beat leads")
    procs["b"] = beat_procs(settings, "b")
    await wait_for(lambda: _beat_alive(redis, keys, procs["b"].pid), 30, what="the standby's heartbeat")
    pid = await leader_pid(redis, keys)
    [victim] = [p for p in procs.values() if p.proc.pid == pid]
    survivor = next(p for p in procs.values() if p is not victim)
    steady_ms = whole_second(int(time.time() * 1000)) + 2000
    await wait_for(lambda: ran_through(redis, keys, ids, steady_ms), 30, interval=0.2,
                   what="two more seconds fired by the first leader")
    _, epoch_before = await current_leader(redis, keys)
    victim.kill()
    await wait_for(lambda: _new_epoch(redis, keys, epoch_before), LEASE + 30, what="the standby took over")
    resumed_ms = whole_second(int(time.time() * 1000)) + 2000
    await wait_for(lambda: ran_through(redis, keys, ids, resumed_ms), 30, interval=0.2,
                   what="fires after the takeover")
    assert survivor.stop() == 0

    counts = Counter(await runs(redis, keys))
    dups = [k for k, n in counts.items() if n > 1]
    assert not dups, f"{len(dups)} runs made more than once, e.g. {dups[:3]}"
    for cron_id in ids:
        fired = sorted({m for c, m, _ in counts if c == cron_id})
        assert fired == list(range(fired[0], fired[-1] + 1000, 1000)), f"{cron_id}: a second is missing"
        for ms in fired:  # each fire made both of its runs, or (fenced) neither
            assert counts[(cron_id, ms, 0)] == 1 and counts[(cron_id, ms, DELAY)] == 1, (cron_id, ms)
    assert {d for _, _, d in counts} == {0, DELAY}
