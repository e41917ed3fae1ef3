"""Async API calls, direct calls by func id, many calls at once and running a cron job now."""

from __future__ import annotations

import time
from typing import Any

import pytest
from tests.server.conftest import Api, FakeWorker

from fluxfunc_common.envelope import Origin

pytestmark = pytest.mark.usefixtures("published")


async def wait_task(api: Api, task_id: str, *, admin: bool = False) -> dict[str, Any]:
    _, body, _ = await api.call("GET", f"/api/v1/tasks/{task_id}?wait=10", admin=admin)
    data: dict[str, Any] = body["data"]
    return data


async def test_async_api_enqueues_and_answers_the_task_id(api: Api, fake_worker: FakeWorker) -> None:
    aid = await api.entry("async-apis", kwargs={"x": "INPUT_BY_CALLER"})
    _, body, _ = await api.call("POST", f"/api/v1/async/{aid}", admin=False, json={"kwargs": {"x": 4}})
    task_id = body["data"]["id"]
    assert body["ok"] is True and task_id.startswith("task-")
    task = await wait_task(api, task_id)
    assert task["status"] == "success" and task["result"] == 5
    assert task["origin"] == "asyncAPI" and task["originId"] == aid and task["queue"] == "async"
    env = fake_worker.seen[-1]
    assert env.origin is Origin.ASYNC_API and env.reply_to is None


async def test_async_api_formats_and_legacy_alias(api: Api, fake_worker: FakeWorker) -> None:
    aid = await api.entry("async-apis", "echo")
    _, body, _ = await api.call("GET", f"/api/v1/bat/{aid}/s?a=1", admin=False)
    assert (await wait_task(api, body["data"]["id"]))["result"] == {"a": "1"}
    _, body, _ = await api.call("GET", f"/api/v1/async/{aid}?kwargs=%7B%22b%22%3A2%7D", admin=False)
    assert (await wait_task(api, body["data"]["id"]))["result"] == {"b": 2}


async def test_async_api_refuses_sync_only_options(api: Api, fake_worker: FakeWorker) -> None:
    aid = await api.entry("async-apis")
    _, body, _ = await api.call("POST", f"/api/v1/async/{aid}", admin=False, expect=400,
                                json={"kwargs": {"x": 1}, "options": {"maxWait": 1}})
    assert body["detail"]["allowed"] == ["idempotencyKey"]
    _, a, _ = await api.call("POST", f"/api/v1/async/{aid}", admin=False,
                             json={"kwargs": {"x": 1}, "options": {"idempotencyKey": "same"}})
    _, b, _ = await api.call("POST", f"/api/v1/async/{aid}", admin=False,
                             json={"kwargs": {"x": 1}, "options": {"idempotencyKey": "same"}})
    assert a["data"]["id"] == b["data"]["id"]


async def test_async_api_disabled_expired_and_unknown(api: Api) -> None:
    aid = await api.entry("async-apis", isDisabled=True)
    _, body, _ = await api.call("POST", f"/api/v1/async/{aid}", admin=False, expect=403)
    assert body["reason"] == "EBizCondition"
    aid = await api.entry("async-apis", expireTime=time.time() - 5)
    await api.call("POST", f"/api/v1/async/{aid}", admin=False, expect=403)
    await api.call("POST", "/api/v1/async/aapi-missing", admin=False, expect=404)


async def test_queue_full_is_429(api: Api, server_settings: Any, aiohttp_client: Any) -> None:
    from fluxfunc_server.app import create_app
    from fluxfunc_server.appkeys import CTX

    small = server_settings.with_overrides(redis={"queue_max_len": 2})
    client = await aiohttp_client(create_app(small, catalog_ttl=0))
    aid = await api.entry("async-apis")
    for _ in range(2):
        resp = await client.post(f"/api/v1/async/{aid}", json={"kwargs": {"x": 1}})
        assert resp.status == 200
    resp = await client.post(f"/api/v1/async/{aid}", json={"kwargs": {"x": 1}})
    body = await resp.json()
    assert resp.status == 429 and body["reason"] == "EQueueFull"
    assert client.app[CTX].waiter.pending == 0


# --- direct calls --------------------------------------------------------------------------------


async def test_direct_sync_call_wraps_the_result(api: Api, fake_worker: FakeWorker) -> None:
    _, body, _ = await api.call("POST", "/api/v1/func/demo__basic.plus", json={"kwargs": {"x": 1, "y": 2}})
    assert body["data"]["result"] == 3 and body["data"]["taskId"].startswith("task-")
    assert fake_worker.seen[-1].origin is Origin.DIRECT
    _, body, _ = await api.call("POST", "/api/v1/func/demo__basic.plus",
                                json={"kwargs": {"x": 1}, "options": {"unbox": True}})
    assert body == 2


async def test_direct_async_eta_and_delay(api: Api, fake_worker: FakeWorker) -> None:
    _, body, _ = await api.call("POST", "/api/v1/func/demo__basic.plus",
                                json={"kwargs": {"x": 1}, "options": {"async": True}})
    assert (await wait_task(api, body["data"]["id"], admin=True))["result"] == 2
    eta = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
    _, body, _ = await api.call("POST", "/api/v1/func/demo__basic.plus",
                                json={"kwargs": {"x": 1}, "options": {"eta": eta}})
    delayed_id = body["data"]["id"]
    _, body, _ = await api.call("POST", "/api/v1/func/demo__basic.plus",
                                json={"kwargs": {"x": 1}, "options": {"delay": 600}})
    ctx = api.ctx
    assert await ctx.redis.zscore(ctx.keys.delayed("default"), delayed_id) is not None
    assert await ctx.redis.zscore(ctx.keys.delayed("default"), body["data"]["id"]) is not None
    _, task, _ = await api.call("GET", f"/api/v1/tasks/{delayed_id}")
    assert task["data"]["status"] == "queued"


async def test_direct_call_bad_input(api: Api) -> None:
    path = "/api/v1/func/demo__basic.plus"
    for payload, needle in (({"kwargs": {"x": 1}, "options": {"eta": "tomorrow"}}, "eta"),
                            ({"kwargs": {"x": 1}, "options": {"delay": "x"}}, "delay"),
                            ({"kwargs": {"x": 1}, "options": {"queue": "bad name!"}}, "queue"),
                            ({"kwargs": {"x": 1}, "options": {"priority": 1}}, "not allowed"),
                            ({"kwargs": {"nope": 1}}, "unknown kwarg"),
                            ({"kwargs": {"x": 1}, "funcId": "demo__basic.fail"}, "unknown field")):
        _, body, _ = await api.call("POST", path, json=payload, expect=400)
        assert needle in body["message"].lower(), body
    await api.call("POST", "/api/v1/func/demo__basic.missing", json={}, expect=404)
    await api.call("POST", path, json={"kwargs": {"x": 1}}, admin=False, expect=401)


async def test_func_many_enqueues_all_in_one_go(api: Api, fake_worker: FakeWorker) -> None:
    calls = [{"funcId": "demo__basic.plus", "kwargs": {"x": i}} for i in range(5)]
    calls.append({"funcId": "demo__basic.echo", "kwargs": {"k": "v"}, "options": {"queue": "async"}})
    _, body, _ = await api.call("POST", "/api/v1/func-many", json={"calls": calls})
    ids = body["data"]["ids"]
    assert len(ids) == 6
    results = [(await wait_task(api, task_id, admin=True))["result"] for task_id in ids]
    assert results == [1, 2, 3, 4, 5, {"k": "v"}]


async def test_func_many_checks_every_call_first(api: Api, fake_worker: FakeWorker) -> None:
    calls = [{"funcId": "demo__basic.plus", "kwargs": {"x": 1}},
             {"funcId": "demo__basic.plus", "kwargs": {"bad": 1}}]
    _, body, _ = await api.call("POST", "/api/v1/func-many", json={"calls": calls}, expect=400)
    assert body["detail"]["index"] == 1 and body["message"].startswith("calls[1]")
    for payload in ({"calls": []}, {"calls": "x"}, {"calls": [1]}, {"other": 1},
                    {"calls": [{"funcId": ""}]}, {"calls": [{"funcId": "demo__basic.plus", "x": 1}]}):
        await api.call("POST", "/api/v1/func-many", json=payload, expect=400)
    await api.call("POST", "/api/v1/func-many", json={"calls": [{"funcId": "demo__basic.nope"}]},
                   expect=404)
    assert fake_worker.seen == []


# --- cron job run now -----------------------------------------------------------------------------


async def test_run_cron_job_now(api: Api, fake_worker: FakeWorker) -> None:
    job = await api.create("/api/v1/cron-jobs", {"funcId": "demo__basic.plus", "kwargs": {"x": 41},
                                                 "cronExpr": "0 0 1 1 *"})
    _, body, _ = await api.call("POST", f"/api/v1/cron/{job['id']}")
    assert body["data"]["status"] == "fired" and body["data"]["queue"] == "cron"
    task = await wait_task(api, body["data"]["id"], admin=True)
    assert task["result"] == 42 and task["origin"] == "cronJob" and task["originId"] == job["id"]
    await api.call("POST", "/api/v1/cron/cron-missing", expect=404)
    await api.call("POST", f"/api/v1/cron/{job['id']}", admin=False, expect=401)
    await api.call("POST", f"/api/v1/cron/{job['id']}", data=b"{bad", expect=400,
                   headers={"Content-Type": "application/json"})
