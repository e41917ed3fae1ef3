"""The janitor's clearing of cron jobs' expired overrides in the store (SQLite and MariaDB):
one bounded statement, ``updateTime`` untouched, overrides not expired left as they are."""

from __future__ import annotations

import pytest

from fluxfunc_common.clock import FakeClock
from fluxfunc_common.store import Entity, SqlStore

T0 = 1_700_000_000.0
PAST, FUTURE = T0 - 100, T0 + 100


@pytest.fixture
def store(sql_store: SqlStore) -> SqlStore:
    sql_store.clock = FakeClock(T0 - 1000)
    return sql_store


async def _job(store: SqlStore, job_id: str, **overrides: object) -> dict[str, object]:
    return await store.create(Entity.CRON_JOB, {"id": job_id, "funcId": "demo__s.f",
                                                "cronExpr": "* * * * *", **overrides})


async def test_expired_overrides_are_removed_and_nothing_else(store: SqlStore) -> None:
    rows = {
        "both_expired": await _job(store, "both_expired", dynamicCronExpr="*/5 * * * *",
                                   dynamicCronExprExpireTime=PAST, pauseExpireTime=PAST),
        "expr_expired": await _job(store, "expr_expired", dynamicCronExpr="*/5 * * * *",
                                   dynamicCronExprExpireTime=PAST, pauseExpireTime=FUTURE),
        "pause_expired": await _job(store, "pause_expired", dynamicCronExpr="*/5 * * * *",
                                    dynamicCronExprExpireTime=FUTURE, pauseExpireTime=int(PAST)),
        "until_cleared": await _job(store, "until_cleared", dynamicCronExpr="*/5 * * * *",
                                    dynamicCronExprExpireTime=None),
        "text_expiry": await _job(store, "text_expiry", pauseExpireTime="2000-01-01T00:00:00Z"),
        "plain": await _job(store, "plain"),
    }
    assert await store.clear_expired_cron_overrides(T0, limit=100) == 3
    after = {job_id: await store.get(Entity.CRON_JOB, job_id) for job_id in rows}
    assert all(after[j]["updateTime"] == rows[j]["updateTime"] for j in rows)  # the Beat is not woken
    gone = {"dynamicCronExpr", "dynamicCronExprExpireTime", "pauseExpireTime"}
    assert not gone & set(after["both_expired"])
    assert not {"dynamicCronExpr", "dynamicCronExprExpireTime"} & set(after["expr_expired"])
    assert after["expr_expired"]["pauseExpireTime"] == FUTURE
    assert "pauseExpireTime" not in after["pause_expired"]
    assert after["pause_expired"]["dynamicCronExpr"] == "*/5 * * * *"
    for job_id in ("until_cleared", "text_expiry", "plain"):
        assert after[job_id] == rows[job_id]
    assert after["both_expired"]["cronExpr"] == "* * * * *"
    assert await store.clear_expired_cron_overrides(T0, limit=100) == 0


async def test_a_round_clears_at_most_its_limit(store: SqlStore) -> None:
    for n in range(5):
        await _job(store, f"job{n}", pauseExpireTime=PAST)
    assert await store.clear_expired_cron_overrides(T0, limit=2) == 2
    assert await store.clear_expired_cron_overrides(T0, limit=2) == 2
    assert await store.clear_expired_cron_overrides(T0, limit=2) == 1
    assert await store.clear_expired_cron_overrides(PAST, limit=2) == 0
