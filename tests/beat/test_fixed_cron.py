"""``fixed_cron_expr`` as in DataFlux Func: it fixes the expression of the cron jobs created on
the func and schedules nothing by itself."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from tests.beat.conftest import cron_row, func_row

from fluxfunc_beat.beat import Beat
from fluxfunc_beat.jobs import JobTable, with_fixed_expr
from fluxfunc_common.models import CronJob, Func
from fluxfunc_common.redisconn import RedisClients
from fluxfunc_common.settings import Settings
from fluxfunc_common.store import Entity, Store

T0 = int(datetime(2024, 1, 1, tzinfo=UTC).timestamp() * 1000)
FIXED = "0 0 3 * * *"


def fixed_func(expr: str | None = FIXED) -> Func:
    return Func.from_row(func_row(fixedCronExpr=expr))


def test_the_funcs_fixed_expression_wins() -> None:
    job = CronJob.from_row(cron_row("j", "* * * * * *", createTime=T0 / 1000, updateTime=T0 / 1000))
    assert with_fixed_expr(job, fixed_func()).cron_expr == FIXED
    assert with_fixed_expr(job, fixed_func(None)) is job
    assert with_fixed_expr(job, None) is job
    table = JobTable(late_ms=25_000)
    assert table.upsert(job, fixed_func(), last_ms=None, now_ms=T0)
    assert table.jobs["j"].next_ms == T0 + 3 * 3_600_000
    # a publish that changes the fixed expression reschedules the job
    assert table.upsert(job, fixed_func("0 0 5 * * *"), last_ms=None, now_ms=T0)
    assert table.jobs["j"].next_ms == T0 + 5 * 3_600_000
    [due] = table.pop_due(T0 + 5 * 3_600_000)
    assert due.job.cron_expr == "0 0 5 * * *"  # what the fire's envelope names


async def test_publishing_schedules_nothing_and_jobs_follow_the_func(
        clients: RedisClients, store: Store, make_settings: Callable[..., Settings]) -> None:
    await store.create(Entity.FUNC, func_row(fixedCronExpr=FIXED))
    beat = Beat(make_settings(), clients, store)
    await beat.sync_time()
    await beat.partitions.step()  # one Beat: every partition
    await beat.catalog.start()
    assert len(beat.table) == 0  # no job nobody created
    await store.create(Entity.CRON_JOB, cron_row("mine", "* * * * * *"))
    await beat.catalog.apply_changes(["mine"])
    assert beat.table.jobs["mine"].job.cron_expr == FIXED
    await beat.catalog.apply_changes(["cron-fixed-demo__basic.tick"])  # a publish's notice: no job
    assert list(beat.table.jobs) == ["mine"]
    # re-published with another fixed expression: the job follows it
    await store.update(Entity.FUNC, "demo__basic.tick",
                       {"extraConfig": {**func_row()["extraConfig"], "fixedCronExpr": "0 0 5 * * *"}})
    await clients.main.incr(clients.keys.scripts_version())
    await beat.catalog.watch_funcs()
    assert beat.table.jobs["mine"].job.cron_expr == "0 0 5 * * *"
    # no longer fixed: the job's own expression again
    await store.update(Entity.FUNC, "demo__basic.tick", {"extraConfig": func_row()["extraConfig"]})
    await clients.main.incr(clients.keys.scripts_version())
    await beat.catalog.watch_funcs()
    assert beat.table.jobs["mine"].job.cron_expr == "* * * * * *"
