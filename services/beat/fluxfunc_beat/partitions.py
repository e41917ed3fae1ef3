"""Partitions of the cron jobs, leased per Beat: how several Beats share the firing.

The cron jobs are cut into ``beat.partitions`` partitions (CRC-32 of the cron id, so every Beat
puts a job in the same one). Each partition is a lease with its own fencing epoch — the
compare-and-extend scripts of the chores lease (:class:`~fluxfunc_beat.leader.Leadership`) on
``beat:part:{n}`` and ``beat:part:{n}:epoch`` — and ``cron_fire.lua`` refuses a fire whose
partition epoch is no longer current, so a Beat that lost a partition (paused, cut off) fires
none of its jobs any more; the per-fire guard stays the safety net.

Every Beat keeps itself in ``beat:members`` and holds a fair share, ``ceil(partitions / live
Beats)``: each round (every ``min(lease/6, 0.5 s)``) it refreshes its membership, renews what
it holds, releases what is over its share (its highest partitions: a newcomer takes them), and
takes vacant partitions up to its share, starting from an offset of its own so two Beats do not
race for the same ones.

A Beat that dies (SIGKILL) leaves its leases to expire, and the timings make that a takeover
within the lease, whatever the moment it died:

- a partition's lease is one round shorter than ``lease``: renewed before the death, it lapses
  at most ``lease`` minus a round after it, which leaves the others a round to take it;
- a membership lasts half a lease, so the others count one Beat fewer (and raise their share)
  rounds before the dead Beat's partitions lapse;
- a Beat short of its share reads the time to live of the partitions it lacks (one pipelined
  ``PTTL`` per round, only while short) and runs its next round the moment the first of them
  lapses, not at the next fixed round.

Nothing is taken before its lease has expired in Redis (``SET NX``), and the fencing epochs
stay the safety net. The taker catches the jobs up from the ``beat:last`` watermark (late fires
are fired, :mod:`~fluxfunc_beat.jobs`).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import zlib
from dataclasses import dataclass

import redis.asyncio as aioredis

from fluxfunc_beat.leader import Leadership, poll_interval
from fluxfunc_common import luascripts
from fluxfunc_common.clock import Clock, SystemClock
from fluxfunc_common.keys import Keys
from fluxfunc_common.logs import get_logger

log = get_logger("beat.partitions")

MEMBERS_LEASE_FRACTION = 0.5  # a membership lasts this much of the lease


def partition_of(cron_id: str, partitions: int) -> int:
    """The partition of a cron job (the same on every Beat)."""
    return zlib.crc32(cron_id.encode()) % partitions


@dataclass(frozen=True, slots=True)
class Rebalance:
    """What one round changed: partitions taken and partitions given up (or lost)."""

    gained: frozenset[int]
    lost: frozenset[int]


class PartitionLeases:
    """The partitions one Beat holds; see the module docstring."""

    def __init__(self, redis: aioredis.Redis, keys: Keys, *, partitions: int, lease_seconds: float,
                 token: str, clock: Clock | None = None) -> None:
        self.redis, self.keys, self.count, self.token = redis, keys, partitions, token
        self.clock = clock or SystemClock()
        self.round = poll_interval(lease_seconds)
        self.members_ttl_ms = max(1, int(lease_seconds * MEMBERS_LEASE_FRACTION * 1000))
        self.leases = [Leadership(redis, keys, lease_seconds=lease_seconds - self.round, clock=self.clock,
                                  token=token, lease_key=keys.beat_partition(p),
                                  epoch_key=keys.beat_partition_epoch(p))
                       for p in range(partitions)]
        self.held: set[int] = set()
        self.members = 1
        self._lapse_at: float | None = None  # when a partition this Beat lacks lapses (monotonic)
        self._members = luascripts.register(redis, "beat_members")
        self._offset = zlib.crc32(token.encode()) % partitions

    def next_round(self) -> float:
        """Seconds until the next round: the fixed round, or sooner when a partition this Beat
        lacks lapses before that (it is taken the moment it is vacant)."""
        if self._lapse_at is None:
            return self.round
        return max(0.0, min(self.round, self._lapse_at + 0.001 - self.clock.monotonic()))

    @property
    def share(self) -> int:
        """How many partitions this Beat should hold."""
        return math.ceil(self.count / max(1, self.members))

    def owns(self, partition: int) -> bool:
        """True while this Beat may fire the jobs of ``partition``."""
        return partition in self.held and self.leases[partition].valid()

    def epochs(self) -> dict[int, int]:
        """Partition → epoch of every partition this Beat may fire now."""
        return {p: e for p in self.held if self.leases[p].valid() and (e := self.leases[p].epoch) is not None}

    async def step(self) -> Rebalance:
        """One round: membership, renewals, release over the share, take vacant ones."""
        self.members = int(await self._members(keys=[self.keys.beat_members()],
                                               args=[self.token, self.members_ttl_ms]))
        lost = await self._renew()
        lost |= await self._shed()
        gained = await self._take()
        if gained or lost:
            log.info("partitions rebalanced", gained=sorted(gained), lost=sorted(lost),
                     held=len(self.held), beats=self.members)
        return Rebalance(frozenset(gained), frozenset(lost))

    async def _renew(self) -> set[int]:
        """Renew every partition held, all at once (one round trip, not one per partition)."""
        lost = {p for p in self.held if not self.leases[p].valid()}
        held = sorted(self.held - lost)
        renewed = await asyncio.gather(*(self._renew_one(p) for p in held))
        lost |= {p for p, ok in zip(held, renewed, strict=True) if not ok}
        for p in lost:
            self.drop(p)
        return lost

    async def _renew_one(self, partition: int) -> bool:
        lease = self.leases[partition]
        try:
            return await asyncio.wait_for(lease.renew(), timeout=max(lease.remaining(), 0.01))
        except Exception as exc:  # Redis slow or away: the lease stands until its margin
            log.warning("partition renew failed", partition=partition, error=repr(exc))
            return lease.valid()

    async def _shed(self) -> set[int]:
        extra = sorted(self.held, reverse=True)[:max(0, len(self.held) - self.share)]
        for p in extra:
            await self.leases[p].release()
            self.held.discard(p)
        return set(extra)

    async def _take(self) -> set[int]:
        """Take vacant partitions up to the share, in this Beat's order: one pipelined ``PTTL``
        of the partitions it lacks, then the vacant ones acquired together. Still short, it
        notes when the first of the others lapses (:meth:`next_round`)."""
        self._lapse_at = None
        need = self.share - len(self.held)
        if need <= 0:
            return set()
        lacking = [p for i in range(self.count) if (p := (self._offset + i) % self.count) not in self.held]
        ttls = dict(zip(lacking, await self._ttls(lacking), strict=True))
        read_at = self.clock.monotonic()  # after the answer: a lease counted from here is never early
        vacant = [p for p in lacking if ttls[p] == -2]  # -2: no such key
        won = await asyncio.gather(*(self.leases[p].try_acquire() for p in vacant[:need]))
        gained = {p for p, ok in zip(vacant[:need], won, strict=True) if ok}
        self.held |= gained
        if len(self.held) < self.share:
            soon = [ms / 1000 for ms in ttls.values() if ms >= 0]
            if len(vacant) > need:
                soon.append(0.0)  # vacant ones not tried (another Beat won some): at once
            if soon:
                self._lapse_at = read_at + min(soon)
        return gained

    async def _ttls(self, partitions: list[int]) -> list[int]:
        """Milliseconds each partition's lease has left (-2: vacant), in one round trip."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for p in partitions:
                pipe.pttl(self.keys.beat_partition(p))
            return [int(ms) for ms in await pipe.execute()]

    def drop(self, partition: int) -> None:
        """Stop firing ``partition`` (fenced, or its lease lapsed); its lease is left to expire."""
        self.leases[partition].drop()
        self.held.discard(partition)

    async def release_all(self) -> None:
        """Give every partition up and leave the members (graceful stop: others take over at once);
        the releases go out together (one round trip, not one per partition)."""
        held, self.held = sorted(self.held), set()
        await asyncio.gather(*(self.leases[p].release() for p in held), return_exceptions=True)
        with contextlib.suppress(Exception):
            await self._members(keys=[self.keys.beat_members()], args=[self.token, 0])
