"""The pump of one subscription: deliveries → tasks through the normal enqueue path, then acks.

It takes what the inbox holds (up to :data:`BATCH`), builds one envelope per message
(:func:`~fluxfunc_common.tasks.build_envelope`, origin ``subscription``, kwargs
``{topic, message}`` as DataFlux Func's topic handlers), enqueues them in one pipeline and only
then acknowledges them. While the target queue is at its hard limit
(:class:`~fluxfunc_common.errors.QueueFull`) it retries the batch every :data:`FULL_RETRY_SECONDS`
and takes nothing more: the inbox fills and the consumer stops reading from the broker. A
re-sent task id is a no-op, so a retried batch enqueues each message once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from fluxfunc_beat.subscriptions.model import Delivery, Inbox, Subscription
from fluxfunc_common import ids, subscriptionstats
from fluxfunc_common.envelope import Origin, TaskEnvelope
from fluxfunc_common.errors import QueueFull
from fluxfunc_common.lifecycle import sleep_or_stop
from fluxfunc_common.logs import get_logger
from fluxfunc_common.models.func import Func
from fluxfunc_common.settings import Settings
from fluxfunc_common.streams import StreamProtocol
from fluxfunc_common.subscriptionstats import Outcome
from fluxfunc_common.tasks import build_envelope

log = get_logger("beat.subscriptions")

BATCH = 500
FULL_RETRY_SECONDS = 0.2
ERROR_RETRY_SECONDS = 1.0


@dataclass
class PumpStats:
    enqueued: int = 0
    dropped: int = 0  # no such func: acknowledged and logged
    paused: int = 0  # rounds spent waiting on a full queue
    latencies: list[float] = field(default_factory=list)  # receive → enqueued, last batch only


class Pump:
    """Moves one subscription's deliveries onto its task queue (see the module docstring)."""

    def __init__(self, sub: Subscription, inbox: Inbox, streams: StreamProtocol, settings: Settings,
                 funcs: Callable[[str], Func | None]) -> None:
        self.sub, self.inbox, self.streams, self.settings = sub, inbox, streams, settings
        self.funcs = funcs
        self.stats = PumpStats()
        self._missing_logged = False

    async def run(self, halt: asyncio.Event) -> None:
        while not halt.is_set():
            batch = await self._take(halt)
            if batch:
                await self._deliver(batch, halt)

    async def _take(self, halt: asyncio.Event) -> list[Delivery]:
        queue = self.inbox.queue
        try:
            first = await asyncio.wait_for(queue.get(), timeout=0.5)
        except TimeoutError:
            return []
        batch = [first]
        while len(batch) < BATCH and not queue.empty():
            batch.append(queue.get_nowait())
        return batch

    def envelopes(self, batch: list[Delivery]) -> list[TaskEnvelope]:
        func = self.funcs(self.sub.handler.func_id)
        if func is None:
            if not self._missing_logged:
                log.warning("subscription message dropped: func not found",
                            connector_id=self.sub.connector.id, func_id=self.sub.handler.func_id)
                self._missing_logged = True
            return []
        self._missing_logged = False
        now = time.time()
        now_ms = int(now * 1000)
        return [build_envelope(func, {"topic": d.topic, "message": d.message()},
                               origin=Origin.SUBSCRIPTION, now=now, settings=self.settings.tasks,
                               origin_id=self.sub.connector.id, queue=self.sub.handler.queue,
                               task_id=ids.task_id(now_ms))
                for d in batch]

    async def _deliver(self, batch: list[Delivery], halt: asyncio.Event) -> None:
        envs = self.envelopes(batch)
        if not envs:
            self.stats.dropped += len(batch)
            await self._count(Outcome.DROPPED, len(batch))
        while envs:
            try:
                await self.streams.enqueue_many(envs, max_len=self.settings.redis.queue_max_len)
                break
            except QueueFull:
                self.stats.paused += 1
                wait = FULL_RETRY_SECONDS
            except Exception as exc:  # Redis trouble: keep the batch, unacknowledged
                log.warning("subscription enqueue failed", connector_id=self.sub.connector.id,
                            error=repr(exc))
                wait = ERROR_RETRY_SECONDS
            if await sleep_or_stop(halt, wait):
                return  # leading ended: not acknowledged, the broker redelivers where it can
        done = time.time()
        self.stats.enqueued += len(envs)
        self.stats.latencies = [done - d.received for d in batch]
        await self._count(Outcome.ENQUEUED, len(envs))
        for d in batch:
            if d.ack is not None:
                try:
                    d.ack()
                except Exception as exc:  # the connection went away: the broker redelivers
                    log.info("subscription ack failed", connector_id=self.sub.connector.id,
                             error=repr(exc))
                    break

    async def _count(self, outcome: Outcome, n: int) -> None:
        """The deployment-wide message counter of the connector (``/metrics``); a Redis error
        loses the count, never the messages."""
        try:
            await subscriptionstats.add(self.streams.redis, self.streams.keys,
                                        self.sub.connector.id, outcome, n)
        except Exception as exc:
            log.warning("subscription message count failed", connector_id=self.sub.connector.id,
                        error=repr(exc))
