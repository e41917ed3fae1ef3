"""AMQP consumer: at least once.

pika's blocking connection on a thread consumes the queue named by the topic (declared
durable when it does not exist) with manual acknowledgement and a prefetch window of
:data:`PREFETCH`; a message is acknowledged (``basic_ack``, scheduled onto the connection's
thread) only after its task is enqueued. Messages not acknowledged when the consumer dies go
back to the queue and are delivered to the next leader's consumer.
"""

from __future__ import annotations

import asyncio
import functools
import threading
import time
from typing import Any

from fluxfunc_beat.subscriptions.model import Delivery, Inbox, Subscription
from fluxfunc_common.connectors.clients import open_amqp
from fluxfunc_common.connectors.types import ConnectorConfig
from fluxfunc_common.logs import get_logger

log = get_logger("beat.subscriptions")

PREFETCH = 1000


async def consume(sub: Subscription, config: ConnectorConfig, inbox: Inbox,
                  halt: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    stopping = threading.Event()
    connection = await asyncio.to_thread(open_amqp, config)
    log.info("subscription started", kind="amqp", connector_id=sub.connector.id,
             topic=sub.handler.topic)
    worker = asyncio.ensure_future(asyncio.to_thread(_serve, connection, sub, inbox, loop, stopping))
    halted = asyncio.ensure_future(halt.wait())
    try:
        await asyncio.wait([worker, halted], return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.set()
        halted.cancel()
        await asyncio.gather(worker, return_exceptions=halt.is_set())


def _serve(connection: Any, sub: Subscription, inbox: Inbox, loop: asyncio.AbstractEventLoop,
           stopping: threading.Event) -> None:
    """The connection's thread: consume until ``stopping``, then close."""
    try:
        channel = connection.channel()
        queue = sub.handler.topic
        _declare(connection, channel, queue)
        channel = connection.channel() if channel.is_closed else channel
        channel.basic_qos(prefetch_count=PREFETCH)

        def on_message(ch: Any, method: Any, _props: Any, body: bytes) -> None:
            ack = functools.partial(connection.add_callback_threadsafe,
                                    functools.partial(ch.basic_ack, method.delivery_tag))
            inbox.put_from_thread(Delivery(method.routing_key or queue, body, time.time(), ack),
                                  loop, stopping)

        channel.basic_consume(queue, on_message, auto_ack=False)
        while not stopping.is_set():
            connection.process_data_events(time_limit=0.2)
    finally:
        if connection.is_open:
            connection.close()


def _declare(connection: Any, channel: Any, queue: str) -> None:
    """The queue as it is; declared durable when it does not exist."""
    import pika.exceptions

    try:
        channel.queue_declare(queue, passive=True)
    except pika.exceptions.ChannelClosedByBroker:
        connection.channel().queue_declare(queue, durable=True)
