"""Sync API calls: formats, kwargs, caller options, DFF.RESP, maxWait → 202,
function errors, the result cache, disabled/expired entries and bad input."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import orjson
import pytest
from tests.processes import wait_for
from tests.server.conftest import Api, FakeFailure, FakeWorker

from fluxfunc_common.envelope import Origin, TaskStatus

pytestmark = pytest.mark.usefixtures("published")


def error_of(body: dict[str, Any], status: int, reason: str) -> None:
    assert body["ok"] is False
    assert int(body["error"]) == status and body["reason"] == reason, body
    assert body["traceId"] and "message" in body and isinstance(body["detail"], dict)


# --- formats --------------------------------------------------------------------------------


async def test_normal_post_returns_bare_value(api: Api, fake_worker: FakeWorker) -> None:
    sid = await api.entry("sync-apis", kwargs={"x": "INPUT_BY_CALLER"})
    _, body, resp = await api.call("POST", f"/api/v1/sync/{sid}", admin=False,
                                   json={"kwargs": {"x": 2, "y": 3}})
    assert body == 5 and resp.content_type == "application/json"
    env = fake_worker.seen[-1]
    assert env.origin is Origin.SYNC_API and env.origin_id == sid
    assert env.kwargs == {"x": 2, "y": 3} and env.reply_to
    assert env.http_request is not None and env.http_request["method"] == "POST"
    assert env.http_request["body"] == {"kwargs": {"x": 2, "y": 3}}


async def test_normal_get_takes_json_in_query(api: Api, fake_worker: FakeWorker) -> None:
    sid = await api.entry("sync-apis", "echo")
    params = {"kwargs": json.dumps({"a": [1, 2], "b": {"c": None}}), "options": "{}"}
    _, body, _ = await api.call("GET", f"/api/v1/sync/{sid}/normal", admin=False, params=params)
    assert body == {"a": [1, 2], "b": {"c": None}}


@pytest.mark.parametrize("fmt", ["s", "simplified"])
async def test_simplified_get_and_post(api: Api, fake_worker: FakeWorker, fmt: str) -> None:
    sid = await api.entry("sync-apis", "echo")
    _, body, _ = await api.call("GET", f"/api/v1/sync/{sid}/{fmt}?a=1&b=x&b=y", admin=False)
    assert body == {"a": "1", "b": ["x", "y"]}
    _, body, _ = await api.call("POST", f"/api/v1/sync/{sid}/{fmt}", admin=False, json={"n": 1})
    assert body == {"n": 1}
    _, body, _ = await api.call("POST", f"/api/v1/sync/{sid}/{fmt}", admin=False, data={"f": "v"})
    assert body == {"f": "v"}  # a form body


async def test_simplified_text_and_binary_bodies(api: Api, fake_worker: FakeWorker) -> None:
    sid = await api.entry("sync-apis", "echo")
    _, body, _ = await api.call("POST", f"/api/v1/sync/{sid}/s", admin=False, data="hello",
                                headers={"Content-Type": "text/plain"})
    assert body == {"text": "hello"}  # DataFlux Func: a non-JSON text body arrives as {"text"}
    _, body, _ = await api.call("POST", f"/api/v1/sync/{sid}/s", admin=False, data=b"\x00\xff",
                                headers={"Content-Type": "application/octet-stream"})
    assert body == {"base64": "AP8="}


async def test_legacy_alias_al(api: Api, fake_worker: FakeWorker) -> None:
    sid = await api.entry("sync-apis")
    _, body, _ = await api.call("POST", f"/api/v1/al/{sid}", admin=False, json={"kwargs": {"x": 1}})
    assert body == 2
    echo = await api.entry("sync-apis", "echo")
    _, body, _ = await api.call("GET", f"/api/v1/al/{echo}/simplified?x=5", admin=False)
    assert body == {"x": "5"}


async def test_results_of_every_json_kind(api: Api, fake_worker: FakeWorker) -> None:
    sid = await api.entry("sync-apis", "noargs")
    _, body, resp = await api.call("POST", f"/api/v1/sync/{sid}", admin=False)
    assert resp.content_type == "application/json" and body is None
    sid = await api.entry("sync-apis", "text")
    _, body, resp = await api.call("POST", f"/api/v1/sync/{sid}", admin=False)
    assert body == "plain text" and resp.content_type == "text/plain"
    _, body, resp = await api.call("POST", f"/api/v1/sync/{sid}", admin=False,
                                   json={"options": {"returnType": "jsonDumps"}})
    assert body == "plain text" and resp.content_type == "application/json"


async def test_dff_resp_is_honoured(api: Api, fake_worker: FakeWorker) -> None:
    sid = await api.entry("sync-apis", "resp")
    _, body, resp = await api.call("POST", f"/api/v1/sync/{sid}", admin=False, expect=201,
                                        json={"kwargs": {"kind": "k"}})
    assert body == {"kind": "k"} and resp.headers["X-Custom"] == "yes"
    assert resp.headers["X-Trace-Id"]


async def test_unbox_false_wraps_the_result(api: Api, fake_worker: FakeWorker) -> None:
    sid = await api.entry("sync-apis")
    _, body, _ = await api.call("POST", f"/api/v1/sync/{sid}", admin=False,
                                json={"kwargs": {"x": 1}, "options": {"unbox": False}})
    assert body["ok"] is True and body["data"]["result"] == 2 and body["data"]["taskId"].startswith("task-")


# --- kwargs -----------------------------------------------------------------------------------


async def test_fixed_kwargs_cannot_be_overridden(api: Api, fake_worker: FakeWorker) -> None:
    sid = await api.entry("sync-apis", kwargs={"x": 10, "y": "INPUT_BY_CALLER"})
    _, body, _ = await api.call("POST", f"/api/v1/sync/{sid}", admin=False, json={"kwargs": {"y": 5}})
    assert body == 15
    _, body, _ = await api.call("POST", f"/api/v1/sync/{sid}", admin=False, expect=400,
                                json={"kwargs": {"x": 1}})
    error_of(body, 400, "EClientBadRequest")
    assert "fixed" in body["message"]
    _, body, _ = await api.call("GET", f"/api/v1/sync/{sid}/s?x=1", admin=False, expect=400)
    error_of(body, 400, "EClientBadRequest")
    assert len(fake_worker.seen) == 1  # nothing bad was enqueued


async def test_signature_checked_before_enqueue(api: Api, fake_worker: FakeWorker) -> None:
    sid = await api.entry("sync-apis")
    _, body, _ = await api.call("POST", f"/api/v1/sync/{sid}", admin=False, expect=400,
                                json={"kwargs": {"x": 1, "z": 2}})
    assert body["detail"]["unknown"] == ["z"]
    _, body, _ = await api.call("POST", f"/api/v1/sync/{sid}", admin=False, expect=400,
                                json={"kwargs": {"y": 2}})
    assert body["detail"]["missing"] == ["x"]
    sid = await api.entry("sync-apis", "echo")  # **kwargs accepts anything
    _, body, _ = await api.call("POST", f"/api/v1/sync/{sid}", admin=False,
                                json={"kwargs": {"anything": True}})
    assert body == {"anything": True}
    assert len(fake_worker.seen) == 1


# --- bad input ------------------------------------------------------------------------------------


@pytest.mark.parametrize("payload,content_type,needle", [
    (b'{"kwargs": {', "application/json", "Malformed JSON"),
    (b'[1, 2]', "application/json", "normal format"),
    (b'{"kwargs": [1]}', "application/json", "kwargs"),
    (b'{"kwargs": {}, "options": 3}', "application/json", "options"),
    (b'{"kwargs": {}, "extra": 1}', "application/json", "Unknown field"),
    (b'{"options": {"functionId": "x"}}', "application/json", "not allowed"),
    (b'{"options": {"funcId": "demo__basic.fail"}}', "application/json", "not allowed"),
    (b'{"options": {"maxWait": "soon"}}', "application/json", "maxWait"),
    (b'{"options": {"maxWait": -1}}', "application/json", "maxWait"),
    (b'{"options": {"unbox": "yes"}}', "application/json", "unbox"),
    (b'{"options": {"returnType": "xml"}}', "application/json", "returnType"),
    (b'{"options": {"idempotencyKey": 5}}', "application/json", "idempotencyKey"),
    (b"hello", "text/plain", "normal format"),
])
async def test_bad_bodies_are_400(api: Api, fake_worker: FakeWorker, payload: bytes,
                                  content_type: str, needle: str) -> None:
    sid = await api.entry("sync-apis", "echo")
    _, body, _ = await api.call("POST", f"/api/v1/sync/{sid}", admin=False, expect=400, data=payload,
                                headers={"Content-Type": content_type})
    error_of(body, 400, "EClientBadRequest")
    assert needle.lower() in body["message"].lower()
    assert "Traceback" not in json.dumps(body)
    assert fake_worker.seen == []


async def test_bad_queries_are_400(api: Api, fake_worker: FakeWorker) -> None:
    sid = await api.entry("sync-apis", "echo")
    for query in ("kwargs={bad", "kwargs=[1]", "options={bad", "other=1"):
        _, body, _ = await api.call("GET", f"/api/v1/sync/{sid}?{query}", admin=False, expect=400)
        error_of(body, 400, "EClientBadRequest")
    assert fake_worker.seen == []


async def test_unknown_entry_and_route(api: Api) -> None:
    _, body, _ = await api.call("POST", "/api/v1/sync/sapi-nope", admin=False, expect=404)
    error_of(body, 404, "EClientNotFound")
    _, body, _ = await api.call("POST", "/api/v1/sync/sapi-nope/bogus", admin=False, expect=404)
    error_of(body, 404, "EClientNotFound")
    _, body, resp = await api.call("DELETE", "/api/v1/sync/sapi-nope", admin=False, expect=405)
    assert body["ok"] is False and "POST" in resp.headers["Allow"]


async def test_oversized_body_is_413(api: Api, fake_worker: FakeWorker) -> None:
    sid = await api.entry("sync-apis", "echo")
    limit = int(api.ctx.settings.server.max_body_mb * 1024 * 1024)
    big = orjson.dumps({"kwargs": {"blob": "x" * (limit + 10)}})
    _, body, _ = await api.call("POST", f"/api/v1/sync/{sid}", admin=False, expect=413, data=big,
                                headers={"Content-Type": "application/json"})
    error_of(body, 413, "EClientBadRequest")

    async def chunks() -> Any:  # no Content-Length: the limit still holds while reading
        for _ in range(11):
            yield b"x" * (limit // 10)

    _, body, _ = await api.call("POST", f"/api/v1/sync/{sid}/s", admin=False, expect=413,
                                data=chunks(), headers={"Content-Type": "text/plain"})
    error_of(body, 413, "EClientBadRequest")
    assert fake_worker.seen == []


# --- entry state --------------------------------------------------------------------------------


async def test_disabled_and_expired_entries_are_403(api: Api, fake_worker: FakeWorker) -> None:
    sid = await api.entry("sync-apis", "noargs", isDisabled=True)
    _, body, _ = await api.call("POST", f"/api/v1/sync/{sid}", admin=False, expect=403)
    error_of(body, 403, "EBizCondition")
    assert "disabled" in body["message"]
    sid = await api.entry("sync-apis", "noargs", expireTime=time.time() - 1)
    _, body, _ = await api.call("POST", f"/api/v1/sync/{sid}", admin=False, expect=403)
    assert "expired" in body["message"]
    sid = await api.entry("sync-apis", "noargs", expireTime="2999-01-01T00:00:00Z")
    await api.call("POST", f"/api/v1/sync/{sid}", admin=False)
    assert len(fake_worker.seen) == 1


# --- outcomes ----------------------------------------------------------------------------------


async def test_failing_function_is_599_with_user_traceback(api: Api, fake_worker: FakeWorker) -> None:
    sid = await api.entry("sync-apis", "fail")
    _, body, _ = await api.call("POST", f"/api/v1/sync/{sid}", admin=False, expect=599)
    assert body["error"] == 599.1 and body["reason"] == "EFuncFailed"
    assert body["detail"]["exception"].startswith("ZeroDivisionError")
    assert "Traceback" in body["detail"]["traceback"] and "demo__basic" in body["detail"]["traceback"]
    assert body["detail"]["taskId"].startswith("task-")


@pytest.mark.parametrize("status,code,reason", [
    (TaskStatus.TIMEOUT, 599.2, "EFuncTimeout"), (TaskStatus.DEAD, 599.3, "EFuncDead"),
    (TaskStatus.EXPIRED, 599.4, "EFuncExpired"), (TaskStatus.CANCELLED, 599.5, "EFuncCancelled"),
    (TaskStatus.SKIPPED, 599.1, "EFuncFailed"),
])
async def test_every_unsuccessful_status_has_its_code(api: Api, fake_worker: FakeWorker,
                                                      status: TaskStatus, code: float,
                                                      reason: str) -> None:
    async def ends(kw: dict[str, Any], env: Any) -> Any:
        raise FakeFailure(status, f"{status.value}: as the worker reports it")

    fake_worker.funcs["noargs"] = ends
    sid = await api.entry("sync-apis", "noargs")
    _, body, _ = await api.call("POST", f"/api/v1/sync/{sid}", admin=False, expect=599)
    assert body["error"] == code and body["reason"] == reason and body["ok"] is False
    assert body["detail"]["status"] == status.value
    assert body["message"] == f"{status.value}: as the worker reports it"


async def test_max_wait_answers_202_and_keeps_the_result(api: Api, fake_worker: FakeWorker) -> None:
    sid = await api.entry("sync-apis", "slow")
    await fake_worker.pause()  # the function cannot finish until the 202 is in
    _, body, resp = await api.call("POST", f"/api/v1/sync/{sid}", admin=False, expect=202,
                                   json={"kwargs": {"seconds": 0.1}, "options": {"maxWait": 0.2}})
    fake_worker.resume()
    task_id = body["data"]["id"]
    assert resp.headers["Location"] == f"/api/v1/tasks/{task_id}" == body["data"]["location"]
    _, body, _ = await api.call("GET", f"/api/v1/tasks/{task_id}?wait=10", admin=False)
    assert body["data"]["status"] == "success" and body["data"]["result"] == "done"


async def test_cache_result_caches_successes_only(api: Api, fake_worker: FakeWorker) -> None:
    sid = await api.entry("sync-apis", "cached")
    _, first, resp = await api.call("POST", f"/api/v1/sync/{sid}", admin=False, json={"kwargs": {"x": 1}})
    assert "X-Dff-Cache" not in resp.headers
    _, second, resp = await api.call("POST", f"/api/v1/sync/{sid}", admin=False, json={"kwargs": {"x": 1}})
    assert resp.headers["X-Dff-Cache"] == "Cached" and second == first
    _, other, _ = await api.call("POST", f"/api/v1/sync/{sid}", admin=False, json={"kwargs": {"x": 2}})
    assert other["task"] != first["task"]
    assert len(fake_worker.seen) == 2

    async def flaky(kw: dict[str, Any], env: Any) -> Any:
        raise RuntimeError("temporary")

    fake_worker.funcs["cached"] = flaky
    await api.call("POST", f"/api/v1/sync/{sid}", admin=False, json={"kwargs": {"x": 3}}, expect=599)
    await api.call("POST", f"/api/v1/sync/{sid}", admin=False, json={"kwargs": {"x": 3}}, expect=599)
    assert len(fake_worker.seen) == 4  # the failure was not cached: it ran again


async def test_idempotency_key_returns_the_same_task(api: Api, fake_worker: FakeWorker) -> None:
    sid = await api.entry("sync-apis")
    opts = {"kwargs": {"x": 1}, "options": {"idempotencyKey": "k-1", "unbox": False}}
    _, a, _ = await api.call("POST", f"/api/v1/sync/{sid}", admin=False, json=opts)
    _, b, _ = await api.call("POST", f"/api/v1/sync/{sid}", admin=False, json=opts)
    assert a["data"]["taskId"] == b["data"]["taskId"] and b["data"]["result"] == 2
    assert len(fake_worker.seen) == 1


async def test_many_concurrent_calls_share_one_reply_stream(api: Api, fake_worker: FakeWorker) -> None:
    sid = await api.entry("sync-apis")
    calls = [api.call("POST", f"/api/v1/sync/{sid}", admin=False, json={"kwargs": {"x": i}})
             for i in range(200)]
    results = await asyncio.gather(*calls)
    assert [r[1] for r in results] == [i + 1 for i in range(200)]
    assert {env.reply_to for env in fake_worker.seen} == {api.ctx.waiter.reply_key}
    assert api.ctx.waiter.pending == 0


async def _pending(api: Api, count: int) -> bool:
    return api.ctx.waiter.pending == count


async def test_a_thousand_waiting_calls_hold_few_redis_connections(api: Api, fake_worker: FakeWorker) -> None:
    """1,000 sync calls waiting at once: one reply stream, a bounded pool, not 1,000 clients."""
    import aiohttp

    sid = await api.entry("sync-apis")
    before = (await api.ctx.redis.info("clients"))["connected_clients"]
    await fake_worker.pause()  # every call is enqueued and waits
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def call(i: int) -> Any:
            async with http.post(api.client.make_url(f"/api/v1/sync/{sid}"),
                                 json={"kwargs": {"x": i}}) as resp:
                return await resp.json()

        calls = [asyncio.create_task(call(i)) for i in range(1000)]
        await wait_for(lambda: _pending(api, 1000), within=60, what="1,000 waiting calls")
        during = (await api.ctx.redis.info("clients"))["connected_clients"]
        fake_worker.resume()
        results = await asyncio.gather(*calls)
    assert results == [i + 1 for i in range(1000)]
    assert during - before < 80  # the command pool is bounded; waiting costs no connection
