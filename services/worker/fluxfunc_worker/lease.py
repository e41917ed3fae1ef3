"""Leases: the entries this worker holds, and the owner-checked renewal that keeps them.

A stream entry delivered to this consumer is *in flight* from the moment it is read until it
is completed, retried, dead-lettered or released. Every ``worker.heartbeat_interval`` the
:class:`LeaseKeeper` runs the ``touch`` script over all of them: an entry still ours gets
its PEL idle time reset (so no other worker's reclaim takes it); an entry that is no longer
ours (another worker reclaimed it after we stalled past the lease, so the lease token we hold is
not the stream's any more) is *lost* (:meth:`~fluxfunc_worker.run.Run.lose`: its child is
stopped at once and it is never completed). After the whole worker was stopped (SIGSTOP)
past its lease, the first round after it resumes is the overdue one, so a stale child is
signalled within one interval. The same round refreshes the running markers
(``keys.running``, PX 2×lease) of started tasks so long tasks keep reading as ``running``,
and looks at their cancel flags: a cancel whose pub/sub event was missed still stops the
run (:meth:`~fluxfunc_worker.run.Run.cancel`).
"""

from __future__ import annotations

from collections.abc import Iterator

import redis.asyncio as aioredis

from fluxfunc_common.keys import Keys
from fluxfunc_common.streams import Delivery, StreamProtocol
from fluxfunc_worker.run import Run
from fluxfunc_worker.slots import Slot


class Inflight:
    """Runs of the entries held by this consumer, by (queue, entry id) and by task id."""

    def __init__(self) -> None:
        self._by_entry: dict[tuple[str, str], Run] = {}
        self._by_task: dict[str, Run] = {}

    def __len__(self) -> int:
        return len(self._by_entry)

    def __iter__(self) -> Iterator[Run]:
        return iter(list(self._by_entry.values()))

    def __contains__(self, key: tuple[str, str]) -> bool:
        return key in self._by_entry

    def get(self, key: tuple[str, str]) -> Run | None:
        return self._by_entry.get(key)

    def add(self, delivery: Delivery, slot: Slot) -> Run:
        run = Run(delivery, slot)
        self._by_entry[run.key] = run
        self._by_task[run.task_id] = run
        return run

    def adopt(self, delivery: Delivery) -> bool:
        """A reclaim handed us an entry we already run (our own lease had lapsed): keep
        running it under the new delivery count and lease token. False when the entry is not
        ours here."""
        run = self._by_entry.get((delivery.queue, delivery.entry_id))
        if run is None:
            return False
        run.adopt(delivery)
        return True

    def remove(self, run: Run) -> None:
        if self._by_entry.get(run.key) is run:
            del self._by_entry[run.key]
        if self._by_task.get(run.task_id) is run:
            del self._by_task[run.task_id]

    def by_task(self, task_id: str) -> Run | None:
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
    ) -> None:
        self.streams = streams
        self.redis = redis
        self.keys = keys
        self.consumer = consumer
        self.inflight = inflight
        self.marker_ttl_ms = marker_ttl_ms
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
            if r.delivery.entry_id in lost_ids:
                r.lose()
        for r, flagged in zip(kept, replies[1::2], strict=True):
            if flagged:
                r.cancel()
