"""Who reads which queue: the worker heartbeats, else a recently active consumer of the
queue's group; and the queues published functions name."""

from __future__ import annotations

import asyncio

import redis.asyncio as aioredis

from fluxfunc_common import queues
from fluxfunc_common.heartbeat import heartbeat
from fluxfunc_common.keys import GROUP, Keys
from fluxfunc_common.streams import StreamProtocol


async def test_heartbeats_then_recent_consumers(redis_client: aioredis.Redis, keys: Keys) -> None:
    live = queues.LiveQueues(redis_client, keys, seen_seconds=60, cache_seconds=0)
    assert not await live.read("slow")  # no stream, no heartbeat
    async with heartbeat(redis_client, keys, "worker", "w1", extra=lambda: {"queues": ["slow"]}):
        await live.read("other")  # starts a re-read of the heartbeats that callers do not wait for
        assert live._refresh is not None
        await live._refresh
        assert await live.read("slow")
    await StreamProtocol(redis_client, keys).ensure_groups(["fresh"])
    await redis_client.xgroup_createconsumer(keys.queue("fresh"), GROUP, "just-started")
    assert await live.read("fresh")  # not in a heartbeat yet, but it reads the stream
    stale = queues.LiveQueues(redis_client, keys, seen_seconds=0.001, cache_seconds=60)
    await asyncio.sleep(0.01)
    assert not await stale.read("fresh")  # a consumer idle for longer does not count


def test_function_queues_and_warnings() -> None:
    funcs = [{"id": "a.f", "extraConfig": {"queue": "slow"}}, {"id": "a.g", "extraConfig": {}},
             {"id": "a.h", "extraConfig": {"queue": "3"}}]
    assert [queues.func_queue(f) for f in funcs] == ["slow", None, "3"]
    warnings = queues.unconsumed(funcs, {"3"})
    assert warnings == [queues.no_consumer("slow", func="a.f")]
    assert warnings[0].startswith("a.f: queue 'slow' has no live consumer")
