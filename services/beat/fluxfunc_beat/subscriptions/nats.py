"""NATS consumer.

Plain subject subscription: at most once (core NATS keeps nothing for an absent subscriber).
With ``durable`` in the topic handler: a JetStream durable pull consumer of that name on the
stream holding the subject, each message acknowledged after its task is enqueued: at least
once (unacknowledged messages are redelivered after the consumer's ack wait).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fluxfunc_beat.subscriptions.model import Delivery, Inbox, Subscription
from fluxfunc_common.connectors.types import ConnectorConfig
from fluxfunc_common.logs import get_logger

log = get_logger("beat.subscriptions")

FETCH = 500


async def consume(sub: Subscription, config: ConnectorConfig, inbox: Inbox,
                  halt: asyncio.Event) -> None:
    import nats

    servers = [s if "://" in s else f"nats://{s}" for s in config.server_list("127.0.0.1:4222")]
    options: dict[str, Any] = {"servers": servers, "connect_timeout": config.connect_timeout(),
                               "allow_reconnect": True, "max_reconnect_attempts": -1}
    if config.token:
        options["token"] = config.token
    elif config.login() or config.password:
        options["user"], options["password"] = config.login(), config.password
    nc = await nats.connect(**options)
    log.info("subscription started", kind="nats", connector_id=sub.connector.id,
             topic=sub.handler.topic, durable=sub.handler.durable)
    try:
        if sub.handler.durable:
            await _durable(nc, sub, inbox, halt)
        else:
            await _plain(nc, sub, inbox, halt)
    finally:
        await nc.close()


async def _plain(nc: Any, sub: Subscription, inbox: Inbox, halt: asyncio.Event) -> None:
    async def on_message(msg: Any) -> None:
        await inbox.put(Delivery(msg.subject, msg.data, time.time()))

    await nc.subscribe(sub.handler.topic, cb=on_message)
    await halt.wait()


async def _durable(nc: Any, sub: Subscription, inbox: Inbox, halt: asyncio.Event) -> None:
    from nats.errors import TimeoutError as NatsTimeout

    loop = asyncio.get_running_loop()
    js = nc.jetstream()
    psub = await js.pull_subscribe(sub.handler.topic, durable=sub.handler.durable)
    acking: set[asyncio.Task[None]] = set()
    while not halt.is_set():
        try:
            msgs = await psub.fetch(FETCH, timeout=0.5)
        except (NatsTimeout, TimeoutError):
            continue
        for msg in msgs:
            def ack(m: Any = msg) -> None:
                task = loop.create_task(m.ack())
                acking.add(task)
                task.add_done_callback(acking.discard)

            await inbox.put(Delivery(msg.subject, msg.data, time.time(), ack))
