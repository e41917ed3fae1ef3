"""The pump: deliveries become tasks (origin ``subscription``) and are acknowledged only after
they are enqueued; on a full queue it waits instead of dropping; a missing func is dropped;
both are counted per connector (``fluxfunc_subscription_messages``)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from tests.beat.brokers import queued_tasks
from tests.beat.conftest import func_row
from tests.processes import wait_for

from fluxfunc_beat.subscriptions import subscriptions_of
from fluxfunc_beat.subscriptions.model import Delivery, Inbox, Subscription
from fluxfunc_beat.subscriptions.pump import Pump
from fluxfunc_common import subscriptionstats
from fluxfunc_common.connectors.types import ConnectorType, StoredConnector
from fluxfunc_common.models.func import Func
from fluxfunc_common.redisconn import RedisClients
from fluxfunc_common.settings import Settings
from fluxfunc_common.streams import StreamProtocol

FUNC = Func.from_row(func_row("demo__sub.handle"))


def _sub(queue: str | None = None) -> Subscription:
    (sub,) = subscriptions_of(StoredConnector(id="c1", type=ConnectorType.MQTT, config={
        "topicHandlers": [{"topic": "t/#", "funcId": FUNC.id, "queue": queue}]}))
    return sub


Running = tuple[asyncio.Event, "asyncio.Task[None]"]


async def _run(pump: Pump, inbox: Inbox, deliveries: list[Delivery]) -> Running:
    for d in deliveries:
        await inbox.put(d)
    halt = asyncio.Event()
    return halt, asyncio.create_task(pump.run(halt))


async def test_deliveries_become_tasks_then_are_acked(
        clients: RedisClients, make_settings: Callable[..., Settings]) -> None:
    acked: list[int] = []
    inbox = Inbox()
    pump = Pump(_sub("subs"), inbox, StreamProtocol(clients.main, clients.keys), make_settings(),
                lambda func_id: FUNC if func_id == FUNC.id else None)
    deliveries = [Delivery(f"t/{i}", f"m{i}".encode(), time.time(), lambda i=i: acked.append(i))
                  for i in range(5)]
    halt, task = await _run(pump, inbox, deliveries)

    async def all_acked() -> bool:
        return len(acked) == 5

    await wait_for(all_acked, 10)
    halt.set()
    await task
    tasks = await queued_tasks(clients.main, clients.keys, "subs")
    assert [t["kwargs"] for t in tasks] == [{"topic": f"t/{i}", "message": f"m{i}"} for i in range(5)]
    assert {(t["origin"], t["originId"], t["funcId"]) for t in tasks} == {("subscription", "c1", FUNC.id)}
    # the connector's message counter of /metrics
    assert await subscriptionstats.read(clients.main, clients.keys) == {("c1", "enqueued"): 5}


async def test_a_full_queue_pauses_without_acking_or_dropping(
        clients: RedisClients, make_settings: Callable[..., Settings]) -> None:
    acked: list[int] = []
    inbox = Inbox()
    pump = Pump(_sub(), inbox, StreamProtocol(clients.main, clients.keys),
                make_settings(redis={"queue_max_len": 3}), lambda _: FUNC)
    halt, task = await _run(pump, inbox, [Delivery("t", b"first", time.time(), lambda: acked.append(0))])

    async def first_acked() -> bool:
        return acked == [0]

    await wait_for(first_acked, 10)
    stream = clients.keys.queue("default")
    await clients.main.xadd(stream, {"body": b"{}"})
    await clients.main.xadd(stream, {"body": b"{}"})  # now at the limit (3)
    for i in (1, 2):
        await inbox.put(Delivery("t", f"m{i}".encode(), time.time(), lambda i=i: acked.append(i)))

    async def paused() -> bool:
        return pump.stats.paused >= 2

    await wait_for(paused, 10)
    assert acked == [0]  # documented: nothing acknowledged while the queue is full
    await clients.main.xtrim(stream, maxlen=0)
    await wait_for(lambda: _equals(acked, [0, 1, 2]), 10)
    halt.set()
    await task
    assert pump.stats.dropped == 0


async def test_a_missing_func_drops_and_acks(
        clients: RedisClients, make_settings: Callable[..., Settings]) -> None:
    acked: list[int] = []
    inbox = Inbox()
    pump = Pump(_sub(), inbox, StreamProtocol(clients.main, clients.keys), make_settings(), lambda _: None)
    halt, task = await _run(pump, inbox, [Delivery("t", b"x", time.time(), lambda: acked.append(1))])
    await wait_for(lambda: _equals(acked, [1]), 10)
    halt.set()
    await task
    assert pump.stats.dropped == 1
    assert await queued_tasks(clients.main, clients.keys) == []
    assert await subscriptionstats.read(clients.main, clients.keys) == {("c1", "dropped"): 1}


async def _equals(got: list[int], want: list[int]) -> bool:
    return got == want
