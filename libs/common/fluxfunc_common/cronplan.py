"""Which expression fires a cron job when: its configured one, a script's override
(``DFF.CRON_JOB.set_cron_expr``) until that override expires, and nothing during a timed pause
(``DFF.CRON_JOB.pause(expires)``).

As in DataFlux Func, an override governs the fires up to and including its expiry time and
the configured expression those after it; a pause drops every fire up to and including its
expiry (they are not missed fires: nothing makes them up). An expired override or pause is
simply absent, so every Beat — a new leader, a restarted one — computes the same fires from
the stored job without anyone having to end them.

Pure logic in epoch milliseconds; the caller passes its (memoised) next-fire step and the
look-back used for ``fireOnce``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from fluxfunc_common import schedule as sched

NextOf = Callable[[sched.Schedule, int], "int | None"]  # first fire strictly after a time (ms)
LatestOf = Callable[[sched.Schedule, int, int], "int | None"]  # last fire in (lo, hi] (ms)


@dataclass(frozen=True, slots=True)
class CronPlan:
    """The schedules of one job over time (see the module docstring)."""

    base: sched.Schedule
    override: sched.Schedule | None = None
    override_until_ms: int | None = None  # None with an override: until it is cleared
    paused_until_ms: int | None = None

    def _override_at(self, at_ms: int) -> bool:
        return self.override is not None and (self.override_until_ms is None
                                              or at_ms <= self.override_until_ms)

    def schedule_at(self, at_ms: int) -> sched.Schedule:
        """The schedule a fire at ``at_ms`` belongs to."""
        return self.override if self.override is not None and self._override_at(at_ms) else self.base

    def next_fire(self, after_ms: int, next_of: NextOf) -> int | None:
        """The first fire strictly after ``after_ms`` (None: never)."""
        t = after_ms
        if self.paused_until_ms is not None and t < self.paused_until_ms:
            t = self.paused_until_ms  # fires up to the pause's end are dropped
        if self.override is not None and self._override_at(t + 1):
            at = next_of(self.override, t)
            if at is not None and self._override_at(at):
                return at
            if self.override_until_ms is None:
                return None
            t = max(t, self.override_until_ms)  # the override ends: the configured one from here
        return next_of(self.base, t)

    def latest_fire(self, lo_ms: int, hi_ms: int, latest_of: LatestOf) -> int | None:
        """The last fire in ``(lo_ms, hi_ms]`` (the ``fireOnce`` candidate) or None."""
        if self.paused_until_ms is not None:
            lo_ms = max(lo_ms, self.paused_until_ms)
        if lo_ms >= hi_ms:
            return None
        if self.override is None:
            return latest_of(self.base, lo_ms, hi_ms)
        until = self.override_until_ms
        if until is None or hi_ms <= until:
            return latest_of(self.override, lo_ms, hi_ms)
        after = latest_of(self.base, max(lo_ms, until), hi_ms)
        if after is not None or lo_ms >= until:
            return after
        return latest_of(self.override, lo_ms, until)


def plan_for(base: sched.Schedule, override_expr: str | None, override_until: float | None,
             paused_until: float | None, tz: str) -> CronPlan:
    """The plan of a job; an override that does not parse is left out (it was checked when a
    script set it, so only a changed time zone can get here)."""
    override = None
    if override_expr:
        try:
            override = sched.parse(override_expr, tz)
        except sched.ScheduleError:
            override = None
    return CronPlan(base, override, _ms(override_until) if override else None, _ms(paused_until))


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else int(seconds * 1000)
