"""MQTT consumer: at least once.

paho-mqtt (2.x) with its network loop on a thread; QoS 1, a persistent session
(``clean_session=False``) under a fixed client id per subscription, and manual
acknowledgement: the PUBACK of a message is sent only after its task is enqueued. A message
not acknowledged when the consumer dies (a SIGKILLed leader) stays in the broker's session and
is delivered again to the next leader's consumer, which connects with the same client id.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from fluxfunc_beat.subscriptions.model import Delivery, Inbox, Subscription
from fluxfunc_common.connectors.types import ConnectorConfig
from fluxfunc_common.logs import get_logger

log = get_logger("beat.subscriptions")


async def consume(sub: Subscription, config: ConnectorConfig, inbox: Inbox,
                  halt: asyncio.Event) -> None:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    loop = asyncio.get_running_loop()
    stopping = threading.Event()
    failed: asyncio.Future[str] = loop.create_future()
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=sub.client_id,
                         clean_session=False, manual_ack=True)
    if config.login() or config.password:
        client.username_pw_set(config.login(), config.password)
    if config.use_ssl:
        client.tls_set()
    client.max_inflight_messages_set(1000)
    topic = sub.handler.topic

    def on_connect(c: Any, _u: Any, _flags: Any, reason: Any, _props: Any) -> None:
        if reason.is_failure:
            loop.call_soon_threadsafe(_fail, failed, f"connect refused: {reason}")
            return
        c.subscribe(topic, qos=1)

    def on_message(c: Any, _u: Any, msg: Any) -> None:
        mid, qos = msg.mid, msg.qos

        def ack() -> None:
            if qos > 0:
                c.ack(mid, qos)

        # waits while the inbox is full (the task queue is): no PUBACK, the broker keeps it
        inbox.put_from_thread(Delivery(msg.topic, bytes(msg.payload), time.time(), ack), loop, stopping)

    client.on_connect = on_connect
    client.on_message = on_message
    client.reconnect_delay_set(1, 5)
    await asyncio.to_thread(client.connect, config.host or "127.0.0.1", config.port or 1883,
                            config.keepalive or 60)
    client.loop_start()
    log.info("subscription started", kind="mqtt", connector_id=sub.connector.id, topic=topic)
    try:
        halted: asyncio.Future[Any] = asyncio.ensure_future(halt.wait())
        waits: list[asyncio.Future[Any]] = [halted, failed]
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        halted.cancel()
        if failed.done():
            raise ConnectionError(f"mqtt subscription {sub.key}: {failed.result()}")
    finally:
        stopping.set()
        await asyncio.to_thread(_close, client)


def _fail(future: asyncio.Future[str], why: str) -> None:
    if not future.done():
        future.set_result(why)


def _close(client: Any) -> None:
    client.disconnect()
    client.loop_stop()
