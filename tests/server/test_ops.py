"""Ops and health, the error envelope and trace ids on every response."""

from __future__ import annotations

import json
import re
from typing import Any

import pymysql
import pytest
from aiohttp import web
from tests.conftest import RedisServer
from tests.server.conftest import Api, FakeWorker

from fluxfunc_common.envelope import TaskEnvelope, TaskResult, TaskStatus
from fluxfunc_common.errors import Unavailable
from fluxfunc_common.heartbeat import heartbeat
from fluxfunc_server.app import create_app
from fluxfunc_server.middlewares import make_error_middleware


async def test_health_probes(api: Api) -> None:
    _, body, _ = await api.call("GET", "/healthz", admin=False)
    assert body["data"]["status"] == "ok"
    _, body, _ = await api.call("GET", "/readyz", admin=False)
    assert body["data"]["status"] == "ready"
    status, body, resp = await api.call("HEAD", "/", admin=False)
    assert status == 200 and resp.headers["X-Trace-Id"]


async def test_database_down_is_503(api: Api, monkeypatch: pytest.MonkeyPatch) -> None:
    """What the MySQL driver raises when the server is gone becomes ESysUnavailable."""

    async def gone(*args: Any, **kwargs: Any) -> Any:
        raise pymysql.err.OperationalError(2003, "Can't connect to MySQL server on 'db'")

    async def ping() -> None:
        raise Unavailable("database unreachable at db:3306")

    await api.call("GET", "/api/v1/scripts")  # the admin token is cached from here on
    monkeypatch.setattr(api.ctx.store, "ping", ping)
    monkeypatch.setattr(api.ctx.store, "list", gone)
    _, body, _ = await api.call("GET", "/readyz", admin=False, expect=503)
    assert body["reason"] == "ESysUnavailable" and body["error"] == 503
    _, body, _ = await api.call("GET", "/api/v1/scripts", expect=503)
    assert body["reason"] == "ESysUnavailable"
    assert "Traceback" not in json.dumps(body) and "2003" not in json.dumps(body)


async def test_redis_down_is_503(aiohttp_client: Any, make_settings: Any) -> None:
    """A private redis-server killed under a running app: calls answer 503, never 500."""
    private = RedisServer()
    private.start()
    try:
        settings = make_settings(redis={"url": private.url})
        client = await aiohttp_client(create_app(settings))
        assert (await client.get("/readyz")).status == 200
        private.stop()
        for path in ("/readyz", "/api/v1/tasks/task-x"):
            resp = await client.get(path)
            body = await resp.json()
            assert resp.status == 503 and body["reason"] == "ESysUnavailable", (path, body)
            assert resp.headers["X-Trace-Id"] == body["traceId"]
        assert (await client.get("/healthz")).status == 200  # the process is alive
    finally:
        private.stop()


async def test_overview(api: Api) -> None:
    ctx = api.ctx
    async with heartbeat(ctx.redis, ctx.keys, "worker", "w-1", extra=lambda: {"queues": ["default"]}):
        _, body, _ = await api.call("GET", "/api/v1/ops/overview")
    data = body["data"]
    assert {"serverTime", "queues", "deadLetters", "services", "beat"} <= set(data)
    assert [q["queue"] for q in data["queues"]] == ["async", "cron", "default"]
    default = data["queues"][2]
    assert {"length", "pending", "lag", "consumers", "oldestPendingAgeMs", "delayed", "dead",
            "throughputLastMinute"} <= set(default)
    assert [w["instance"] for w in data["services"]["worker"]] == ["w-1"]
    assert data["services"]["server"][0]["instance"] == ctx.server_id
    assert data["services"]["server"][0]["pid"] > 0 and "version" in data["services"]["server"][0]
    assert data["beat"] == {"leader": None, "epoch": None}
    await api.call("GET", "/api/v1/ops/overview?x=1", expect=400)


async def _dead_letter(api: Api) -> str:
    """A task dead-lettered the way a worker does it; returns the dead-letter entry id."""
    ctx = api.ctx
    env = TaskEnvelope(id="task-01DEADLETTER", func_id="demo__basic.plus", kwargs={"x": 1},
                       trigger_time=1.0, queue="default")
    enq = await ctx.streams.enqueue(env, max_len=100)
    _, got = await ctx.streams.claim("c-1", ["default"], 1, marker_ttl_ms=60_000, block_ms=0)
    assert got and got[0].delivery.entry_id == enq.entry_id
    result = TaskResult.for_envelope(env, TaskStatus.DEAD, exception="crashed 5 times")
    assert await ctx.streams.dead("c-1", got[0].delivery, result,
                                  reason="max deliveries", result_ttl_ms=60_000)
    letters = await ctx.streams.dead_letters()
    return letters[-1]["id"]


async def test_dead_letters_and_requeue(api: Api) -> None:
    entry = await _dead_letter(api)
    _, body, _ = await api.call("GET", "/api/v1/ops/dead-letters")
    assert body["data"][0]["task"] == "task-01DEADLETTER" and body["data"][0]["reason"] == "max deliveries"
    _, body, _ = await api.call("GET", "/api/v1/ops/overview")
    assert body["data"]["deadLetters"] == 1
    _, body, _ = await api.call("POST", f"/api/v1/ops/dead-letters/{entry}/requeue")
    assert body["data"]["taskId"] == "task-01DEADLETTER" and body["data"]["entryId"]
    _, body, _ = await api.call("GET", "/api/v1/ops/dead-letters")
    assert body["data"] == []
    await api.call("POST", f"/api/v1/ops/dead-letters/{entry}/requeue", expect=404)
    await api.call("POST", "/api/v1/ops/dead-letters/not-an-id/requeue", expect=404)
    for query in ("count=0", "count=x", "start=bad id", "start=35574297264274182325",
                  "start=1-18446744073709551616"):
        await api.call("GET", f"/api/v1/ops/dead-letters?{query}", expect=400)


@pytest.mark.usefixtures("published")
async def test_metrics(api: Api, fake_worker: FakeWorker) -> None:
    entry = await api.create("/api/v1/sync-apis", {"funcId": "demo__basic.plus"})
    await api.call("POST", f"/api/v1/sync/{entry['id']}", admin=False, json={"kwargs": {"x": 1}})
    await api.call("GET", "/api/v1/nothing-here", admin=False, expect=404)
    _, text, resp = await api.call("GET", "/metrics", admin=False)
    assert resp.content_type == "text/plain"
    assert 'fluxfunc_http_requests_total{method="POST",route="/api/v1/sync/{id}",status="200"} 1.0' in text
    assert 'route="unmatched",status="404"' in text
    assert 'fluxfunc_tasks_total{func="demo__basic.plus",status="success"} 1.0' in text
    assert "fluxfunc_task_duration_seconds_bucket" in text
    assert 'fluxfunc_queue_length{queue="default"}' in text
    assert 'fluxfunc_queue_consumers{queue="default"} 1.0' in text
    assert "fluxfunc_dead_letters 0.0" in text


async def test_openapi_document(api: Api) -> None:
    _, doc, _ = await api.call("GET", "/api/openapi.json", admin=False)
    assert doc["openapi"].startswith("3.")
    paths = doc["paths"]
    for path in ("/api/v1/sync/{id}", "/api/v1/async/{id}/{format}", "/api/v1/func/{func_id}",
                 "/api/v1/func-many", "/api/v1/cron/{id}", "/api/v1/tasks/{task_id}",
                 "/api/v1/tasks/{task_id}/cancel", "/api/v1/scripts/{id}/publish", "/api/v1/funcs",
                 "/api/v1/cron-jobs/{id}/next", "/api/v1/env-variables", "/api/v1/task-records",
                 "/api/v1/ops/overview", "/api/v1/ops/dead-letters/{entry}/requeue", "/metrics",
                 "/healthz", "/readyz", "/", "/api/openapi.json", "/api/v1/al/{id}", "/api/v1/bat/{id}"):
        assert path in paths, path
    # the request models are the very ones that validate
    create = paths["/api/v1/sync-apis"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    model = doc["components"]["schemas"][create["$ref"].rsplit("/", 1)[1]]
    assert model["additionalProperties"] is False and "funcId" in model["required"]
    # every route of the app is documented
    documented = {(m.upper(), p) for p, item in paths.items() for m in item}
    for route in api.client.app.router.routes():
        canonical = route.resource.canonical if route.resource else ""
        path = re.sub(r"\{(\w+):[^}]*\}", r"{\1}", canonical)  # {format:normal|s|…} → {format}
        assert (route.method, path) in documented, (route.method, path)


async def test_trace_ids(api: Api) -> None:
    _, body, resp = await api.call("GET", "/healthz", admin=False, headers={"X-Trace-Id": "my-trace.1"})
    assert resp.headers["X-Trace-Id"] == "my-trace.1" == body["traceId"]
    _, body, resp = await api.call("GET", "/healthz", admin=False,
                                   headers={"X-Trace-Id": "bad trace!" + "x" * 200})
    assert resp.headers["X-Trace-Id"].startswith("TRACE-")
    for method, path, code in (("GET", "/nope", 404), ("PUT", "/healthz", 405),
                               ("GET", "/api/v1/scripts", 401)):
        _, body, resp = await api.call(method, path, admin=False, expect=code)
        assert resp.headers["X-Trace-Id"] == body["traceId"]


async def test_unexpected_errors_never_leak_a_traceback(aiohttp_client: Any) -> None:
    async def boom(request: web.Request) -> web.Response:
        raise RuntimeError("secret internals /etc/passwd")

    app = web.Application(middlewares=[make_error_middleware(1024)])
    app.router.add_get("/boom", boom)
    client = await aiohttp_client(app)
    resp = await client.get("/boom")
    body = await resp.json()
    assert resp.status == 500 and body["reason"] == "ESys" and body["ok"] is False
    assert "secret" not in json.dumps(body) and "Traceback" not in json.dumps(body)
    assert resp.headers["X-Trace-Id"] == body["traceId"]


async def test_out_of_range_entry_ids_are_client_errors(api: Api) -> None:
    """Entry ids beyond 64 bits never reach Redis (it would answer an error → 500)."""
    await api.call("POST", "/api/v1/ops/dead-letters/99999999999999999999-0/requeue", expect=404)
    await api.call("POST", "/api/v1/ops/dead-letters/1-99999999999999999999/requeue", expect=404)
