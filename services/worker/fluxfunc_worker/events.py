"""The ``events`` pub/sub channel as the worker hears it (docs/internals.md, Notifications).

``{"type": "cancel", "taskId": …}`` stops the child running that task here, if any;
``{"type": "scriptPublished"|"scriptDeleted", "scriptId": …}`` makes the published-code cache
re-read ``scripts_version`` (and the change log naming the script) at once;
``{"type": "envVariableChanged", "id": …}`` drops the worker's
cached value of that env variable (children then see the change: :mod:`~fluxfunc_worker.envwatch`).
Pub/sub is at-most-once, so none depends on it alone: the cancel flag key is checked before
every start, the version counter is polled, and a cached env value lives one second.

The listener uses a short ``get_message`` timeout and a flag to stop (never a cancelled
blocking read), and re-subscribes after a connection error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import redis.asyncio as aioredis

from fluxfunc_common.keys import Keys
from fluxfunc_common.logs import get_logger

log = get_logger("worker.events")

READ_TIMEOUT = 0.5
RECONNECT_DELAY = 1.0


class EventListener:
    """Dispatches ``events`` messages to the worker's handlers."""

    def __init__(self, redis: aioredis.Redis, keys: Keys, *, on_cancel: Callable[[str], None],
                 on_publish: Callable[[], None], on_env: Callable[[str | None], None] | None = None) -> None:
        self.redis = redis
        self.channel = keys.events()
        self.on_cancel = on_cancel
        self.on_publish = on_publish
        self.on_env = on_env
        self.subscribed = asyncio.Event()

    def dispatch(self, data: Any) -> None:
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            return
        if not isinstance(event, dict):
            return
        kind = event.get("type")
        if kind == "cancel" and event.get("taskId"):
            self.on_cancel(str(event["taskId"]))
        elif kind in ("scriptPublished", "scriptDeleted"):
            self.on_publish()
        elif kind == "envVariableChanged" and self.on_env is not None:
            self.on_env(str(event["id"]) if event.get("id") else None)

    async def run(self, stop: asyncio.Event) -> None:
        """Listen until ``stop``."""
        while not stop.is_set():
            pubsub = self.redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                self.subscribed.set()
                while not stop.is_set():
                    message = await pubsub.get_message(timeout=READ_TIMEOUT)
                    if message and message.get("type") == "message":
                        self.dispatch(message["data"])
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.subscribed.clear()
                log.warning("events channel lost; re-subscribing", error=str(exc))
                await asyncio.sleep(RECONNECT_DELAY)
            finally:
                # Through a typed alias: redis-py types PubSub.aclose from 8.2 on, not before.
                close: Callable[[], Awaitable[None]] = pubsub.aclose
                await close()
