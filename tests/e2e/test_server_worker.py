"""End to end with real processes: ``fluxfunc-server`` and ``fluxfunc-worker
--concurrency 2`` on a private Redis, driven only over HTTP the way a DataFlux Func user does:
publish a script, create entry points, call them in every style."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from tests.conftest import RedisServer
from tests.server.processes import create_token, running, server, worker, write_config

from fluxfunc_common.proc.localredis import free_port

pytestmark = pytest.mark.slow

SCRIPT = '''
import time

@DFF.API("Plus")
def plus(x, y=1):
    """x + y"""
    return x + y

@DFF.API("Echo")
def echo(**kwargs):
    return kwargs

def divide(x):
    return 1 / x

@DFF.API("Fail")
def fail(x=0):
    return divide(x)

@DFF.API("Slow", timeout=20)
def slow(seconds=2):
    time.sleep(seconds)
    return {"slept": seconds}

@DFF.API("Resp")
def resp():
    return DFF.RESP({"made": True}, status_code=201, headers={"X-From": "func"})

@DFF.API("Request")
def request_info():
    return {"method": _DFF_HTTP_REQUEST["method"], "origin": _DFF_ORIGIN, "task": _DFF_TASK_ID}
'''


class Client:
    """The deployment as a user sees it: a base URL and an admin token."""

    def __init__(self, base: str, token: str) -> None:
        self.base = base
        self.http = requests.Session()
        self.admin = {"Authorization": f"Bearer {token}"}

    def post(self, path: str, body: Any = None, *, admin: bool = True, **kw: Any) -> requests.Response:
        return self.http.post(self.base + path, json=body, headers=self.admin if admin else {},
                              timeout=60, **kw)

    def get(self, path: str, *, admin: bool = True, **kw: Any) -> requests.Response:
        return self.http.get(self.base + path, headers=self.admin if admin else {}, timeout=90, **kw)

    def data(self, resp: requests.Response, status: int = 200) -> Any:
        assert resp.status_code == status, (resp.status_code, resp.text[:1000])
        assert resp.headers["X-Trace-Id"]
        return resp.json()["data"]


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer) -> Iterator[Client]:
    """Server + worker (concurrency 2) processes, stopped after the module's tests."""
    tmp = tmp_path_factory.mktemp("e2e-server")
    port = free_port()
    config = write_config(tmp / "fluxfunc.yaml", redis_url=redis_server.url,
                          namespace="e2e" + secrets.token_hex(4),
                          store_url=f"sqlite:///{tmp / 'store.db'}", port=port,
                          worker={"concurrency": 2})
    base = f"http://127.0.0.1:{port}"
    with running(server(config, tmp, tmp), ready_url=f"{base}/healthz"), \
            running(worker(config, tmp, tmp)) as worker_proc:
        client = Client(base, create_token(config))
        client.data(client.post("/api/v1/scripts", {"id": "demo__e2e", "title": "E2E", "code": SCRIPT}))
        published = client.data(client.post("/api/v1/scripts/demo__e2e/publish"))
        assert [f["name"] for f in published["funcs"]] == ["plus", "echo", "fail", "slow", "resp",
                                                           "request_info"]
        _wait_for_worker(client, worker_proc)
        yield client


def _wait_for_worker(client: Client, worker_proc: Any) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert worker_proc.proc.poll() is None, worker_proc.output()
        services = client.data(client.get("/api/v1/ops/overview"))["services"]
        if services["worker"]:
            return
        time.sleep(0.2)
    raise AssertionError("the worker never sent a heartbeat:\n" + worker_proc.output())


def sync_api(client: Client, func: str, **fields: Any) -> str:
    entry = client.data(client.post("/api/v1/sync-apis", {"funcId": f"demo__e2e.{func}", **fields}))
    return str(entry["id"])


def test_sync_api_normal_and_simplified_get_and_post(deployment: Client) -> None:
    c = deployment
    sid = sync_api(c, "plus", kwargs={"x": "INPUT_BY_CALLER", "y": "INPUT_BY_CALLER"})
    resp = c.post(f"/api/v1/sync/{sid}", {"kwargs": {"x": 2, "y": 3}}, admin=False)
    assert resp.status_code == 200 and resp.json() == 5
    resp = c.get(f"/api/v1/sync/{sid}", admin=False,
                 params={"kwargs": json.dumps({"x": 10}), "options": json.dumps({})})
    assert resp.status_code == 200 and resp.json() == 11
    echo = sync_api(c, "echo")
    resp = c.get(f"/api/v1/sync/{echo}/simplified?a=1&b=two", admin=False)
    assert resp.status_code == 200 and resp.json() == {"a": "1", "b": "two"}
    resp = c.post(f"/api/v1/sync/{echo}/s", {"nested": {"k": [1, 2]}}, admin=False)
    assert resp.status_code == 200 and resp.json() == {"nested": {"k": [1, 2]}}
    resp = c.http.post(f"{c.base}/api/v1/sync/{echo}/s", data="just text",
                       headers={"Content-Type": "text/plain"}, timeout=60)
    assert resp.json() == {"text": "just text"}
    resp = c.post(f"/api/v1/al/{sid}", {"kwargs": {"x": 1, "y": 1}}, admin=False)  # legacy alias
    assert resp.json() == 2


def test_dff_resp_and_request_context(deployment: Client) -> None:
    c = deployment
    resp = c.post(f"/api/v1/sync/{sync_api(c, 'resp')}", admin=False)
    assert resp.status_code == 201 and resp.json() == {"made": True}
    assert resp.headers["X-From"] == "func" and resp.headers["X-Trace-Id"]
    resp = c.get(f"/api/v1/sync/{sync_api(c, 'request_info')}", admin=False)
    info = resp.json()
    assert info["method"] == "GET" and info["origin"] == "syncAPI" and info["task"].startswith("task-")


def test_async_call_then_task_long_poll(deployment: Client) -> None:
    c = deployment
    aid = c.data(c.post("/api/v1/async-apis", {"funcId": "demo__e2e.plus"}))["id"]
    task_id = c.data(c.post(f"/api/v1/async/{aid}", {"kwargs": {"x": 40, "y": 2}}, admin=False))["id"]
    task = c.data(c.get(f"/api/v1/tasks/{task_id}?wait=10", admin=False))
    assert task["status"] == "success" and task["result"] == 42
    assert task["origin"] == "asyncAPI" and task["originId"] == aid and task["queue"] == "async"
    assert task["startTime"] >= task["triggerTime"] and task["endTime"] >= task["startTime"]


def test_failing_function_is_599_with_the_user_traceback(deployment: Client) -> None:
    c = deployment
    resp = c.post(f"/api/v1/sync/{sync_api(c, 'fail')}", {"kwargs": {"x": 0}}, admin=False)
    assert resp.status_code == 599
    body = resp.json()
    assert body["ok"] is False and body["error"] == 599.1 and body["reason"] == "EFuncFailed"
    detail = body["detail"]
    assert "ZeroDivisionError" in detail["exception"]
    assert "divide" in detail["traceback"] and "fail" in detail["traceback"]
    assert "fluxfunc_worker" not in detail["traceback"]  # the user's frames only


def test_slow_call_with_max_wait_is_202_then_the_task_api(deployment: Client) -> None:
    c = deployment
    sid = sync_api(c, "slow")
    resp = c.post(f"/api/v1/sync/{sid}", {"kwargs": {"seconds": 6}, "options": {"maxWait": 1}},
                  admin=False)
    assert resp.status_code == 202  # the wait ended; a call that waited for the end would be a 200
    task_id = resp.json()["data"]["id"]
    assert resp.headers["Location"] == f"/api/v1/tasks/{task_id}"
    task = c.data(c.get(resp.headers["Location"], admin=False))
    assert task["status"] in ("queued", "running")
    task = c.data(c.get(f"/api/v1/tasks/{task_id}?wait=30", admin=False))
    assert task["status"] == "success" and task["result"] == {"slept": 6}


def test_direct_call_and_task_record(deployment: Client) -> None:
    c = deployment
    data = c.data(c.post("/api/v1/func/demo__e2e.plus", {"kwargs": {"x": 1, "y": 2}}))
    assert data["result"] == 3
    deadline = time.monotonic() + 10  # records are written in batches, visible within 2 s
    while time.monotonic() < deadline:
        resp = c.get(f"/api/v1/task-records/{data['taskId']}")
        if resp.status_code == 200:
            record = resp.json()["data"]
            assert record["status"] == "success" and record["result"] == 3
            return
        time.sleep(0.2)
    raise AssertionError("the task record never appeared")
