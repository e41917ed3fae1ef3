"""The consumer side the worker uses: ``StreamProtocol.claim`` (read + start check in one
round trip, completions riding along) and ``StreamProtocol.start``, on Redis 7 and 6.2."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis

from fluxfunc_common import ids
from fluxfunc_common.envelope import Origin, TaskEnvelope, TaskResult, TaskStatus
from fluxfunc_common.keys import Keys
from fluxfunc_common.streams import Start, StreamProtocol

TTL = 60_000


@pytest.fixture(params=["7", "6.2"])
async def proto(request: pytest.FixtureRequest, keys: Keys) -> AsyncIterator[StreamProtocol]:
    url = (request.getfixturevalue("redis62_url") if request.param == "6.2"
           else request.getfixturevalue("redis_server").url)
    main = aioredis.Redis.from_url(url)
    blocking = aioredis.Redis.from_url(url, socket_timeout=10)
    p = StreamProtocol(main, keys, blocking=blocking)
    await p.ensure_groups(["high", "low"])
    yield p
    await blocking.aclose()
    await main.aclose()


def env(queue: str = "high", **fields: Any) -> TaskEnvelope:
    return TaskEnvelope(id=ids.task_id(), func_id="demo__basic.plus", origin=Origin.DIRECT,
                        trigger_time=time.time(), queue=queue, **fields)


async def test_claim_probes_in_priority_order_and_sets_running_markers(proto: StreamProtocol) -> None:
    low = [env("low") for _ in range(3)]
    high = [env("high", attempt=2) for _ in range(2)]
    await proto.enqueue_many([*low, *high], max_len=1000)
    done, claimed = await proto.claim("c1", ["high", "low"], 3, marker_ttl_ms=TTL, block_ms=0)
    assert done == []
    assert [c.delivery.envelope.id for c in claimed] == [high[0].id, high[1].id, low[0].id]
    assert {c.start for c in claimed} == {Start.RUN}
    marker = orjson.loads(await proto.redis.get(proto.keys.running(high[0].id)))
    assert marker["consumer"] == "c1" and marker["attempt"] == 2
    assert abs(marker["startTime"] - time.time()) < 5
    ttl = await proto.redis.pttl(proto.keys.running(high[0].id))
    assert 0 < ttl <= TTL
    pending = await proto.redis.xpending(proto.keys.queue("low"), "workers")
    assert pending["pending"] == 1, "no more than count entries were read"


async def test_claim_reports_completed_and_cancelled_tasks(proto: StreamProtocol) -> None:
    done_env, cancelled_env, fresh = env(), env(), env()
    await proto.redis.set(proto.keys.result(done_env.id), b"{}", px=TTL)
    await proto.redis.set(proto.keys.cancel(cancelled_env.id), b"1", px=TTL)
    await proto.enqueue_many([done_env, cancelled_env, fresh], max_len=1000)
    _, claimed = await proto.claim("c1", ["high"], 10, marker_ttl_ms=TTL, block_ms=0)
    starts = {c.delivery.envelope.id: c.start for c in claimed}
    assert starts == {done_env.id: Start.DONE, cancelled_env.id: Start.CANCELLED, fresh.id: Start.RUN}
    assert await proto.redis.exists(proto.keys.running(done_env.id)) == 0
    assert await proto.redis.exists(proto.keys.running(cancelled_env.id)) == 0


async def test_completions_ride_along_and_a_call_carrying_them_never_blocks(proto: StreamProtocol) -> None:
    first = env()
    await proto.enqueue(first, max_len=1000)
    _, [got] = await proto.claim("c1", ["high"], 1, marker_ttl_ms=TTL, block_ms=0)
    result = TaskResult.for_envelope(got.delivery.envelope, TaskStatus.SUCCESS, result=1)
    # it would block for 10 minutes: the deadline (generous for a busy machine) tells it did not
    done, claimed = await asyncio.wait_for(
        proto.claim("c1", ["high"], 1, marker_ttl_ms=TTL, block_ms=600_000,
                    completions=[(got.delivery, result, TTL)]), 60)
    assert done == [True] and claimed == []
    assert (await proto.get_result(first.id)).result == 1  # type: ignore[union-attr]
    assert await proto.redis.xlen(proto.keys.queue("high")) == 0
    stale, _ = await proto.claim("c2", ["high"], 1, marker_ttl_ms=TTL, block_ms=0,
                                 completions=[(got.delivery, result, TTL)])
    assert stale == [False], "owner-checked like complete"


async def test_claim_blocks_until_an_entry_arrives_then_starts_it(proto: StreamProtocol) -> None:
    async def later() -> None:
        await asyncio.sleep(0.3)
        await proto.enqueue(env("low"), max_len=1000)

    producer = asyncio.create_task(later())
    _, claimed = await proto.claim("c1", ["high", "low"], 2, marker_ttl_ms=TTL, block_ms=3000)
    await producer
    assert len(claimed) == 1 and claimed[0].start is Start.RUN
    assert await proto.redis.exists(proto.keys.running(claimed[0].delivery.envelope.id)) == 1


async def test_malformed_entries_are_dead_lettered_by_claim(proto: StreamProtocol) -> None:
    await proto.redis.xadd(proto.keys.queue("high"), {"task": "task-x", "body": b"not json"})
    good = env()
    await proto.enqueue(good, max_len=1000)
    _, claimed = await proto.claim("c1", ["high"], 5, marker_ttl_ms=TTL, block_ms=0)
    assert [c.delivery.envelope.id for c in claimed] == [good.id]
    letters = await proto.dead_letters()
    assert [d["task"] for d in letters] == ["task-x"] and letters[0]["reason"].startswith("malformed")


async def test_start_checks_deliveries_got_otherwise(proto: StreamProtocol) -> None:
    a, b = env(), env(attempt=3)
    await proto.enqueue_many([a, b], max_len=1000)
    deliveries = await proto.read("c1", ["high"], 2, block_ms=0)
    await proto.redis.set(proto.keys.cancel(a.id), b"1", px=TTL)
    assert await proto.start("c1", deliveries, marker_ttl_ms=TTL) == [Start.CANCELLED, Start.RUN]
    assert orjson.loads(await proto.redis.get(proto.keys.running(b.id)))["attempt"] == 3
    assert await proto.start("c1", [], marker_ttl_ms=TTL) == []
