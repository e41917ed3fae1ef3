"""Subscriptions run by an in-process Beat leader: a Redis pub/sub message becomes a task with
origin ``subscription``; a disabled connector's consumer stops and a changed one restarts
within 2 s; MQTT and AMQP messages all become tasks, also across a full task queue (the
consumer pauses, nothing is dropped)."""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter
from collections.abc import Callable
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
from tests.beat.brokers import (
    AMQP_PORT,
    MQTT_PORT,
    delete_amqp_queue,
    publish_amqp,
    publish_mqtt,
    queued_tasks,
)
from tests.beat.conftest import func_row
from tests.conftest import RedisServer
from tests.processes import wait_for

from fluxfunc_common.connectors.types import ConnectorType, StoredConnector
from fluxfunc_common.redisconn import RedisClients
from fluxfunc_common.settings import Settings
from fluxfunc_common.store import Entity, Store

FUNC_ID = "demo__sub.handle"
CHANGE_WITHIN = 3.0  # the promise is 2 s; the deadline leaves room for a loaded machine


async def _connector(store: Store, clients: RedisClients, kind: ConnectorType,
                     config: dict[str, object], handlers: list[dict[str, object]]) -> StoredConnector:
    if await store.find(Entity.FUNC, FUNC_ID) is None:
        await store.create(Entity.FUNC, func_row(FUNC_ID))
    saved = await store.create_connector(StoredConnector(
        id=f"sub_{secrets.token_hex(4)}", type=kind, config={**config, "topicHandlers": handlers}))
    await clients.main.incr(clients.keys.connectors_version())
    return saved


async def _replace(store: Store, clients: RedisClients, connector: StoredConnector,
                   **changes: Any) -> None:
    await store.replace_connector(connector.model_copy(update=changes))
    await clients.main.incr(clients.keys.connectors_version())


async def _subscribers(redis: aioredis.Redis, channel: str) -> int:
    return int(dict(await redis.pubsub_numsub(channel)).get(channel.encode(), 0))


@pytest.mark.timeout(60)
async def test_redis_message_becomes_a_task_and_changes_apply(
        clients: RedisClients, store: Store, make_settings: Callable[..., Settings],
        run_beat: Callable[..., Any], redis_server: RedisServer) -> None:
    channel = f"sub-test-{secrets.token_hex(4)}"
    broker = {"host": "127.0.0.1", "port": redis_server.port}
    connector = await _connector(store, clients, ConnectorType.REDIS, broker,
                                 [{"topic": channel, "funcId": FUNC_ID}])
    beat = await run_beat(make_settings())
    await beat.leading()
    redis = clients.main
    await wait_for(lambda: _subscribers(redis, channel), 10, what="subscribed")
    await redis.publish(channel, "hello")
    tasks = await wait_for(lambda: queued_tasks(redis, clients.keys), 10, what="a task")
    assert len(tasks) == 1
    task = tasks[0]
    assert (task["origin"], task["originId"], task["funcId"]) == ("subscription", connector.id, FUNC_ID)
    assert task["kwargs"] == {"topic": channel, "message": "hello"}

    other = channel + "-b"  # a changed handler: the consumer restarts on the new channel
    changed = connector.model_copy(update={"config": {**connector.config, "topicHandlers": [
        {"topic": other, "funcId": FUNC_ID, "queue": "subs"}]}})
    await _replace(store, clients, changed, config=changed.config)
    await wait_for(lambda: _subscribers(redis, other), CHANGE_WITHIN, what="restarted")
    assert await _subscribers(redis, channel) == 0
    await redis.publish(other, "again")
    moved = await wait_for(lambda: queued_tasks(redis, clients.keys, "subs"), 10, what="a task")
    assert moved[0]["kwargs"] == {"topic": other, "message": "again"}

    await _replace(store, clients, changed, is_disabled=True)

    async def stopped() -> bool:
        return await _subscribers(redis, other) == 0

    await wait_for(stopped, CHANGE_WITHIN, what="stopped")


@pytest.mark.timeout(120)
async def test_mqtt_messages_all_become_tasks_across_a_full_queue(
        clients: RedisClients, store: Store, make_settings: Callable[..., Settings],
        run_beat: Callable[..., Any]) -> None:
    """QoS 1 with acks after enqueue: with the queue capped at 50 the consumer pauses; each
    time the test drains the queue more come; in the end every message is a task."""
    topic = f"fluxfunc-test/{secrets.token_hex(6)}"
    await _connector(store, clients, ConnectorType.MQTT, {"host": "127.0.0.1", "port": MQTT_PORT},
                     [{"topic": topic, "funcId": FUNC_ID}])
    beat = await run_beat(make_settings(redis={"queue_max_len": 50}))
    await beat.leading()

    async def live() -> bool:  # the persistent session exists once a probe came through
        await asyncio.to_thread(publish_mqtt, topic, [b"probe"])
        await asyncio.sleep(0.2)
        return any(t["kwargs"]["message"] == "probe"
                   for t in await queued_tasks(clients.main, clients.keys))

    await wait_for(live, 20, 0.3, what="the MQTT subscription live")
    total = 300
    await asyncio.to_thread(publish_mqtt, topic, (f"{i}".encode() for i in range(total)))
    seen = await _drain_until(clients, total)
    assert set(Counter(seen)) - {"probe"} == {str(i) for i in range(total)}


@pytest.mark.timeout(120)
async def test_amqp_messages_all_become_tasks(
        clients: RedisClients, store: Store, make_settings: Callable[..., Settings],
        run_beat: Callable[..., Any]) -> None:
    queue = f"fluxfunc-test-{secrets.token_hex(6)}"
    try:
        total = 300
        await asyncio.to_thread(publish_amqp, queue, (f"{i}".encode() for i in range(total)))
        await _connector(store, clients, ConnectorType.AMQP,
                         {"host": "127.0.0.1", "port": AMQP_PORT, "user": "guest",
                          "password": "guest"}, [{"topic": queue, "funcId": FUNC_ID}])
        beat = await run_beat(make_settings(redis={"queue_max_len": 50}))
        await beat.leading()
        seen = await _drain_until(clients, total)
        assert set(Counter(seen)) == {str(i) for i in range(total)}
    finally:
        await asyncio.to_thread(delete_amqp_queue, queue)


async def _drain_until(clients: RedisClients, total: int) -> list[str]:
    """Take the tasks off the default queue (as a worker would) until ``total`` distinct
    messages were seen; their messages in arrival order."""
    seen: list[str] = []

    async def drained() -> bool:
        stream = clients.keys.queue("default")
        entries = await clients.main.xrange(stream)
        if entries:
            await clients.main.xdel(stream, *[entry_id for entry_id, _ in entries])
            seen.extend(str(orjson.loads(f[b"body"])["kwargs"]["message"]) for _, f in entries)
        return len(set(seen) - {"probe"}) >= total

    await wait_for(drained, 60, 0.1, what=f"{total} messages as tasks")
    return seen
