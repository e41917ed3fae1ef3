"""``GET /metrics`` against a Redis full of unrelated keys: the number of Redis commands a
scrape sends does not depend on the keyspace, deleted funcs are not listed, and
``server.metrics_token`` protects it."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient
from redis.asyncio.connection import Connection
from tests.conftest import RedisServer
from tests.server.conftest import Api

from fluxfunc_common.settings import Settings
from fluxfunc_common.taskstats import SEP
from fluxfunc_server.app import create_app
from fluxfunc_server.appkeys import CTX

JUNK_KEYS = 300_000
# one chunk of keys per script call, so that no single script keeps Redis busy for long on a
# loaded machine (a long one makes every other client of this Redis answer BUSY)
FILL = ("for i = tonumber(ARGV[1]), tonumber(ARGV[2]) do redis.call('SET', 'unrelated:' .. i, i) end "
        "return 1")
FILL_CHUNK = 20_000


class CountingConnection(Connection):
    """Counts every command packed for the wire (pipelined ones one by one)."""

    sent = 0

    def pack_command(self, *args: Any) -> list[bytes]:
        CountingConnection.sent += 1
        return super().pack_command(*args)


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    """A Redis of this test's own: it gets 300k keys no other test should see."""
    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def server_settings(make_settings: Callable[..., Settings], private_redis: RedisServer) -> Settings:
    return make_settings(redis={"url": private_redis.url})


async def _scrape_cost(api: Api, counting: aioredis.Redis) -> tuple[int, str]:
    """(Redis commands one scrape sent, the exposition text)."""
    api.ctx.redis = counting  # only the scrape uses this client: background loops hold theirs
    before = CountingConnection.sent
    _, text, _ = await api.call("GET", "/metrics", admin=False)
    return CountingConnection.sent - before, text


async def test_scrape_cost_does_not_grow_with_the_keyspace(api: Api, private_redis: RedisServer) -> None:
    await api.publish()
    pool = aioredis.ConnectionPool.from_url(private_redis.url, connection_class=CountingConnection)
    counting = aioredis.Redis(connection_pool=pool)
    own = api.ctx.redis
    try:
        await _scrape_cost(api, counting)  # warm: the store, the queue streams
        empty, _ = await _scrape_cost(api, counting)
        for first in range(1, JUNK_KEYS + 1, FILL_CHUNK):
            await own.eval(FILL, 0, first, min(first + FILL_CHUNK - 1, JUNK_KEYS))
        assert await own.dbsize() > JUNK_KEYS
        full, text = await _scrape_cost(api, counting)
    finally:
        api.ctx.redis = own
        await counting.aclose()
    print(f"metrics scrape: {empty} Redis commands (empty keyspace), {full} (300k unrelated keys)")
    assert full == empty, f"a scrape sent {empty} commands on an empty Redis, {full} with 300k keys"
    assert 'fluxfunc_queue_length{queue="default"}' in text


async def test_deleted_funcs_are_not_listed(api: Api) -> None:
    await api.publish()
    counts = api.ctx.keys.task_counts()
    await api.ctx.redis.hincrby(counts, f"demo__basic.plus{SEP}success", 3)
    await api.ctx.redis.hincrby(counts, f"gone__script.f{SEP}success", 5)
    await api.ctx.redis.hincrby(api.ctx.keys.task_durations(), f"gone__script.f{SEP}sum", 1)
    _, text, _ = await api.call("GET", "/metrics", admin=False)
    assert 'fluxfunc_tasks_total{func="demo__basic.plus",status="success"} 3.0' in text
    assert "gone__script" not in text
    assert not [f for f in await api.ctx.redis.hkeys(counts) if b"gone__script" in f]
    assert await api.ctx.redis.hkeys(api.ctx.keys.task_durations()) == []


async def test_metrics_token(aiohttp_client: Callable[..., Awaitable[TestClient]],
                             make_settings: Callable[..., Settings]) -> None:
    token = "metrics-" + "x" * 24
    client = await aiohttp_client(create_app(make_settings(server={"metrics_token": token})))
    assert client.app is not None and client.app[CTX].settings.server.metrics_token
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": token}):
        resp = await client.get("/metrics", headers=headers)
        assert resp.status == 401, headers
        assert token not in await resp.text()
    resp = await client.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert resp.status == 200 and "fluxfunc_http_requests_total" in await resp.text()


async def test_tasks_by_origin_and_subscription_messages(api: Api) -> None:
    """``fluxfunc_tasks_by_origin`` (what the workers' complete/dead scripts count) and
    ``fluxfunc_subscription_messages`` (what the Beat's pumps count), a deleted connector's
    counts left out and removed."""
    keys, redis = api.ctx.keys, api.ctx.redis
    await redis.hincrby(keys.task_origin_counts(), f"subscription{SEP}success", 7)
    await redis.hincrby(keys.task_origin_counts(), f"cronJob{SEP}failure", 2)
    await api.call("POST", "/api/v1/connectors", json={"id": "plant_mqtt", "type": "mqtt",
                                                       "skipTest": True})
    await redis.hincrby(keys.subscription_counts(), f"plant_mqtt{SEP}enqueued", 5)
    await redis.hincrby(keys.subscription_counts(), f"gone_mqtt{SEP}enqueued", 3)
    _, text, _ = await api.call("GET", "/metrics", admin=False)
    assert 'fluxfunc_tasks_by_origin_total{origin="subscription",status="success"} 7.0' in text
    assert 'fluxfunc_tasks_by_origin_total{origin="cronJob",status="failure"} 2.0' in text
    assert 'fluxfunc_subscription_messages_total{connector="plant_mqtt",outcome="enqueued"} 5.0' in text
    assert "gone_mqtt" not in text
    assert await redis.hkeys(keys.subscription_counts()) == [f"plant_mqtt{SEP}enqueued".encode()]
