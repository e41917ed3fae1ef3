"""A script's override and timed pause in the job table: pure logic with fixed times
(:mod:`fluxfunc_common.cronplan`, :mod:`fluxfunc_beat.jobs`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fluxfunc_beat.jobs import JobTable
from fluxfunc_common import schedule as sched
from fluxfunc_common.cronplan import plan_for
from fluxfunc_common.models import CronJob, Func

T0 = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp() * 1000)  # a whole minute
FUNC = Func(id="demo__basic.tick")
EVEN = "*/2 * * * * *"
EVERY = "* * * * * *"


def job(**extra: Any) -> CronJob:
    return CronJob.from_row({"id": "c", "funcId": FUNC.id, "cronExpr": EVEN, "createTime": T0 / 1000,
                             "updateTime": T0 / 1000, **extra})


def fires(table: JobTable, now_ms: int) -> list[tuple[int, str]]:
    return [(d.fire_ms - T0, d.job.cron_expr) for d in table.pop_due(now_ms)]


def test_a_timed_override_governs_up_to_its_expiry_then_the_configured_one() -> None:
    table = JobTable(late_ms=25_000)
    table.upsert(job(dynamicCronExpr=EVERY, dynamicCronExprExpireTime=(T0 + 3000) / 1000),
                 FUNC, last_ms=None, now_ms=T0)
    assert fires(table, T0 + 8000) == [(1000, EVERY), (2000, EVERY), (3000, EVERY),
                                       (4000, EVEN), (6000, EVEN), (8000, EVEN)]


def test_an_override_without_expiry_holds_and_an_expired_one_is_absent() -> None:
    held = JobTable(late_ms=25_000)
    held.upsert(job(dynamicCronExpr=EVERY), FUNC, last_ms=None, now_ms=T0)
    assert [t for t, _ in fires(held, T0 + 5000)] == [1000, 2000, 3000, 4000, 5000]
    gone = JobTable(late_ms=25_000)
    gone.upsert(job(dynamicCronExpr=EVERY, dynamicCronExprExpireTime=(T0 - 1) / 1000),
                FUNC, last_ms=None, now_ms=T0)
    assert fires(gone, T0 + 5000) == [(2000, EVEN), (4000, EVEN)]


def test_a_timed_pause_drops_its_fires_and_nothing_makes_them_up() -> None:
    table = JobTable(late_ms=25_000)
    table.upsert(job(cronExpr=EVERY, pauseExpireTime=(T0 + 3000) / 1000), FUNC, last_ms=None, now_ms=T0)
    assert table.next_due_ms() == T0 + 4000
    assert fires(table, T0 + 6000) == [(4000, EVERY), (5000, EVERY), (6000, EVERY)]


def test_a_restarted_beat_continues_from_the_stored_job() -> None:
    """A new leader loads the job with its last fire inside the override window: the fires
    left of the override, then the configured ones, with nobody ending the override."""
    stored = job(dynamicCronExpr=EVERY, dynamicCronExprExpireTime=(T0 + 5000) / 1000,
                 pauseExpireTime=(T0 + 2000) / 1000)
    table = JobTable(late_ms=25_000)
    table.upsert(stored, FUNC, last_ms=T0 + 1000, now_ms=T0 + 1500)
    assert fires(table, T0 + 10_000) == [(3000, EVERY), (4000, EVERY), (5000, EVERY),
                                         (6000, EVEN), (8000, EVEN), (10_000, EVEN)]


def test_fire_once_after_downtime_picks_the_latest_fire_of_the_right_schedule() -> None:
    hourly, minutely = "0 * * * *", "* * * * *"
    down = T0 + 3 * 3_600_000 + 40_000
    over = job(cronExpr=hourly, dynamicCronExpr=minutely,
               dynamicCronExprExpireTime=(T0 + 600_000) / 1000)
    table = JobTable(late_ms=25_000)
    table.upsert(over, FUNC, last_ms=T0, now_ms=down)  # the override ended long ago: hourly
    assert fires(table, down) == [(3 * 3_600_000, hourly)]
    still = job(cronExpr=hourly, dynamicCronExpr=minutely)
    table.upsert(still, FUNC, last_ms=T0, now_ms=down)
    assert fires(table, down) == [(3 * 3_600_000, minutely)]


def test_the_plan_alone() -> None:
    base = sched.parse(EVEN, "UTC")

    def next_of(s: sched.Schedule, after_ms: int) -> int | None:
        at = s.next_fire(after_ms / 1000)
        return None if at is None else round(at * 1000)

    plan = plan_for(base, "not a cron", None, None, "UTC")
    assert plan.override is None and plan.next_fire(T0, next_of) == T0 + 2000
    paused = plan_for(base, EVERY, (T0 + 4000) / 1000, (T0 + 6000) / 1000, "UTC")
    assert paused.next_fire(T0, next_of) == T0 + 8000  # the override ended inside the pause
    assert paused.schedule_at(T0 + 4000) is not base and paused.schedule_at(T0 + 4001) is base
