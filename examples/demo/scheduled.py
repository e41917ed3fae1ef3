"""Scheduled: functions for cron jobs

``fixed_cron_expr`` makes the function a cron job of its own as soon as it is published.
Any function can also be scheduled through the API: POST /api/v1/cron-jobs
{"funcId": "demo__scheduled.report", "cronExpr": "*/10 * * * * *", "timezone": "Europe/Paris"}
(5 fields, or 6 with seconds first). Each fire happens exactly once, however many Beats run.
"""

import time


@DFF.API("Tick every five minutes", fixed_cron_expr="*/5 * * * *", timeout=30)
def tick():
    """Counts its own runs in DFF.STORE."""
    runs = (DFF.STORE.get("ticks") or 0) + 1
    DFF.STORE.set("ticks", runs)
    print(f"tick #{runs}, scheduled for {_DFF_TRIGGER_TIME} by {_DFF_CRON_EXPR}")
    return {"runs": runs}


@DFF.API("A report for a cron job", timeout=60, expires=300)
def report(kind="daily"):
    """``expires``: a run still waiting in the queue 300 s after its fire time is not started."""
    late = time.time() - float(_DFF_TRIGGER_TIME or time.time())
    return {"kind": kind, "origin": _DFF_ORIGIN, "startedLateBy": round(late, 3)}
