"""Beat leadership: a Redis lease plus a fencing epoch.

- **Acquire** (``beat_acquire.lua``): ``SET leader <token> NX PX lease`` and, only if that
  worked, ``INCR epoch``. The epoch fences every fire: a fire carrying an older epoch is
  refused by ``cron_fire.lua``.
- **Renew** every ``lease/3`` (``beat_renew.lua``): compare-and-extend, and only while our
  epoch is still the current one.
- **Validity**: the leader acts only while ``now − last successful renew < lease − margin``
  (measured from when the renew was *sent*, on the monotonic clock), so it stops before the
  lease could have expired in Redis, even when Redis is unreachable.
- **Release** on graceful shutdown (compare-and-delete), so a standby takes over at once.
"""

from __future__ import annotations

import secrets

import redis.asyncio as aioredis

from fluxfunc_common import luascripts
from fluxfunc_common.clock import Clock, SystemClock
from fluxfunc_common.keys import Keys
from fluxfunc_common.text import as_optional_text


def poll_interval(lease_seconds: float) -> float:
    """How often a lease of ``lease_seconds`` is tried for by a standby (and a Beat's partition
    round runs, :mod:`~fluxfunc_beat.partitions`): a sixth of it, at most half a second."""
    return min(lease_seconds / 6, 0.5)


class Leadership:
    """The lease of one Beat process: candidate until :meth:`try_acquire` succeeds."""

    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        *,
        lease_seconds: float,
        clock: Clock | None = None,
        token: str | None = None,
        lease_key: str | None = None,
        epoch_key: str | None = None,
    ) -> None:
        self.redis, self.keys = redis, keys
        # the chores lease by default; a partition of the cron jobs (:mod:`partitions`) names its own
        self.lease_key = lease_key or keys.beat_leader()
        self.epoch_key = epoch_key or keys.beat_epoch()
        self.lease = lease_seconds
        self.clock = clock or SystemClock()
        self.token = token or secrets.token_hex(12)
        self.epoch: int | None = None
        self._renewed_at = float("-inf")
        self._acquire = luascripts.register(redis, "beat_acquire")
        self._renew = luascripts.register(redis, "beat_renew")
        self._release = luascripts.register(redis, "beat_release")

    @property
    def lease_ms(self) -> int:
        return max(1, int(self.lease * 1000))

    @property
    def renew_interval(self) -> float:
        return self.lease / 3

    @property
    def margin(self) -> float:
        """Safety margin: stop acting this long before the lease could expire."""
        return self.lease / 4

    @property
    def poll_interval(self) -> float:
        """How often a standby tries to take the lease."""
        return poll_interval(self.lease)

    def valid(self) -> bool:
        """True while this process may act as the leader."""
        return self.epoch is not None and self.clock.monotonic() - self._renewed_at < self.lease - self.margin

    def remaining(self) -> float:
        """Seconds of validity left (≤ 0 when not the leader)."""
        if self.epoch is None:
            return 0.0
        return self.lease - self.margin - (self.clock.monotonic() - self._renewed_at)

    async def try_acquire(self) -> bool:
        """Take the lease if vacant; on success a new epoch is ours."""
        sent = self.clock.monotonic()
        epoch = await self._acquire(keys=[self.lease_key, self.epoch_key],
                                    args=[self.token, self.lease_ms])
        if not epoch:
            return False
        self.epoch, self._renewed_at = int(epoch), sent
        return True

    async def renew(self) -> bool:
        """Extend the lease; False (and leadership dropped) when it is no longer ours."""
        if self.epoch is None:
            return False
        sent = self.clock.monotonic()
        ok = await self._renew(keys=[self.lease_key, self.epoch_key],
                               args=[self.token, self.lease_ms, self.epoch])
        if ok:
            self._renewed_at = max(self._renewed_at, sent)
            return True
        self.drop()
        return False

    def drop(self) -> None:
        """Stop considering ourselves the leader (the lease is left to expire)."""
        self.epoch = None
        self._renewed_at = float("-inf")

    async def release(self) -> None:
        """Give the lease up (compare-and-delete) and drop leadership."""
        was = self.epoch
        self.drop()
        if was is not None:
            await self._release(keys=[self.lease_key], args=[self.token])


async def current_leader(redis: aioredis.Redis, keys: Keys) -> tuple[str | None, int]:
    """(lease token or None, current epoch): for ops views and tests."""
    token, epoch = await redis.mget(keys.beat_leader(), keys.beat_epoch())
    return as_optional_text(token), int(epoch or 0)
