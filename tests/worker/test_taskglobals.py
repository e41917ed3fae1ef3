"""The ``_DFF_*`` globals of a run: a delayed cron run's delay (``delayed_cron_job``)."""

from __future__ import annotations

from fluxfunc_worker import sdk
from fluxfunc_worker.taskglobals import context_globals

FIRE = 1_704_067_200.0


def ctx(origin: str, eta: float | None) -> sdk.TaskContext:
    return sdk.TaskContext("task-1", "demo__basic.tick", "demo__basic", origin=origin, origin_id="cron-1",
                           trigger_time=FIRE, cron_expr="* * * * *", eta=eta)


def test_a_delayed_cron_run_names_its_delay() -> None:
    g = context_globals(ctx("cronJob", FIRE + 30))
    assert g["_DFF_CRON_JOB_DELAY"] == g["_DFF_CRONTAB_DELAY"] == 30 and g["_DFF_DELAY"] == 30
    assert g["_DFF_CRON_JOB_EXEC_MODE"] == "cronJob" and g["_DFF_TRIGGER_TIME"] == FIRE


def test_the_main_run_and_other_origins_have_no_cron_delay() -> None:
    assert context_globals(ctx("cronJob", None))["_DFF_CRON_JOB_DELAY"] == 0
    g = context_globals(ctx("direct", FIRE + 30))
    assert g["_DFF_CRON_JOB_DELAY"] == 0 and g["_DFF_DELAY"] == 30 and g["_DFF_CRON_JOB_EXEC_MODE"] is None
