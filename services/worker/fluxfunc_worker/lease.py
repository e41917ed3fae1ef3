"""Leases: the entries this worker holds, and the owner-checked renewal that keeps them.

A stream entry delivered to this consumer is *in flight* from the moment it is read until it
is completed, retried, dead-lettered or released. Every ``worker.heartbeat_interval`` the
:class:`LeaseKeeper` runs the ``touch`` script over all of them: an entry still ours gets
its PEL idle time reset (so no other worker's reclaim takes it); an entry that is no longer
ours (another worker reclaimed it after we stalled past the lease, so the lease token we hold is
not the stream's any more) is reported *lost* — the worker stops that run's child at once and
never completes it. After the whole worker was stopped (SIGSTOP) past its lease, the first
round after it resumes is the overdue one, so a stale child is signalled within one interval.
The same round refreshes the running markers
(``keys.running``, PX 2×lease) of started tasks so long tasks keep reading as ``running``,
and looks at their cancel flags: a cancel whose pub/sub event was missed still stops the run.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import redis.asyncio as aioredis

from fluxfunc_common.keys import Keys
from fluxfunc_common.streams import Delivery, StreamProtocol


@dataclass(eq=False)
class Running:
    """One in-flight entry and what happened to it so far."""

    delivery: Delivery
    start_time: float = field(default_factory=time.time)  # epoch s, when it was read
    started: float = field(default_factory=time.monotonic)
    lost: bool = False  # another worker owns the entry now: never complete it
    released: bool = False  # handed back at shutdown: never complete it
    cancel_requested: bool = False  # a cancel event arrived for it

    @property
    def key(self) -> tuple[str, str]:
        return self.delivery.queue, self.delivery.entry_id

    @property
    def task_id(self) -> str:
        return self.delivery.envelope.id

    @property
    def abandoned(self) -> bool:
        """Lost or released: the outcome of this run must not be written."""
        return self.lost or self.released


class Inflight:
    """Entries held by this consumer, by (queue, entry id) and by task id."""

    def __init__(self) -> None:
        self._by_entry: dict[tuple[str, str], Running] = {}
        self._by_task: dict[str, Running] = {}

    def __len__(self) -> int:
        return len(self._by_entry)

    def __iter__(self) -> Iterator[Running]:
        return iter(list(self._by_entry.values()))

    def __contains__(self, key: tuple[str, str]) -> bool:
        return key in self._by_entry

    def get(self, key: tuple[str, str]) -> Running | None:
        return self._by_entry.get(key)

    def add(self, delivery: Delivery) -> Running:
        running = Running(delivery)
        self._by_entry[running.key] = running
        self._by_task[running.task_id] = running
        return running

    def adopt_count(self, delivery: Delivery) -> bool:
        """A reclaim handed us an entry we already run (our own lease had lapsed): keep
        running it under the new delivery count and lease token. False when the entry is not
        ours here."""
        running = self._by_entry.get((delivery.queue, delivery.entry_id))
        if running is None:
            return False
        running.delivery = dataclasses.replace(running.delivery, count=delivery.count,
                                               lease=delivery.lease)
        running.lost = False
        return True

    def remove(self, running: Running) -> None:
        if self._by_entry.get(running.key) is running:
            del self._by_entry[running.key]
        if self._by_task.get(running.task_id) is running:
            del self._by_task[running.task_id]

    def by_task(self, task_id: str) -> Running | None:
        return self._by_task.get(task_id)


class LeaseKeeper:
    """Renews the leases of every in-flight entry; reports the ones lost."""

    def __init__(
        self,
        streams: StreamProtocol,
        redis: aioredis.Redis,
        keys: Keys,
        consumer: str,
        inflight: Inflight,
        *,
        marker_ttl_ms: int,
        on_lost: Callable[[Running], None],
        on_cancel: Callable[[Running], None],
    ) -> None:
        self.streams = streams
        self.redis = redis
        self.keys = keys
        self.consumer = consumer
        self.inflight = inflight
        self.marker_ttl_ms = marker_ttl_ms
        self.on_lost = on_lost
        self.on_cancel = on_cancel
        self.renewals = 0

    async def renew(self) -> None:
        """One round: touch every held entry, refresh running markers, report losses."""
        held = [r for r in self.inflight if not r.abandoned]
        if not held:
            return
        lost_ids = set(await self.streams.touch(self.consumer, [r.delivery for r in held]))
        kept = [r for r in held if r.delivery.entry_id not in lost_ids]
        async with self.redis.pipeline(transaction=False) as pipe:
            for r in kept:
                pipe.pexpire(self.keys.running(r.task_id), self.marker_ttl_ms)
                pipe.exists(self.keys.cancel(r.task_id))
            replies = await pipe.execute()
        self.renewals += 1
        for r in held:
            if r.delivery.entry_id in lost_ids and not r.abandoned:
                r.lost = True
                self.on_lost(r)
        for r, flagged in zip(kept, replies[1::2], strict=True):
            if flagged and not r.cancel_requested:
                self.on_cancel(r)
