"""Redis pub/sub consumer: at most once.

Redis pub/sub keeps nothing for a subscriber that is not connected: a message published while
no leader is subscribed (a leader change, a reconnect) is lost. A topic holding ``*``, ``?``
or ``[`` is a pattern (``PSUBSCRIBE``).
"""

from __future__ import annotations

import asyncio
import time

from fluxfunc_beat.subscriptions.model import Delivery, Inbox, Subscription
from fluxfunc_common.connectors.types import ConnectorConfig
from fluxfunc_common.logs import get_logger

log = get_logger("beat.subscriptions")


async def consume(sub: Subscription, config: ConnectorConfig, inbox: Inbox,
                  halt: asyncio.Event) -> None:
    import redis.asyncio as aioredis

    db = config.db if config.db is not None else int(config.database or 0)
    client = aioredis.Redis(host=config.host or "127.0.0.1", port=config.port or 6379, db=db,
                            username=config.login(), password=config.password or None,
                            ssl=bool(config.use_ssl),
                            socket_connect_timeout=config.connect_timeout())
    topic = sub.handler.topic
    pubsub = client.pubsub(ignore_subscribe_messages=True)
    try:
        if any(c in topic for c in "*?["):
            await pubsub.psubscribe(topic)
        else:
            await pubsub.subscribe(topic)
        log.info("subscription started", kind="redis", connector_id=sub.connector.id, topic=topic)
        while not halt.is_set():
            msg = await pubsub.get_message(timeout=0.5)
            if msg is None:
                continue
            channel, data = msg["channel"], msg["data"]
            payload = data if isinstance(data, bytes) else str(data).encode()
            name = channel.decode() if isinstance(channel, bytes) else str(channel)
            await inbox.put(Delivery(name, payload, time.time()))
    finally:
        await pubsub.aclose()
        await client.aclose()
