"""What a subscription is, what a consumer hands on, and where it hands it.

A connector of a broker type may carry ``topicHandlers: [{topic, funcId, queue?, isDisabled?}]``
(DataFlux Func's field; ``queue`` is fluxfunc's: the task queue, else the func's). Each
enabled handler is one :class:`Subscription`; each message it receives is one
:class:`Delivery` put into the subscription's :class:`Inbox`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
from collections.abc import Callable
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fluxfunc_common.connectors.types import ConnectorType, StoredConnector
from fluxfunc_common.logs import get_logger

log = get_logger("beat.subscriptions")

BROKER_TYPES = frozenset({ConnectorType.REDIS, ConnectorType.MQTT, ConnectorType.AMQP,
                          ConnectorType.NATS})


class TopicHandler(BaseModel):
    """One entry of a connector's ``topicHandlers``."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)

    topic: str = Field(min_length=1)
    func_id: str = Field(alias="funcId", min_length=1)
    queue: str | None = None
    is_disabled: bool = Field(default=False, alias="isDisabled")
    durable: str | None = None  # nats: a JetStream durable consumer of this name (acked)


@dataclass(frozen=True)
class Subscription:
    """One consumer to run: a topic of one connector, handled by one func.

    ``key`` names it (the same handler of the same connector keeps its key across edits);
    ``fingerprint`` changes whenever anything it was started from changes (config, disabled,
    secrets), so the supervisor restarts it."""

    connector: StoredConnector
    handler: TopicHandler
    index: int

    @property
    def key(self) -> str:
        return f"{self.connector.id}#{self.index}#{self.handler.topic}#{self.handler.func_id}"

    @property
    def kind(self) -> ConnectorType:
        return self.connector.type

    @property
    def fingerprint(self) -> str:
        blob = json.dumps([self.connector.type.value, self.connector.config,
                           self.handler.model_dump()], sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()

    @property
    def client_id(self) -> str:
        """A fixed client id / consumer name per subscription (MQTT persistent session)."""
        digest = hashlib.sha256(self.key.encode()).hexdigest()[:12]
        return f"fluxfunc-sub-{self.connector.id[:32]}-{digest}"


def subscriptions_of(connector: StoredConnector) -> list[Subscription]:
    """The enabled subscriptions of one connector (none for a disabled one or a non-broker)."""
    if connector.is_disabled or connector.type not in BROKER_TYPES:
        return []
    raw = connector.config.get("topicHandlers")
    if not isinstance(raw, list):
        return []
    out = []
    for index, item in enumerate(raw):
        try:
            handler = TopicHandler.model_validate(item)
        except ValidationError as exc:
            log.warning("topic handler ignored", connector_id=connector.id, index=index,
                        error=str(exc))
            continue
        if not handler.is_disabled:
            out.append(Subscription(connector, handler, index))
    return out


@dataclass
class Delivery:
    """One message: its topic, its body and how to acknowledge it (None: the broker has no
    acknowledgement). ``ack`` may be called from the event loop thread; a consumer running its
    client on a thread makes it thread-safe. ``received`` is ``time.time()`` on arrival."""

    topic: str
    payload: bytes
    received: float
    ack: Callable[[], None] | None = None

    def message(self) -> str:
        """The body as the handler's ``message`` argument (UTF-8; undecodable bytes replaced)."""
        return self.payload.decode("utf-8", errors="replace")


@dataclass
class Inbox:
    """A bounded queue between a consumer and its pump: ``put`` waits while it is full, so a
    pump paused on a full task queue pauses the consumer too."""

    size: int = 1000
    queue: asyncio.Queue[Delivery] = field(init=False)

    def __post_init__(self) -> None:
        self.queue = asyncio.Queue(self.size)

    async def put(self, delivery: Delivery) -> None:
        await self.queue.put(delivery)

    def put_from_thread(self, delivery: Delivery, loop: asyncio.AbstractEventLoop,
                        stopping: threading.Event) -> None:
        """From a client library's own thread: hand ``delivery`` over, waiting while the inbox is
        full (the task queue is), until it is taken or ``stopping`` is set."""
        future = asyncio.run_coroutine_threadsafe(self.put(delivery), loop)
        while not stopping.is_set():
            try:
                future.result(timeout=0.5)
                return
            except FutureTimeout:
                continue
        future.cancel()
