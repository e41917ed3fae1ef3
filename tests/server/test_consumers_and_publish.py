"""Queues nobody reads are loud (a publish warns, the overview flags them, a sync call is
refused at once unless it sets ``maxWait``); cron jobs defined in code can be inspected but not
changed; publishing creates a missing script and answers with one ``codeMD5``; ``/healthz``
names its instance."""

from __future__ import annotations

import hashlib
from pathlib import Path

from tests.server.conftest import Api, FakeWorker

from fluxfunc_common.cli.client import Target
from fluxfunc_common.cli.deploy import ScriptFile, deploy
from fluxfunc_common.heartbeat import heartbeat
from fluxfunc_server.context import AppContext

SLOW = '''
@DFF.API("Slow lane", queue="slow")
def crunch(x=1):
    return x

@DFF.API("Numbered", queue=3)
def legacy():
    return 3

@DFF.API("Usual")
def usual():
    return 0
'''

FIXED = '''
@DFF.API("Tick", fixed_cron_expr="*/5 * * * *")
def tick():
    return 1
'''


async def test_publish_warns_and_the_overview_flags_unread_queues(api: Api) -> None:
    await api.call("POST", "/api/v1/scripts", json={"id": "demo__lanes", "code": SLOW})
    _, body, _ = await api.call("POST", "/api/v1/scripts/demo__lanes/publish", json={})
    warnings = body["data"]["warnings"]
    assert any("demo__lanes.crunch: queue 'slow' has no live consumer" in w for w in warnings), warnings
    assert any("queue '3' has no live consumer" in w for w in warnings), warnings
    assert not any("usual" in w for w in warnings)  # the default queue is not its own

    _, body, _ = await api.call("GET", "/api/v1/ops/overview")
    queues = {q["queue"]: q for q in body["data"]["queues"]}
    assert {"slow", "3"} <= set(queues), sorted(queues)  # listed though no task was sent yet
    assert queues["slow"]["noConsumer"] and queues["3"]["noConsumer"]

    # a worker that reads "slow" (its heartbeat lists it): no warning, no flag
    async with heartbeat(api.ctx.redis, api.ctx.keys, "worker", "w-slow",
                         extra=lambda: {"queues": ["slow"]}):
        _, body, _ = await api.call("POST", "/api/v1/scripts/demo__lanes/publish", json={})
        assert not any("'slow'" in w for w in body["data"]["warnings"])
        _, body, _ = await api.call("GET", "/api/v1/ops/overview")
        queues = {q["queue"]: q for q in body["data"]["queues"]}
        assert not queues["slow"]["noConsumer"] and queues["3"]["noConsumer"]


async def test_a_sync_call_to_an_unread_queue_fails_at_once(api: Api, fake_worker: FakeWorker) -> None:
    await api.call("POST", "/api/v1/scripts/demo__lanes/publish", json={"code": SLOW})
    status, body, _ = await api.call("POST", "/api/v1/func/demo__lanes.crunch", json={"kwargs": {}},
                                     expect=503)
    assert body["reason"] == "EQueueNoConsumer" and body["detail"]["queue"] == "slow"
    assert "no live consumer" in body["message"]
    assert await api.ctx.redis.xlen(api.ctx.keys.queue("slow")) == 0  # nothing was enqueued

    # with maxWait the caller chose to wait: accepted, answered 202 with the task id
    status, body, _ = await api.call("POST", "/api/v1/func/demo__lanes.crunch",
                                     json={"kwargs": {}, "options": {"maxWait": 0.2}}, expect=202)
    assert body["data"]["id"].startswith("task-")
    # the queues the fake worker reads answer as before
    status, body, _ = await api.call("POST", "/api/v1/func/demo__lanes.usual", json={"kwargs": {}},
                                     expect=None)
    assert status != 503, body


async def test_deploy_prints_the_no_consumer_warning(api: Api, tmp_path: Path) -> None:
    lines: list[str] = []
    target = Target(str(api.client.make_url("")).rstrip("/"), api.token)
    script = ScriptFile(tmp_path / "lanes.py", "demo__lanes", "Lanes", None, SLOW)
    assert await deploy(target, [script], out=lines.append) == 0
    assert lines[0].startswith("published demo__lanes"), lines  # created and published in one call
    assert any("warning: demo__lanes.crunch: queue 'slow' has no live consumer" in line
               for line in lines), lines


async def test_publish_creates_a_missing_script_with_one_code_md5(api: Api) -> None:
    await api.call("POST", "/api/v1/scripts/nosuch__x/publish", json={}, expect=404)  # no code
    _, body, _ = await api.call("POST", "/api/v1/scripts/demo__fresh/publish",
                                json={"code": FIXED, "title": "Fresh"})
    script = body["data"]["script"]
    assert script["publishVersion"] == 1 and script["title"] == "Fresh"
    assert script["codeMD5"] == hashlib.md5(FIXED.encode()).hexdigest() and "codeMd5" not in script
    assert [f["id"] for f in body["data"]["funcs"]] == ["demo__fresh.tick"]
    _, body, _ = await api.call("GET", "/api/v1/scripts/demo__fresh")
    assert body["data"]["scriptSetId"] == "demo" and "codeMd5" not in body["data"]
    _, body, _ = await api.call("POST", "/api/v1/scripts/demo__fresh/publish", json={"code": SLOW})
    assert body["data"]["script"]["publishVersion"] == 2
    await api.call("POST", "/api/v1/scripts/Bad-Id/publish", json={"code": FIXED}, expect=400)


async def test_cron_jobs_defined_in_code_are_listed_read_only(api: Api) -> None:
    await api.call("POST", "/api/v1/scripts/demo__fixed/publish", json={"code": FIXED})
    job_id = "cron-fixed-demo__fixed.tick"
    _, body, _ = await api.call("GET", "/api/v1/cron-jobs")
    listed = {j["id"]: j for j in body["data"]}
    assert listed[job_id]["definedInCode"] and listed[job_id]["cronExpr"] == "*/5 * * * *"
    _, body, _ = await api.call("GET", "/api/v1/cron-jobs?funcId=demo__fixed.tick")
    assert [j["id"] for j in body["data"]] == [job_id]
    _, body, _ = await api.call("GET", "/api/v1/cron-jobs?funcId=demo__fixed.other")
    assert body["data"] == []

    _, body, _ = await api.call("GET", f"/api/v1/cron-jobs/{job_id}")
    assert body["data"]["funcId"] == "demo__fixed.tick" and body["data"]["definedInCode"]
    _, body, _ = await api.call("GET", f"/api/v1/cron-jobs/{job_id}/next?count=3")
    fires = [f["timestamp"] for f in body["data"]["next"]]
    assert len(fires) == 3 and all(int(t) % 300 == 0 for t in fires)

    for method, extra in (("PATCH", {"json": {"isDisabled": True}}), ("DELETE", {})):
        _, body, _ = await api.call(method, f"/api/v1/cron-jobs/{job_id}", expect=403, **extra)
        assert "defined in code" in body["message"] and "publish" in body["message"]
    await api.call("GET", "/api/v1/cron-jobs/cron-fixed-demo__fixed.nosuch", expect=404)

    # the job goes when the func no longer has a fixed_cron_expr
    await api.call("POST", "/api/v1/scripts/demo__fixed/publish", json={"code": SLOW})
    await api.call("GET", f"/api/v1/cron-jobs/{job_id}", expect=404)


async def test_healthz_names_its_instance(api: Api) -> None:
    _, body, _ = await api.call("GET", "/healthz", admin=False)
    ctx: AppContext = api.ctx
    assert body["data"] == {"status": "ok", "instance": ctx.server_id}
