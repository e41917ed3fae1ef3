"""Two real `fluxfunc-beat` processes sharing the cron partitions, and a SIGKILL of one."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
import redis.asyncio as aioredis
from tests.beat.conftest import BeatProcess, seed
from tests.beat.test_acceptance import (
    LEASE,
    check_every_second_once,
    claims,
    fired_through,
    fires,
    whole_second,
)
from tests.processes import wait_for

from fluxfunc_beat.partitions import partition_of
from fluxfunc_common.keys import Keys
from fluxfunc_common.redisconn import RedisClients
from fluxfunc_common.settings import Settings
from fluxfunc_common.store import Store

PARTITIONS = 16


async def heartbeats(redis: aioredis.Redis, keys: Keys) -> dict[int, dict[str, Any]]:
    """pid → heartbeat body of every live Beat."""
    out = {}
    async for key in redis.scan_iter(match=keys.svc_pattern("beat")):
        raw = await redis.get(key)
        if raw:
            body = json.loads(raw)
            out[int(body["pid"])] = body
    return out


async def holders(redis: aioredis.Redis, keys: Keys) -> Counter[str]:
    """Lease token → partitions it holds (from the partition leases themselves)."""
    tokens = await redis.mget([keys.beat_partition(p) for p in range(PARTITIONS)])
    return Counter(t.decode() for t in tokens if t is not None)


@pytest.mark.slow
async def test_two_beats_split_the_partitions_and_take_over_a_sigkilled_ones(
        clients: RedisClients, store: Store, make_settings: Callable[..., Settings],
        beat_procs: Callable[[Settings, str], BeatProcess]) -> None:
    """Each Beat holds half of the partitions and fires their jobs; one is SIGKILLed: within
    its lease the other holds every partition, and every (job, second) is fired exactly once
    before, across and after the takeover."""
    settings = make_settings(beat={"lease_seconds": LEASE, "partitions": PARTITIONS})
    redis, keys = clients.main, clients.keys
    ids = await seed(store, 200)
    procs = [beat_procs(settings, "a"), beat_procs(settings, "b")]

    async def split() -> dict[int, dict[str, Any]] | None:
        beats = await heartbeats(redis, keys)
        held = [len(beats.get(p.pid, {}).get("partitions", [])) for p in procs]
        return beats if held == [PARTITIONS // 2] * 2 else None

    beats = await wait_for(split, 40, interval=0.2, what="each Beat holds half of the partitions")
    split_ms = int(time.time() * 1000)  # every job has fired by now (its partition was held)
    assert sorted((await holders(redis, keys)).values()) == [PARTITIONS // 2] * 2
    # the work splits: each Beat schedules the jobs of its partitions, about half of them
    per_beat = [sum(partition_of(c, PARTITIONS) in beats[p.pid]["partitions"] for c in ids) for p in procs]
    assert sum(per_beat) == len(ids) and min(per_beat) >= len(ids) // 4, per_beat
    steady_ms = whole_second(int(time.time() * 1000)) + 2000
    await wait_for(lambda: fired_through(redis, [keys], ids, steady_ms), 30, interval=0.2,
                   what="two more seconds fired by both Beats")
    victim = next(p for p in procs if not beats[p.pid]["leader"])  # partitions only: no chores
    survivor = next(p for p in procs if p is not victim)
    victim.kill()

    async def all_taken() -> bool:
        return list((await holders(redis, keys)).values()) == [PARTITIONS]

    await wait_for(all_taken, LEASE + 30, interval=0.1, what="the survivor holds every partition")
    resumed_ms = whole_second(int(time.time() * 1000)) + 2000
    await wait_for(lambda: fired_through(redis, [keys], ids, resumed_ms), 30, interval=0.2,
                   what="fires after the takeover")
    assert survivor.stop() == 0

    rows = await fires(redis, keys)
    check_every_second_once(rows, ids, first_by=split_ms, last_from=resumed_ms)
    assert len(rows) == await claims(store)  # each fire claimed once in the store
    print(f"\n{len(rows)} fires; jobs per Beat {per_beat}")
