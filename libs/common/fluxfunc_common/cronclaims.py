"""Store claims of scheduled cron fires (step 1 of :mod:`fluxfunc_common.cron`).

``claim_cron_fires`` inserts (cron id, fire ms, task id) rows on a unique key, so two
deployments that share only the database never both fire (the loser sees *duplicate*). The
task id names the deployment (a random id kept in Redis at ``beat:deployment``), so a fire this
deployment claimed but did not enqueue — its Beat was killed in between — is still *ours* and
is fired by the next leader instead of being lost.

While the store cannot take claims (unreachable, cannot write), the leader keeps firing for up
to ``beat.store_outage_seconds`` (and :data:`UNCLAIMED_MAX` fires): every fire counts as ours
(the Redis guard of ``cron_fire.lua`` still fires each one once) and its claim is kept in
memory and written when the store is back (:meth:`FireClaims.write_unclaimed`).
"""

from __future__ import annotations

import secrets

import redis.asyncio as aioredis

from fluxfunc_common.clock import Clock, SystemClock
from fluxfunc_common.errors import ClientError
from fluxfunc_common.keys import Keys
from fluxfunc_common.logs import get_logger
from fluxfunc_common.settings import Settings
from fluxfunc_common.store import CronFireStore
from fluxfunc_common.text import as_optional_text

UNCLAIMED_MAX = 500_000  # fires made in a store outage whose claims wait in memory, at most

Claim = tuple[str, int, str]  # (cron id, fire ms, task id)

log = get_logger("cron")


class FireClaims:
    """This deployment's claims of scheduled fires; see the module docstring."""

    def __init__(self, redis: aioredis.Redis, keys: Keys, store: CronFireStore, settings: Settings, *,
                 clock: Clock | None = None) -> None:
        self.redis, self.keys, self.store, self.settings = redis, keys, store, settings
        self.clock = clock or SystemClock()
        self._deployment: str | None = None
        self._unclaimed: list[Claim] = []  # fired in a store outage, not yet claimed
        self._failing_since: float | None = None  # clock.monotonic() of the first failure

    @property
    def unclaimed(self) -> int:
        """Fires made while the store could not take their claims, not yet written."""
        return len(self._unclaimed)

    async def deployment(self) -> str:
        """This deployment's id (created on first use, then read once per process)."""
        if self._deployment is None:
            key = self.keys.beat_deployment()
            await self.redis.set(key, secrets.token_hex(8), nx=True)
            self._deployment = as_optional_text(await self.redis.get(key)) or ""
        return self._deployment

    async def claim(self, claims: list[Claim]) -> list[bool]:
        """Claim fires in the store (True: ours to fire); while it fails, for up to
        ``beat.store_outage_seconds``, every fire is ours and its claim waits in memory."""
        try:
            await self.write_unclaimed()
            ours = await self.store.claim_cron_fires(claims)
        except ClientError:
            raise
        except Exception as exc:
            if self._past_bounds(exc, len(claims)):
                raise
            self._unclaimed += claims
            return [True] * len(claims)
        self._failing_since = None
        return ours

    def _past_bounds(self, exc: Exception, claims: int) -> bool:
        """Note a failed claim; True once the outage is past its bounds (time or fires)."""
        now = self.clock.monotonic()
        if self._failing_since is None:
            self._failing_since = now
            log.warning("the store cannot take cron fire claims; firing on, deduplicated in Redis",
                        error=str(exc) or repr(exc),
                        bound_seconds=self.settings.beat.store_outage_seconds)
        return (now - self._failing_since >= self.settings.beat.store_outage_seconds
                or len(self._unclaimed) + claims > UNCLAIMED_MAX)

    async def write_unclaimed(self) -> None:
        """Write the claims of fires made while the store failed (no-op when none wait)."""
        if not self._unclaimed:
            return
        claims, self._unclaimed = self._unclaimed, []
        try:
            ours = await self.store.claim_cron_fires(claims)
        except BaseException:
            self._unclaimed = claims + self._unclaimed
            raise
        self._failing_since = None
        elsewhere = sum(not o for o in ours)
        log.info("cron fire claims written after a store outage", claims=len(claims), elsewhere=elsewhere)
        if elsewhere:
            log.warning("fires made in the store outage were claimed by another deployment too",
                        fires=elsewhere)
