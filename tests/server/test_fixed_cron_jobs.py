"""Cron jobs on a func published with ``fixed_cron_expr`` (as in DataFlux Func): the func fixes
their expression; creating or changing one to another expression is refused."""

from __future__ import annotations

from tests.server.conftest import Api

FIXED = '''
@DFF.API("Tick", fixed_cron_expr="*/5 * * * *")
def tick():
    return 1
'''


async def test_a_fixed_funcs_cron_jobs_take_its_expression(api: Api) -> None:
    await api.call("POST", "/api/v1/scripts/demo__fixed/publish", json={"code": FIXED})
    job = await api.create("/api/v1/cron-jobs", {"id": "nightly", "funcId": "demo__fixed.tick"})
    assert job["cronExpr"] == "*/5 * * * *"
    same = await api.create("/api/v1/cron-jobs", {"id": "same", "funcId": "demo__fixed.tick",
                                                  "cronExpr": "*/5 * * * *"})
    assert same["cronExpr"] == "*/5 * * * *"
    _, body, _ = await api.call("POST", "/api/v1/cron-jobs", expect=400,
                                json={"id": "other", "funcId": "demo__fixed.tick", "cronExpr": "* * * * *"})
    assert "fixed_cron_expr" in body["message"] and "*/5 * * * *" in body["message"]
    await api.call("PATCH", "/api/v1/cron-jobs/nightly", json={"cronExpr": "0 * * * *"}, expect=400)
    _, body, _ = await api.call("PATCH", "/api/v1/cron-jobs/nightly", json={"isDisabled": True})
    assert body["data"]["cronExpr"] == "*/5 * * * *" and body["data"]["isDisabled"]
    # a func without a fixed expression still needs one
    await api.call("POST", "/api/v1/scripts/demo__plain/publish",
                   json={"code": "@DFF.API('Plain')\ndef plain():\n    return 1\n"})
    _, body, _ = await api.call("POST", "/api/v1/cron-jobs", expect=400,
                                json={"id": "bare", "funcId": "demo__plain.plain"})
    assert "cronExpr is required" in body["message"]
