"""The supervisor: runs one consumer and one pump per enabled subscription while leading.

Every :data:`POLL_SECONDS` it reads ``connectors:version`` (bumped by the API on every
connector change, :meth:`~fluxfunc_common.keys.Keys.connectors_version`); when it moved, or
every :data:`FULL_RELOAD_SECONDS` anyway, it lists the connectors and starts what is new,
stops what is gone (connector deleted or disabled, handler removed or disabled) and restarts
what changed (any change of the connector's type or config, secrets included). A consumer that
fails (broker unreachable, refused) is started again after a backoff of 1 s doubling to 30 s.
Everything stops when leading ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import redis.asyncio as aioredis

from fluxfunc_beat.subscriptions import amqp, mqtt, nats, redispubsub
from fluxfunc_beat.subscriptions.model import Inbox, Subscription, subscriptions_of
from fluxfunc_beat.subscriptions.pump import Pump
from fluxfunc_common.connectors.sealing import unseal
from fluxfunc_common.connectors.types import ConnectorConfig, ConnectorType
from fluxfunc_common.crypto import CIPHER_SUFFIX, Cipher, cipher_for
from fluxfunc_common.keys import Keys
from fluxfunc_common.lifecycle import sleep_or_stop
from fluxfunc_common.logs import get_logger
from fluxfunc_common.models.func import Func
from fluxfunc_common.settings import Settings
from fluxfunc_common.store import Store
from fluxfunc_common.streams import StreamProtocol

log = get_logger("beat.subscriptions")

POLL_SECONDS = 0.5
FULL_RELOAD_SECONDS = 30.0
BACKOFF_FIRST, BACKOFF_MAX = 1.0, 30.0
STOP_GRACE_SECONDS = 3.0
SUMMARY_SECONDS = 60.0

Consumer = Callable[[Subscription, ConnectorConfig, Inbox, asyncio.Event], Awaitable[None]]
CONSUMERS: dict[ConnectorType, Consumer] = {
    ConnectorType.MQTT: mqtt.consume, ConnectorType.AMQP: amqp.consume,
    ConnectorType.REDIS: redispubsub.consume, ConnectorType.NATS: nats.consume,
}


@dataclass
class Running:
    sub: Subscription
    halt: asyncio.Event
    task: asyncio.Task[None] | None = None
    pump: Pump | None = None


class Supervisor:
    """Keeps the running consumers equal to the enabled subscriptions (module docstring)."""

    def __init__(self, store: Store, redis: aioredis.Redis, keys: Keys, streams: StreamProtocol,
                 settings: Settings, funcs: Callable[[str], Func | None]) -> None:
        self.store, self.redis, self.keys = store, redis, keys
        self.streams, self.settings, self.funcs = streams, settings, funcs
        self.running: dict[str, Running] = {}
        self._version: object = None
        self._loaded_at = 0.0
        self._cipher: Cipher | None = None
        self._reported = 0

    async def run(self, halt: asyncio.Event) -> None:
        summary_at = time.monotonic() + SUMMARY_SECONDS
        try:
            while not halt.is_set():
                try:
                    await self.refresh(halt)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # store/Redis trouble: keep what runs, try again
                    log.warning("subscriptions refresh failed", error=repr(exc))
                if time.monotonic() >= summary_at:
                    summary_at = time.monotonic() + SUMMARY_SECONDS
                    self.summary()
                await sleep_or_stop(halt, POLL_SECONDS)
        finally:
            self.summary()
            await self.stop_all()

    def summary(self) -> None:
        """One line a minute: messages enqueued, dropped and rounds paused on a full queue."""
        pumps = [r.pump for r in self.running.values() if r.pump is not None]
        counts = {"enqueued": sum(p.stats.enqueued for p in pumps),
                  "dropped": sum(p.stats.dropped for p in pumps),
                  "paused": sum(p.stats.paused for p in pumps)}
        if pumps and (counts["enqueued"] != self._reported or counts["dropped"] or counts["paused"]):
            self._reported = counts["enqueued"]
            log.info("subscription messages", subscriptions=len(self.running), **counts)

    async def refresh(self, halt: asyncio.Event) -> None:
        version = await self.redis.get(self.keys.connectors_version())
        stale = time.monotonic() - self._loaded_at > FULL_RELOAD_SECONDS
        if version == self._version and not stale:
            return
        connectors = await self.store.list_connectors()
        self._version, self._loaded_at = version, time.monotonic()
        wanted = {s.key: s for c in connectors for s in subscriptions_of(c)}
        gone = [key for key, run in self.running.items()
                if (sub := wanted.get(key)) is None or sub.fingerprint != run.sub.fingerprint
                or (run.task is not None and run.task.done())]
        if gone:
            await self._stop(*gone)
        for key, sub in wanted.items():
            if key not in self.running and not halt.is_set():
                self._start(sub, halt)

    def _start(self, sub: Subscription, leader_halt: asyncio.Event) -> None:
        run = Running(sub, asyncio.Event())
        run.task = asyncio.create_task(self._keep(run, leader_halt))
        self.running[sub.key] = run

    async def _stop(self, *keys: str) -> None:
        """Stop these subscriptions together: each gets :data:`STOP_GRACE_SECONDS` to close
        its connection, then it is cancelled."""
        runs = [self.running.pop(key) for key in keys]
        for run in runs:
            run.halt.set()
        tasks = [run.task for run in runs if run.task is not None]
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=STOP_GRACE_SECONDS)
            for task in late:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        for run in runs:
            log.info("subscription stopped", connector_id=run.sub.connector.id,
                     topic=run.sub.handler.topic)

    async def stop_all(self) -> None:
        if self.running:
            await self._stop(*self.running)

    async def _keep(self, run: Running, leader_halt: asyncio.Event) -> None:
        """Run the subscription until it is stopped or leading ends; restart it on failure."""
        backoff = BACKOFF_FIRST
        sub = run.sub
        while not (run.halt.is_set() or leader_halt.is_set()):
            try:
                await self._once(run, leader_halt)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("subscription failed", connector_id=sub.connector.id,
                            topic=sub.handler.topic, kind=sub.kind.value, error=repr(exc),
                            retry_in=backoff)
            if await _sleep_either(run.halt, leader_halt, backoff):
                return
            backoff = min(backoff * 2, BACKOFF_MAX)

    async def _once(self, run: Running, leader_halt: asyncio.Event) -> None:
        sub = run.sub
        config = self._config(sub)
        inbox = Inbox()
        halt = asyncio.Event()
        watcher = asyncio.create_task(_relay(halt, run.halt, leader_halt))
        run.pump = Pump(sub, inbox, self.streams, self.settings, self.funcs)
        pump = asyncio.create_task(run.pump.run(halt))
        try:
            await CONSUMERS[sub.kind](sub, config, inbox, halt)
        finally:
            halt.set()  # what the pump holds unacknowledged is delivered again where it can be
            watcher.cancel()
            await asyncio.gather(pump, watcher, return_exceptions=True)

    def _config(self, sub: Subscription) -> ConnectorConfig:
        """The connector's config with its secrets opened (the deployment secret is needed
        only when it has some)."""
        stored = sub.connector.config
        if not any(k.endswith(CIPHER_SUFFIX) for k in stored):
            return ConnectorConfig.model_validate(stored)
        if self._cipher is None:
            self._cipher = cipher_for(self.settings)
        return unseal(stored, self._cipher)


async def _relay(into: asyncio.Event, *sources: asyncio.Event) -> None:
    """Set ``into`` as soon as any of ``sources`` is set."""
    waits = [asyncio.create_task(s.wait()) for s in sources]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        into.set()
    finally:
        for w in waits:
            w.cancel()


async def _sleep_either(a: asyncio.Event, b: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds`` unless ``a`` or ``b`` is set first; True when one is set."""
    either = asyncio.Event()
    relay = asyncio.create_task(_relay(either, a, b))
    try:
        return bool(await sleep_or_stop(either, seconds))
    finally:
        relay.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await relay
