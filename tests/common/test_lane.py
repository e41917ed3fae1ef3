"""The hot-path Redis lane against a real Redis: batches from concurrent callers answered in
order, error replies in place (NOSCRIPT as redis-py's NoScriptError), a dropped connection
failing what is on the wire and the next batch reconnecting, READONLY and a Sentinel failover
(the Sentinel set-up is the one of tests/common/test_sentinel.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from tests.common.test_sentinel import SERVICE, Node, _wait_replicated, sentinel_setup  # noqa: F401
from tests.common.test_sentinel import _settings as sentinel_settings

from fluxfunc_common.lane import CommandBatches, Lane, Pipelines, open_lane
from fluxfunc_common.redisconn import open_redis
from fluxfunc_common.settings import Settings


async def test_concurrent_batches_get_their_own_replies_in_order(
        make_settings: Callable[..., Settings]) -> None:
    async with open_redis(make_settings().redis) as clients:
        lane = Lane(clients.main)
        try:
            async def batch(i: int) -> list[object]:
                return await lane.execute([("SET", f"lane:{i}", i), ("GET", f"lane:{i}"),
                                           ("INCRBY", "lane:n", i)])

            replies = await asyncio.gather(*(batch(i) for i in range(50)))
            for i, (ok, value, _) in enumerate(replies):
                assert ok is not None and value == str(i).encode()
            assert int(await clients.main.get("lane:n")) == sum(range(50))
            assert lane.connects == 1 and lane.usable
        finally:
            await lane.close()


@pytest.mark.parametrize("variant", [Lane, Pipelines])
async def test_error_replies_stay_in_place(
        make_settings: Callable[..., Settings], variant: Callable[..., CommandBatches]) -> None:
    """The lane and its plain variant (redis-py pipelines) answer the same batch alike."""
    async with open_redis(make_settings().redis) as clients:
        lane = variant(clients.main)
        try:
            sha = await clients.main.script_load("return {1, 'two', {3}}")
            missing, bad, good, nested = await lane.execute([
                ("EVALSHA", "0" * 40, 0), ("LPUSH",), ("EVALSHA", sha, 0), ("EVAL", "return 7", 0)])
            assert isinstance(missing, NoScriptError)
            assert isinstance(bad, ResponseError) and not isinstance(bad, NoScriptError)
            assert good == [1, b"two", [3]] and nested == 7
        finally:
            await lane.close()


async def test_a_dropped_connection_fails_the_batch_and_the_next_one_reconnects(
        make_settings: Callable[..., Settings]) -> None:
    async with open_redis(make_settings().redis) as clients:
        lane = Lane(clients.main)
        try:
            await lane.execute([("CLIENT", "SETNAME", "fluxfunc-lane")])
            blocked = asyncio.create_task(lane.execute([("BLPOP", "lane:never", 5)]))
            await asyncio.sleep(0.1)
            await clients.main.client_kill_filter(_type="normal", skipme=True)  # every other client
            with pytest.raises(RedisConnectionError):
                await blocked
            assert await lane.execute([("PING",)]) == [b"PONG"]
            assert lane.connects == 2
        finally:
            await lane.close()


async def test_a_batch_without_reply_times_out(make_settings: Callable[..., Settings]) -> None:
    async with open_redis(make_settings().redis) as clients:
        lane = Lane(clients.main, timeout=0.2)
        try:
            with pytest.raises(Exception, match="no reply from Redis"):
                await lane.execute([("BLPOP", "lane:never", 2)])
            assert await lane.execute([("PING",)]) == [b"PONG"]
        finally:
            await lane.close()


async def test_a_readonly_reply_makes_the_next_batch_reconnect(
        make_settings: Callable[..., Settings]) -> None:
    """After a failover the old master answers READONLY: connect again (Sentinel then finds
    the new master) instead of failing on the same connection for ever."""
    async with open_redis(make_settings().redis) as clients:
        lane = Lane(clients.main)
        try:
            await clients.main.execute_command("REPLICAOF", "127.0.0.1", "1")  # a replica now
            try:
                (refused,) = await lane.execute([("SET", "lane:ro", 1)])
                assert isinstance(refused, ResponseError) and str(refused).startswith("READONLY")
            finally:
                await clients.main.execute_command("REPLICAOF", "NO", "ONE")
            assert await lane.execute([("SET", "lane:ro", 1)]) == [b"OK"]
            assert lane.connects == 2
        finally:
            await lane.close()


async def test_the_lane_follows_a_sentinel_failover(
        sentinel_setup: tuple[Node, Node, Node]) -> None:  # noqa: F811 (the imported fixture)
    """Through Sentinel the lane's connection reaches the primary; after a failover it ends up
    on the new one (a READONLY reply or a dropped connection makes it connect again)."""
    import redis.asyncio as aioredis

    primary, replica, sentinel = sentinel_setup
    async with open_redis(sentinel_settings(sentinel.port).redis) as clients:
        lane = Lane(clients.main)
        try:
            assert await lane.execute([("SET", "lane:f", 1)]) == [b"OK"]
            assert f"tcp_port:{primary.port}" in (await lane.execute([("INFO", "server")]))[0].decode()
            await _wait_replicated(replica.port, "lane:f")
            admin = aioredis.Redis(port=sentinel.port)
            old = aioredis.Redis(port=primary.port)
            try:
                await admin.execute_command("SENTINEL", "FAILOVER", SERVICE)
                deadline = time.monotonic() + 30
                while (await old.info("replication"))["role"] != "slave":
                    assert time.monotonic() < deadline, "Sentinel never demoted the old primary"
                    await asyncio.sleep(0.2)
            finally:
                await admin.aclose()
                await old.aclose()
            deadline = time.monotonic() + 20
            while True:
                try:
                    (reply,) = await lane.execute([("SET", "lane:f", 2)])
                except RedisConnectionError:
                    reply = None
                if reply == b"OK":
                    break
                assert time.monotonic() < deadline, f"still no primary: {reply!r}"
                await asyncio.sleep(0.2)
            assert f"tcp_port:{replica.port}" in (await lane.execute([("INFO", "server")]))[0].decode()
        finally:
            await lane.close()


async def test_the_switch_selects_the_plain_variant(
        make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch) -> None:
    async with open_redis(make_settings().redis) as clients:
        monkeypatch.delenv("FLUXFUNC_PLAIN_VARIANTS", raising=False)
        assert isinstance(open_lane(clients.main), Lane)
        assert isinstance(open_lane(clients.main, fast=False), Pipelines)
        monkeypatch.setenv("FLUXFUNC_PLAIN_VARIANTS", "1")
        plain = open_lane(clients.main)
        assert isinstance(plain, Pipelines)
        assert await plain.execute([("SET", "lane:p", 1), ("GET", "lane:p")]) == [True, b"1"]
        await plain.close()


class Opaque:
    """A connection whose internals are not the ones the lane drives (a future redis-py)."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    async def connect(self) -> None:
        await self._conn.connect()

    async def disconnect(self, nowait: bool = False) -> None:
        await self._conn.disconnect()


async def test_the_lane_falls_back_to_pipelines_when_its_precondition_fails(
        make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch) -> None:
    async with open_redis(make_settings().redis) as clients:
        pool = clients.main.connection_pool
        make = pool.make_connection
        monkeypatch.setattr(pool, "make_connection", lambda: Opaque(make()))
        lane = Lane(clients.main)
        try:
            assert await lane.execute([("SET", "lane:o", 1), ("GET", "lane:o")]) == [True, b"1"]
            assert not lane.usable and lane.connects == 0
            assert await lane.execute([("INCR", "lane:o")]) == [2]
        finally:
            await lane.close()
