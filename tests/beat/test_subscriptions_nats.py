"""NATS subscriptions run by an in-process Beat leader (the local nats-server, JetStream on):
a plain subject and a JetStream durable consumer both turn messages into tasks."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from typing import Any

import pytest
from tests.beat.brokers import queued_tasks
from tests.beat.conftest import func_row
from tests.processes import wait_for

from fluxfunc_common.connectors.types import ConnectorType, StoredConnector
from fluxfunc_common.redisconn import RedisClients
from fluxfunc_common.settings import Settings
from fluxfunc_common.store import Entity, Store

FUNC_ID = "demo__sub.handle"
NATS = "127.0.0.1:4222"


async def _nats() -> Any:
    import nats

    try:
        return await nats.connect(f"nats://{NATS}", connect_timeout=2, allow_reconnect=False)
    except Exception as exc:  # no local nats-server: nothing to test against
        pytest.skip(f"no nats-server at {NATS}: {exc!r}")


async def _messages(clients: RedisClients) -> set[str]:
    return {str(t["kwargs"]["message"]) for t in await queued_tasks(clients.main, clients.keys)}


@pytest.mark.timeout(60)
async def test_plain_and_durable_nats_subscriptions(
        clients: RedisClients, store: Store, make_settings: Callable[..., Settings],
        run_beat: Callable[..., Any]) -> None:
    nc = await _nats()
    tag = secrets.token_hex(5)
    plain, durable, stream = f"fluxfunc.test.{tag}.plain", f"fluxfunc.test.{tag}.js", f"FLUXFUNC_TEST_{tag}"
    js = nc.jetstream()
    await js.add_stream(name=stream, subjects=[durable])
    try:
        await store.create(Entity.FUNC, func_row(FUNC_ID))
        await store.create_connector(StoredConnector(id=f"nats_{tag}", type=ConnectorType.NATS, config={
            "servers": NATS, "topicHandlers": [
                {"topic": plain, "funcId": FUNC_ID},
                {"topic": durable, "funcId": FUNC_ID, "durable": f"fluxfunc_{tag}"}]}))
        for i in range(20):  # stored by JetStream before anyone consumes: all become tasks
            await js.publish(durable, f"js{i}".encode())
        beat = await run_beat(make_settings())
        await beat.leading()

        async def plain_arrives() -> bool:  # at most once: publish until one is taken
            await nc.publish(plain, b"plain")
            await nc.flush()
            await asyncio.sleep(0.2)
            return "plain" in await _messages(clients)

        await wait_for(plain_arrives, 20, what="a plain NATS message as a task")

        async def all_durable() -> bool:
            return {f"js{i}" for i in range(20)} <= await _messages(clients)

        await wait_for(all_durable, 20, what="the JetStream messages as tasks")
    finally:
        await js.delete_stream(stream)
        await nc.close()
