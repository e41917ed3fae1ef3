"""The management API shows a script's override and timed pause of a cron job with DataFlux
Func's fields (``dynamicCronExpr``, ``dynamicCronExprExpireTime``, ``isPaused``,
``pauseExpireTime``) while they are in force, and ``/next`` fires as the Beat will."""

from __future__ import annotations

import time

import pytest
from tests.server.conftest import Api

from fluxfunc_common.store import Entity


@pytest.mark.usefixtures("published")
async def test_override_and_pause_are_shown_until_they_expire(api: Api) -> None:
    job = await api.create("/api/v1/cron-jobs", {"funcId": "demo__basic.noargs",
                                                 "cronExpr": "0 3 * * *"})
    assert job["dynamicCronExpr"] is None and job["isPaused"] is False
    until = time.time() + 3600
    # what DFF.CRON_JOB.set_cron_expr(..., expires=3600) and pause(3600) store
    await api.ctx.store.update(Entity.CRON_JOB, job["id"], {
        "dynamicCronExpr": "*/10 * * * *", "dynamicCronExprExpireTime": until,
        "pauseExpireTime": until - 1800})
    _, body, _ = await api.call("GET", f"/api/v1/cron-jobs/{job['id']}")
    shown = body["data"]
    assert shown["cronExpr"] == "0 3 * * *" and shown["dynamicCronExpr"] == "*/10 * * * *"
    assert shown["dynamicCronExprExpireTime"] == until
    assert shown["isPaused"] is True and shown["pauseExpireTime"] == until - 1800
    _, body, _ = await api.call("GET", f"/api/v1/cron-jobs/{job['id']}/next?count=2")
    first, second = (f["timestamp"] for f in body["data"]["next"])
    assert first > until - 1800 and second - first == 600  # after the pause, on the override
    _, listed, _ = await api.call("GET", "/api/v1/cron-jobs")
    assert [j["dynamicCronExpr"] for j in listed["data"] if j["id"] == job["id"]] == ["*/10 * * * *"]
    # expired: absent, without anyone clearing them
    await api.ctx.store.update(Entity.CRON_JOB, job["id"], {
        "dynamicCronExprExpireTime": time.time() - 1, "pauseExpireTime": time.time() - 1})
    _, body, _ = await api.call("GET", f"/api/v1/cron-jobs/{job['id']}")
    shown = body["data"]
    assert shown["dynamicCronExpr"] is None and shown["dynamicCronExprExpireTime"] is None
    assert shown["isPaused"] is False and shown["pauseExpireTime"] is None
    # an admin PATCH keeps a script's override; the body cannot set one
    await api.ctx.store.update(Entity.CRON_JOB, job["id"], {"dynamicCronExprExpireTime": None})
    await api.call("PATCH", f"/api/v1/cron-jobs/{job['id']}", json={"note": "x"})
    _, body, _ = await api.call("GET", f"/api/v1/cron-jobs/{job['id']}")
    assert body["data"]["dynamicCronExpr"] == "*/10 * * * *"
    await api.call("PATCH", f"/api/v1/cron-jobs/{job['id']}", json={"dynamicCronExpr": "* * * * *"},
                   expect=400)
