"""Schedule maths: fixed datetimes, 5- and 6-field expressions, DST gaps and overlaps."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from fluxfunc_common import schedule as S


def ts(local: str, tz: str, fold: int = 0) -> float:
    return datetime.fromisoformat(local).replace(tzinfo=ZoneInfo(tz), fold=fold).timestamp()


def iso(at: float, tz: str) -> str:
    return datetime.fromtimestamp(at, ZoneInfo(tz)).isoformat()


CASES = [
    # (expr, tz, after (local), expected next fires (local ISO with offset))
    ("*/15 * * * *", "UTC", "2024-01-01T00:07:00",
     ["2024-01-01T00:15:00+00:00", "2024-01-01T00:30:00+00:00", "2024-01-01T00:45:00+00:00"]),
    ("*/20 * * * * *", "UTC", "2024-01-01T00:00:00",  # 6 fields: seconds first
     ["2024-01-01T00:00:20+00:00", "2024-01-01T00:00:40+00:00", "2024-01-01T00:01:00+00:00"]),
    ("0 30 9 * * 1-5", "Asia/Shanghai", "2024-01-05T10:00:00",  # Friday → Monday
     ["2024-01-08T09:30:00+08:00", "2024-01-09T09:30:00+08:00"]),
    ("0 0 29 2 *", "UTC", "2025-01-01T00:00:00", ["2028-02-29T00:00:00+00:00"]),
    ("@daily", "Europe/Berlin", "2024-06-01T12:00:00",
     ["2024-06-02T00:00:00+02:00", "2024-06-03T00:00:00+02:00"]),
    # --- Europe/Berlin spring forward 2024-03-31 02:00 → 03:00 (02:xx does not exist)
    ("30 2 * * *", "Europe/Berlin", "2024-03-30T12:00:00",  # fixed time in the gap: once at 03:00
     ["2024-03-31T03:00:00+02:00", "2024-04-01T02:30:00+02:00"]),
    ("0,15,30,45 2 * * *", "Europe/Berlin", "2024-03-31T00:00:00",  # several gap times collapse
     ["2024-03-31T03:00:00+02:00", "2024-04-01T02:00:00+02:00"]),
    ("0 2,3 * * *", "Europe/Berlin", "2024-03-31T00:00:00",  # gap fire and 03:00 are one fire
     ["2024-03-31T03:00:00+02:00", "2024-04-01T02:00:00+02:00"]),
    ("*/30 * * * *", "Europe/Berlin", "2024-03-31T01:00:00",  # wildcard: gap times do not happen
     ["2024-03-31T01:30:00+01:00", "2024-03-31T03:00:00+02:00", "2024-03-31T03:30:00+02:00"]),
    # --- Europe/Berlin fall back 2024-10-27 03:00 → 02:00 (02:xx happens twice)
    ("30 2 * * *", "Europe/Berlin", "2024-10-26T12:00:00",  # fixed time: once, first occurrence
     ["2024-10-27T02:30:00+02:00", "2024-10-28T02:30:00+01:00"]),
    ("*/30 * * * *", "Europe/Berlin", "2024-10-27T01:45:00",  # wildcard: runs the hour again
     ["2024-10-27T02:00:00+02:00", "2024-10-27T02:30:00+02:00", "2024-10-27T02:00:00+01:00",
      "2024-10-27T02:30:00+01:00", "2024-10-27T03:00:00+01:00"]),
    # --- America/New_York spring forward 2024-03-10 02:00 → 03:00
    ("0 30 2 * * *", "America/New_York", "2024-03-09T12:00:00",
     ["2024-03-10T03:00:00-04:00", "2024-03-11T02:30:00-04:00"]),
    ("0 */1 * * *", "America/New_York", "2024-03-10T00:30:00",
     ["2024-03-10T01:00:00-05:00", "2024-03-10T03:00:00-04:00", "2024-03-10T04:00:00-04:00"]),
    # --- America/New_York fall back 2024-11-03 02:00 → 01:00 (01:xx twice)
    ("0,30 1 * * *", "America/New_York", "2024-11-02T12:00:00",
     ["2024-11-03T01:00:00-04:00", "2024-11-03T01:30:00-04:00", "2024-11-04T01:00:00-05:00"]),
    ("@hourly", "America/New_York", "2024-11-03T00:00:00",
     ["2024-11-03T01:00:00-04:00", "2024-11-03T01:00:00-05:00", "2024-11-03T02:00:00-05:00"]),
]


@pytest.mark.parametrize(("expr", "tz", "after", "expected"), CASES)
def test_next_fires(expr: str, tz: str, after: str, expected: list[str]) -> None:
    fires = S.next_fires(expr, tz, ts(after, tz), len(expected))
    assert [iso(f, tz) for f in fires] == expected


def test_next_fire_is_strictly_after() -> None:
    at = ts("2024-01-01T00:15:00", "UTC")
    assert S.next_fires("*/15 * * * *", "UTC", at, 1) == [at + 900]


def test_after_inside_repeated_hour() -> None:
    """Asking from the second pass of an overlap continues in the second pass."""
    tz = "America/New_York"
    after = ts("2024-11-03T01:10:00", tz, fold=1)  # 01:10 EST (the second 01:10)
    fires = S.next_fires("*/30 * * * *", tz, after, 2)
    assert [iso(f, tz) for f in fires] == ["2024-11-03T01:30:00-05:00", "2024-11-03T02:00:00-05:00"]
    fixed = S.next_fires("30 1 * * *", tz, after, 1)
    assert [iso(f, tz) for f in fixed] == ["2024-11-04T01:30:00-05:00"]


def test_every_second_across_fall_back_has_no_duplicates() -> None:
    tz = "Europe/Berlin"
    start = ts("2024-10-27T01:59:58", tz)
    fires = S.fires_between("* * * * * *", tz, start, start + 3610, limit=10_000)
    assert fires == [start + i for i in range(1, 3611)]  # real seconds, each once


def test_fires_between_half_open_and_limit() -> None:
    start = ts("2024-01-01T00:00:00", "UTC")
    assert S.fires_between("* * * * *", "UTC", start, start + 180) == [start + 60, start + 120, start + 180]
    assert len(S.fires_between("* * * * * *", "UTC", start, start + 3600, limit=5)) == 5


def test_latest_fire() -> None:
    start = ts("2024-01-01T00:00:00", "UTC")
    assert S.latest_fire("* * * * * *", "UTC", start, start + 3600.5) == start + 3600
    assert S.latest_fire("0 * * * *", "UTC", start, start + 7199) == start + 3600
    assert S.latest_fire("0 * * * *", "UTC", start, start + 3599) is None
    assert S.latest_fire("0 0 1 1 *", "UTC", start - 1, start + 86400 * 300) == start


@pytest.mark.parametrize(
    ("expr", "fragment"),
    [
        ("", "is empty"),
        ("* * * *", "has 4 fields"),
        ("* * * * * * *", "has 7 fields"),
        ("61 * * * *", "is not valid"),
        ("* * * * * * foo", "has 7 fields"),
        ("0 0 31 2 *", "never fires"),
        ("bogus * * * *", "is not valid"),
    ],
)
def test_invalid_expressions(expr: str, fragment: str) -> None:
    with pytest.raises(S.ScheduleError) as info:
        S.validate(expr, "UTC")
    assert fragment in info.value.message
    assert info.value.status == 400
    assert info.value.detail["field"] == "cronExpr"


def test_invalid_timezone() -> None:
    with pytest.raises(S.ScheduleError) as info:
        S.validate("* * * * *", "Mars/Olympus")
    assert "unknown timezone 'Mars/Olympus'" in info.value.message
    assert info.value.detail["field"] == "timezone"


def test_default_timezone_and_whitespace() -> None:
    s = S.parse("  */5   * * * * ", None, default_tz="Asia/Tokyo")
    assert s.timezone == "Asia/Tokyo" and s.expr == "*/5 * * * *" and not s.seconds
    assert S.parse("0 0 * * * *", "UTC").seconds


# --- brute force: every minute around each DST change, checked against the documented rule --

TRANSITIONS = [  # (tz, a local time a few hours before the change)
    ("Europe/Berlin", "2024-03-30T22:00:00"),  # spring forward 02:00 → 03:00
    ("Europe/Berlin", "2024-10-26T22:00:00"),  # fall back 03:00 → 02:00
    ("America/New_York", "2024-03-09T22:00:00"),  # spring forward 02:00 → 03:00
    ("America/New_York", "2024-11-02T22:00:00"),  # fall back 02:00 → 01:00
]
EXPRESSIONS = ["*/15 * * * *", "0 * * * *", "5 */2 * * *", "30 2 * * *", "0,30 1,2 * * *", "45 1 * * 0"]


def brute_force(expr: str, tz: str, start: float, hours: int) -> list[float]:
    """Every instant, minute by minute, that the rule of schedule.py's docstring says fires."""
    from croniter import croniter

    zone = ZoneInfo(tz)
    fixed = S.parse(expr, tz).fixed_time
    out: set[float] = set()
    for minute in range(1, hours * 60 + 1):
        at = start + minute * 60
        wall = datetime.fromtimestamp(at, zone)
        naive = wall.replace(tzinfo=None)
        if croniter.match(expr, naive) and (not fixed or wall.fold == 0):
            out.add(at)  # fixed-time jobs: the first occurrence of a repeated wall time only
        prev = datetime.fromtimestamp(at - 60, zone).replace(tzinfo=None)
        skipped = [prev + timedelta(minutes=m) for m in range(1, int((naive - prev).total_seconds() // 60))]
        if fixed and any(croniter.match(expr, w) for w in skipped):
            out.add(at)  # wall times a spring forward skipped: once, when the gap ends
    return sorted(out)


@pytest.mark.parametrize("expr", EXPRESSIONS)
@pytest.mark.parametrize(("tz", "local"), TRANSITIONS)
def test_dst_brute_force(expr: str, tz: str, local: str) -> None:
    start = ts(local, tz)
    hours = 30
    assert S.fires_between(expr, tz, start, start + hours * 3600) == brute_force(expr, tz, start, hours)
