"""The ``_DFF_*`` globals a script module sees: set when it is built and refreshed before
every run (docs/worker.md).

Imported by the child process only: standard library.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # (the sdk uses this module: DFF.TASK)
    from fluxfunc_worker import sdk


def context_globals(ctx: sdk.TaskContext) -> dict[str, object]:
    """The ``_DFF_*`` globals of one run (as DataFlux Func names them: the root task of a
    ``DFF.FUNC`` child is the task that called it, ``"ROOT"`` otherwise; a delayed cron run's
    ``_DFF_CRON_JOB_DELAY`` is its delay in seconds; there is no debugger: ``_DFF_DEBUG`` False)."""
    cron_mode = "cronJob" if ctx.origin == "cronJob" else None
    delay = max(0.0, ctx.eta - ctx.trigger_time) if ctx.eta and ctx.trigger_time else 0
    return {
        "_DFF_DEBUG": False,
        "_DFF_ROOT_TASK_ID": (ctx.origin_id or "ROOT") if ctx.origin == "child" else "ROOT",
        "_DFF_START_TIME": int(ctx.start_time),
        "_DFF_START_TIME_MS": int(ctx.start_time * 1000),
        "_DFF_ETA": ctx.eta,
        "_DFF_DELAY": delay,
        "_DFF_CRON_JOB_DELAY": round(delay) if cron_mode else 0,
        "_DFF_CRON_JOB_EXEC_MODE": cron_mode,
        "_DFF_CRONTAB": ctx.cron_expr,
        "_DFF_CRONTAB_DELAY": round(delay) if cron_mode else 0,
        "_DFF_CRONTAB_EXEC_MODE": cron_mode,
        "_DFF_TASK_ID": ctx.task_id,
        "_DFF_FUNC_ID": ctx.func_id,
        "_DFF_SCRIPT_ID": ctx.script_id,
        "_DFF_SCRIPT_SET_ID": ctx.script_id.split("__", 1)[0],
        "_DFF_FUNC_NAME": ctx.func_id.partition(".")[2],
        "_DFF_FUNC_CHAIN": [*ctx.call_chain, ctx.func_id],
        "_DFF_ORIGIN": ctx.origin,
        "_DFF_ORIGIN_ID": ctx.origin_id,
        "_DFF_TRIGGER_TIME": ctx.trigger_time,
        "_DFF_TRIGGER_TIME_MS": int(ctx.trigger_time * 1000) if ctx.trigger_time else None,
        "_DFF_CRON_EXPR": ctx.cron_expr,
        "_DFF_HTTP_REQUEST": ctx.http_request,
        "_DFF_QUEUE": ctx.queue,
        "_DFF_ATTEMPT": ctx.attempt,
    }
