"""The leader's job table: pure logic with fixed times (no Redis, no clock)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fluxfunc_beat.jobs import GRACE_MS, JobTable

T0 = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp() * 1000)  # a whole minute
FUNC = {"id": "demo__basic.tick", "extraConfig": {}}


def job(cron_id: str, expr: str = "* * * * * *", **extra: Any) -> dict[str, Any]:
    return {"id": cron_id, "funcId": FUNC["id"], "cronExpr": expr, "createTime": T0 / 1000,
            "updateTime": T0 / 1000, **extra}


def fires(table: JobTable, now_ms: int) -> list[tuple[str, int]]:
    return sorted((d.job["id"], d.fire_ms) for d in table.pop_due(now_ms))


def test_each_second_once_and_only_due_jobs_touched() -> None:
    table = JobTable()
    table.upsert(job("a"), FUNC, last_ms=None, now_ms=T0 + 10)
    table.upsert(job("b", "*/5 * * * * *"), FUNC, last_ms=None, now_ms=T0 + 10)
    assert table.next_due_ms() == T0 + 1000
    assert fires(table, T0 + 999) == []
    assert fires(table, T0 + 1000) == [("a", T0 + 1000)]
    assert fires(table, T0 + 1000) == []  # no double fire of the same second
    assert fires(table, T0 + 5003) == [("a", T0 + 5000), ("b", T0 + 5000)]  # a: late ticks collapse


def test_misfire_fire_once_collapses_downtime() -> None:
    table = JobTable()
    table.upsert(job("a"), FUNC, last_ms=T0 + 3000, now_ms=T0 + 60_500)
    assert fires(table, T0 + 60_500) == [("a", T0 + 60_000)]  # the most recent missed fire, once
    assert table.next_due_ms() == T0 + 61_000


def test_misfire_skip_drops_missed_but_keeps_on_time() -> None:
    table = JobTable()
    late = T0 + 120_000 + GRACE_MS + 1
    table.upsert(job("s", "0 * * * * *", misfirePolicy="skip"), FUNC, last_ms=T0, now_ms=late)
    assert fires(table, late) == []  # 60 s and 120 s were missed: none fires
    assert fires(table, T0 + 180_000) == [("s", T0 + 180_000)]
    once = JobTable()
    once.upsert(job("o", "0 * * * * *"), FUNC, last_ms=T0, now_ms=late)
    assert fires(once, late) == [("o", T0 + 120_000)]
    hourly = JobTable()
    hourly.upsert(job("h", "0 * * * *", misfirePolicy="skip"), FUNC, last_ms=T0, now_ms=T0 + 7_200_200)
    assert fires(hourly, T0 + 7_200_200) == [("h", T0 + 7_200_000)]  # within grace: on time


def test_new_job_without_last_fire_starts_from_its_update_time() -> None:
    table = JobTable()
    table.upsert(job("n", "0 * * * *", updateTime=(T0 + 1_000) / 1000), FUNC, last_ms=None, now_ms=T0 + 2_000)
    assert table.next_due_ms() == T0 + 3_600_000


def test_disabled_expired_invalid_and_removed() -> None:
    table = JobTable()
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


def test_update_reschedules_only_when_the_schedule_changes() -> None:
    table = JobTable()
    table.upsert(job("u", "*/10 * * * * *"), FUNC, last_ms=None, now_ms=T0)
    table.upsert(job("u", "*/10 * * * * *", kwargs={"x": 2}), FUNC, last_ms=None, now_ms=T0 + 5000)
    assert table.next_due_ms() == T0 + 10_000
    [due] = table.pop_due(T0 + 10_000)
    assert due.job["kwargs"] == {"x": 2}
    table.upsert(job("u", "0 * * * * *", updateTime=(T0 + 11_000) / 1000), FUNC, last_ms=T0 + 10_000,
                 now_ms=T0 + 11_000)
    assert table.next_due_ms() == T0 + 60_000


def test_ten_thousand_jobs_share_one_computation() -> None:
    table = JobTable()
    for i in range(10_000):
        table.upsert(job(f"j{i}"), FUNC, last_ms=None, now_ms=T0)
    assert len(table.pop_due(T0 + 1000)) == 10_000
    assert len(table._memo) <= 3
    assert table.next_due_ms() == T0 + 2000


def test_dedup_ttl_scales_with_period() -> None:
    table = JobTable()
    table.upsert(job("sec"), FUNC, last_ms=None, now_ms=T0)
    table.upsert(job("hour", "0 * * * *", updateTime=T0 / 1000 - 1), FUNC, last_ms=None, now_ms=T0 - 1)
    ttl = {d.job["id"]: d.dedup_ttl_ms for d in table.pop_due(T0 + 1000)}
    assert ttl["sec"] == 60_000 and ttl["hour"] == 3 * 3_600_000
