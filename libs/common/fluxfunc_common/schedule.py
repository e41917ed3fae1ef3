"""Cron schedule maths: pure functions from (expression, IANA timezone, instant) to fire times.

Used by the Beat (when does a job fire next, which fires were missed) and by the Server
(``GET /api/v1/cron-jobs/{id}/next``, validating ``cronExpr``/``timezone``). No I/O, no clock:
every function takes the instants it reasons about.

Expressions have 5 fields (``m h dom mon dow``) or 6 with **seconds first**
(``s m h dom mon dow``, as in DataFlux Func's system tasks); croniter's ``@hourly`` style
aliases are accepted too. Matching is done on local wall time of the job's timezone, and
wall times become instants period by period (between two UTC-offset transitions), so
croniter never sees a timezone and cannot get DST wrong.

Daylight-saving time follows Vixie cron:

- *Fixed-time* jobs (neither the minute nor the hour field starts with ``*``, e.g.
  ``30 2 * * *``): a wall time that does not exist (spring-forward gap) fires **once** at the
  first valid instant after the gap (several gap times collapse into that one fire); a wall
  time that occurs twice (fall-back overlap) fires **once**, at its first occurrence.
- *Wildcard* jobs (``*/15 * * * *``, ``0 */2 * * *``, ``* * * * * *``): they follow the
  clock as it is. Wall times inside a gap simply do not happen; the repeated hour of an
  overlap is run through again, so the job keeps its real-time rhythm.

Fire times are epoch seconds (floats holding whole seconds).
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from croniter.croniter import CroniterError

from fluxfunc_common.errors import BadRequest

# A period is skipped in one step, so this bounds the work for a job that never fires again.
_MAX_PERIODS = 240
_EPS = 0.001
_SCAN_STEP = 3 * 3600  # offset transitions are always further apart than this
_ALIASES = frozenset({"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"})


class ScheduleError(BadRequest):
    """The cron expression or timezone is not valid."""


@dataclass(frozen=True, slots=True)
class Transition:
    """A change of UTC offset at instant ``at``: wall = instant + offset."""

    at: float
    before: float
    after: float


@dataclass(eq=False)
class Schedule:
    """A parsed, validated ``(cronExpr, timezone)`` pair; use :func:`parse` to make one."""

    expr: str
    tz: ZoneInfo
    fixed_time: bool
    seconds: bool  # 6-field expression
    _iter: croniter = field(repr=False)

    @property
    def timezone(self) -> str:
        return self.tz.key

    def next_fire(self, after: float) -> float | None:
        """The first fire strictly after instant ``after``, or None if it never fires again."""
        return _next_fire(self, after)


# --- parsing and validation ----------------------------------------------------------------


def timezone(name: str | None, default: str = "UTC") -> ZoneInfo:
    """The ZoneInfo for an IANA name (``None``/empty → ``default``); ScheduleError if unknown."""
    key = (name or default).strip()
    try:
        return _zone(key)
    except (ZoneInfoNotFoundError, ValueError, TypeError):
        raise ScheduleError(
            f"unknown timezone {key!r}: use an IANA name such as 'UTC', 'Asia/Shanghai' or "
            "'Europe/Berlin'",
            detail={"field": "timezone", "value": key},
        ) from None


@lru_cache(maxsize=1024)
def _zone(key: str) -> ZoneInfo:
    return ZoneInfo(key)


def parse(expr: str, tz: str | None = None, *, default_tz: str = "UTC") -> Schedule:
    """Parse and validate; raises :class:`ScheduleError` with a message fit for a 400 answer."""
    zone = timezone(tz, default_tz)
    return _parse(" ".join(str(expr).split()), zone.key)


@lru_cache(maxsize=4096)
def _parse(expr: str, tz_key: str) -> Schedule:
    if not expr:
        raise _bad(expr, "is empty")
    fields = expr.split(" ")
    if len(fields) == 1 and fields[0].lower() in _ALIASES:
        fields = _alias_fields(fields[0].lower())
    elif len(fields) not in (5, 6):
        raise _bad(expr, f"has {len(fields)} fields; use 5 (m h dom mon dow) or 6 with seconds first "
                         "(s m h dom mon dow)")
    seconds = len(fields) == 6
    minute, hour = (fields[1], fields[2]) if seconds else (fields[0], fields[1])
    try:
        it = croniter(" ".join(fields), 0.0, second_at_beginning=seconds)
    except (CroniterError, ValueError, KeyError, IndexError) as exc:
        raise _bad(expr, f"is not valid: {exc}") from None
    fixed = not (minute.startswith("*") or hour.startswith("*"))
    schedule = Schedule(expr=expr, tz=_zone(tz_key), fixed_time=fixed, seconds=seconds, _iter=it)
    if schedule.next_fire(datetime(2000, 1, 1, tzinfo=UTC).timestamp()) is None:
        raise _bad(expr, "never fires")
    return schedule


def _alias_fields(alias: str) -> list[str]:
    table = {
        "@yearly": "0 0 1 1 *", "@annually": "0 0 1 1 *", "@monthly": "0 0 1 * *",
        "@weekly": "0 0 * * 0", "@daily": "0 0 * * *", "@midnight": "0 0 * * *",
        "@hourly": "0 * * * *",
    }
    return table[alias].split(" ")


def _bad(expr: str, why: str) -> ScheduleError:
    return ScheduleError(f"cron expression {expr!r} {why}", detail={"field": "cronExpr", "value": expr})


def validate(expr: str, tz: str | None = None) -> None:
    """Raise :class:`ScheduleError` unless ``expr`` and ``tz`` make a valid schedule."""
    parse(expr, tz)


# --- queries ----------------------------------------------------------------------------------


def _schedule(expr: str | Schedule, tz: str | None) -> Schedule:
    return expr if isinstance(expr, Schedule) else parse(expr, tz)


def iter_fires(expr: str | Schedule, tz: str | None, after_ts: float) -> Iterator[float]:
    """Fire instants strictly after ``after_ts``, in order (endless unless the job ends)."""
    schedule = _schedule(expr, tz)
    at: float | None = schedule.next_fire(after_ts)
    while at is not None:
        yield at
        at = schedule.next_fire(at)


def next_fires(expr: str | Schedule, tz: str | None, after_ts: float, count: int) -> list[float]:
    """The next ``count`` fire instants strictly after ``after_ts`` (fewer if the job ends)."""
    out: list[float] = []
    for at in iter_fires(expr, tz, after_ts):
        if len(out) >= count:
            break
        out.append(at)
    return out


def fires_between(
    expr: str | Schedule, tz: str | None, start_ts: float, end_ts: float, limit: int = 1000
) -> list[float]:
    """Fire instants in the half-open interval ``(start_ts, end_ts]``, at most ``limit``."""
    out: list[float] = []
    for at in iter_fires(expr, tz, start_ts):
        if at > end_ts or len(out) >= limit:
            break
        out.append(at)
    return out


def latest_fire(expr: str | Schedule, tz: str | None, after_ts: float, at_ts: float) -> float | None:
    """The last fire in ``(after_ts, at_ts]`` or None: the misfire ``fireOnce`` candidate.

    Looks back in doubling windows from ``at_ts``, so a long downtime costs O(log) steps
    rather than one step per missed fire.
    """
    schedule = _schedule(expr, tz)
    window = 1.0
    while True:
        lo = max(after_ts, at_ts - window)
        found = None
        for at in iter_fires(schedule, None, lo):
            if at > at_ts:
                break
            found = at
        if found is not None or lo <= after_ts:
            return found
        window *= 2


# --- the period walk ---------------------------------------------------------------------------


def _offset(tz: ZoneInfo, instant: float) -> float:
    delta = datetime.fromtimestamp(instant, tz).utcoffset()
    return delta.total_seconds() if delta is not None else 0.0


@lru_cache(maxsize=512)
def _year_transitions(tz_key: str, year: int) -> tuple[Transition, ...]:
    """Offset changes during one UTC year (found by scanning, then bisecting to the second)."""
    tz = _zone(tz_key)
    start = datetime(year, 1, 1, tzinfo=UTC).timestamp()
    end = datetime(year + 1, 1, 1, tzinfo=UTC).timestamp()
    out: list[Transition] = []
    t, off = start, _offset(tz, start)
    while t < end:
        nxt = min(t + _SCAN_STEP, end)
        noff = _offset(tz, nxt)
        if noff != off:
            lo, hi = int(t), int(nxt)  # offset(lo) == off, offset(hi) != off
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if _offset(tz, mid) == off:
                    lo = mid
                else:
                    hi = mid
            out.append(Transition(float(hi), off, _offset(tz, hi)))
        t, off = nxt, noff
    return tuple(out)


def _year(instant: float) -> int:
    return datetime.fromtimestamp(instant, UTC).year


def _transitions_near(tz: ZoneInfo, instant: float) -> list[Transition]:
    year = _year(instant)
    out: list[Transition] = []
    for y in (year - 1, year, year + 1):
        out.extend(_year_transitions(tz.key, y))
    return out


def _around(tz: ZoneInfo, instant: float) -> tuple[Transition | None, Transition | None]:
    """The last transition at or before ``instant`` and the first one after it."""
    if tz.key == "UTC":
        return None, None
    near = _transitions_near(tz, instant)
    i = bisect.bisect_right([tr.at for tr in near], instant)
    return (near[i - 1] if i > 0 else None), (near[i] if i < len(near) else None)


def _wall_next(schedule: Schedule, wall: float) -> float | None:
    """The next matching wall time strictly after ``wall`` (walls are epoch-like floats)."""
    it = schedule._iter
    try:
        it.set_current(wall, force=True)
        return float(it.get_next(float))
    except (CroniterError, ValueError, OverflowError):
        return None


def _next_fire(s: Schedule, after: float) -> float | None:
    """Walk the offset periods forward from ``after`` until one holds a fire."""
    lower, t = after, after  # fires must be > lower; t is inside the current period
    for _ in range(_MAX_PERIODS):
        off = _offset(s.tz, t)
        prev, nxt = _around(s.tz, t)
        lo_wall = lower + off
        if s.fixed_time and prev is not None and prev.before > prev.after:
            # after a fall-back: a fixed-time job does not run the repeated wall times again
            lo_wall = max(lo_wall, prev.at + prev.before - _EPS)
        wall = _wall_next(s, lo_wall)
        if wall is None:
            return None
        instant = wall - off
        if nxt is None or instant < nxt.at:
            return instant
        if s.fixed_time and nxt.after > nxt.before:
            # spring-forward gap [at+before, at+after) in wall time: fire once when it ends
            gap = _wall_next(s, nxt.at + nxt.before - _EPS)
            if gap is not None and gap < nxt.at + nxt.after:
                return nxt.at
        lower, t = nxt.at - _EPS, nxt.at
    return None
