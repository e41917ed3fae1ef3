"""The leader's job table: pure logic with fixed times (no Redis, no clock)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fluxfunc_beat.jobs import JobTable, epoch_ms
from fluxfunc_common.models import CronJob, Func

T0 = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp() * 1000)  # a whole minute
FUNC = Func(id="demo__basic.tick")
LATE = 25_000


def job(cron_id: str, expr: str = "* * * * * *", **extra: Any) -> CronJob:
    return CronJob.from_row({"id": cron_id, "funcId": FUNC.id, "cronExpr": expr, "createTime": T0 / 1000,
                             "updateTime": T0 / 1000, **extra})


def fires(table: JobTable, now_ms: int) -> list[tuple[str, int]]:
    return sorted((d.job.id, d.fire_ms) for d in table.pop_due(now_ms))


def test_each_second_once_and_only_due_jobs_touched() -> None:
    table = JobTable(late_ms=LATE)
    table.upsert(job("a"), FUNC, last_ms=None, now_ms=T0 + 10)
    table.upsert(job("b", "*/5 * * * * *"), FUNC, last_ms=None, now_ms=T0 + 10)
    assert table.next_due_ms() == T0 + 1000
    assert fires(table, T0 + 999) == []
    assert fires(table, T0 + 1000) == [("a", T0 + 1000)]
    assert fires(table, T0 + 1000) == []  # no double fire of the same second
    # a slow tick: the late seconds are all fired, each once
    assert fires(table, T0 + 5003) == [("a", T0 + 2000), ("a", T0 + 3000), ("a", T0 + 4000),
                                       ("a", T0 + 5000), ("b", T0 + 5000)]
    assert table.next_due_ms() == T0 + 6000


def test_takeover_within_the_late_window_fires_every_second() -> None:
    table = JobTable(late_ms=LATE)
    table.upsert(job("a"), FUNC, last_ms=T0 + 3000, now_ms=T0 + 20_500)  # leader died after 3 s
    assert fires(table, T0 + 20_500) == [("a", T0 + s * 1000) for s in range(4, 21)]


def test_misfire_fire_once_collapses_downtime() -> None:
    table = JobTable(late_ms=LATE)
    down = T0 + 3 * 3_600_000 + 40_000  # hourly job, Beats down for 3 hours
    table.upsert(job("h", "0 * * * *"), FUNC, last_ms=T0, now_ms=down)
    assert fires(table, down) == [("h", T0 + 3 * 3_600_000)]  # the most recent missed fire, once
    assert table.next_due_ms() == T0 + 4 * 3_600_000


def test_misfire_skip_drops_missed_but_keeps_late_and_on_time() -> None:
    late = T0 + 120_000 + LATE + 1
    table = JobTable(late_ms=LATE)
    table.upsert(job("s", "0 * * * * *", misfirePolicy="skip"), FUNC, last_ms=T0, now_ms=late)
    assert fires(table, late) == []  # 60 s and 120 s were missed: none fires
    assert fires(table, T0 + 180_000) == [("s", T0 + 180_000)]
    once = JobTable(late_ms=LATE)
    once.upsert(job("o", "0 * * * * *"), FUNC, last_ms=T0, now_ms=late)
    assert fires(once, late) == [("o", T0 + 120_000)]
    within = JobTable(late_ms=LATE)
    within.upsert(job("w", "0 * * * *", misfirePolicy="skip"), FUNC, last_ms=T0, now_ms=T0 + 3_610_000)
    assert fires(within, T0 + 3_610_000) == [("w", T0 + 3_600_000)]  # 10 s late: not a misfire


def test_per_second_job_after_long_downtime_fires_only_the_late_window() -> None:
    table = JobTable(late_ms=LATE)
    now = T0 + 600_000
    table.upsert(job("a"), FUNC, last_ms=T0, now_ms=now)
    out = fires(table, now)
    assert out == [("a", now - LATE + s * 1000) for s in range(0, 26)]  # missed ones covered


def test_new_job_without_last_fire_starts_from_its_update_time() -> None:
    table = JobTable(late_ms=LATE)
    table.upsert(job("n", "0 * * * *", updateTime=(T0 + 1_000) / 1000), FUNC, last_ms=None, now_ms=T0 + 2_000)
    assert table.next_due_ms() == T0 + 3_600_000


def test_disabled_expired_invalid_and_removed() -> None:
    table = JobTable(late_ms=LATE)
    assert not table.upsert(job("d", isDisabled=True), FUNC, last_ms=None, now_ms=T0)
    assert not table.upsert(job("bad", "99 * * * *"), FUNC, last_ms=None, now_ms=T0)
    assert "bad" in table.invalid
    table.upsert(job("e", expireTime=(T0 + 2500) / 1000), FUNC, last_ms=None, now_ms=T0)
    assert fires(table, T0 + 1000) == [("e", T0 + 1000)]
    assert fires(table, T0 + 2000) == [("e", T0 + 2000)]
    assert fires(table, T0 + 3000) == [] and table.next_due_ms() is None
    table.upsert(job("r"), FUNC, last_ms=None, now_ms=T0)
    table.remove("r")
    assert fires(table, T0 + 10_000) == []
    # expired before its first fire, and an ISO expireTime as the store may hold it
    assert not table.upsert(job("x", "0 * * * *", expireTime="2024-01-01T00:30:00Z"), FUNC,
                            last_ms=None, now_ms=T0)
    # a late batch stops at the expiry too
    late = JobTable(late_ms=LATE)
    late.upsert(job("l", expireTime=(T0 + 3000) / 1000), FUNC, last_ms=None, now_ms=T0)
    assert fires(late, T0 + 9000) == [("l", T0 + 1000), ("l", T0 + 2000), ("l", T0 + 3000)]
    # re-enabling a disabled job schedules it from its update time
    assert table.upsert(job("d", updateTime=(T0 + 20_000) / 1000), FUNC, last_ms=None, now_ms=T0 + 20_100)
    assert fires(table, T0 + 21_000) == [("d", T0 + 21_000)]


def test_update_reschedules_only_when_the_schedule_changes() -> None:
    table = JobTable(late_ms=LATE)
    table.upsert(job("u", "*/10 * * * * *"), FUNC, last_ms=None, now_ms=T0)
    table.upsert(job("u", "*/10 * * * * *", kwargs={"x": 2}), FUNC, last_ms=None, now_ms=T0 + 5000)
    assert table.next_due_ms() == T0 + 10_000
    [due] = table.pop_due(T0 + 10_000)
    assert due.job.kwargs == {"x": 2}
    table.upsert(job("u", "0 * * * * *", updateTime=(T0 + 11_000) / 1000), FUNC, last_ms=T0 + 10_000,
                 now_ms=T0 + 11_000)
    assert table.next_due_ms() == T0 + 60_000


def test_timezone_of_the_job_and_the_default() -> None:
    table = JobTable("Asia/Shanghai", late_ms=LATE)
    table.upsert(job("sh", "0 9 * * *"), FUNC, last_ms=None, now_ms=T0)  # default tz: 09:00 +08 = 01:00Z
    table.upsert(job("ny", "0 9 * * *", timezone="America/New_York"), FUNC, last_ms=None, now_ms=T0)
    assert table.jobs["sh"].next_ms == T0 + 3_600_000
    assert table.jobs["ny"].next_ms == T0 + 14 * 3_600_000


def test_ten_thousand_jobs_share_one_computation() -> None:
    table = JobTable(late_ms=LATE)
    for i in range(10_000):
        table.upsert(job(f"j{i}"), FUNC, last_ms=None, now_ms=T0)
    assert len(table.pop_due(T0 + 1000)) == 10_000
    assert len(table._memo) <= 3  # one next-fire computation per schedule, not per job
    assert table.next_due_ms() == T0 + 2000
    # what a tick costs is a figure of the machine: bench/beat.py measures it (fires/s, Beat CPU)


def test_dedup_ttl_scales_with_period() -> None:
    table = JobTable(late_ms=LATE)
    table.upsert(job("sec"), FUNC, last_ms=None, now_ms=T0)
    table.upsert(job("hour", "0 * * * *", updateTime=T0 / 1000 - 1), FUNC, last_ms=None, now_ms=T0 - 1)
    ttl = {d.job.id: d.dedup_ttl_ms for d in table.pop_due(T0 + 1000)}
    assert ttl["sec"] == 60_000 and ttl["hour"] == 3 * 3_600_000


def test_epoch_ms_reads_numbers_and_iso_text() -> None:
    assert epoch_ms(1.5) == 1500
    assert epoch_ms("2024-01-01T00:00:00Z") == T0
    assert epoch_ms("2024-01-01T08:00:00+08:00") == T0
    assert epoch_ms(None) is None and epoch_ms("") is None and epoch_ms("soon") is None
