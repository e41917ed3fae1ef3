"""Draft runs (``POST /api/v1/scripts/{id}/draft-run``, docs/http-api.md "Draft runs"): the
Server in process and a real ``fluxfunc-worker`` process on the same Redis and store.

A draft run answers what the draft's code does, while published callers keep running the
published code — also right after a draft run, on the same worker, and when the draft changed
a module it imported (the child that ran a draft retires)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.processes import wait_for
from tests.server.accounts import role_token
from tests.server.conftest import Api
from tests.worker.conftest import FAST, WorkerProcess

from fluxfunc_common.envelope import Origin
from fluxfunc_common.roles import Role
from fluxfunc_common.settings import Settings
from fluxfunc_common.tasks import build_envelope
from fluxfunc_server import routing
from fluxfunc_server.access import Access
from fluxfunc_server.handlers.draft_run import FUNCS_PATH, PATH

pytestmark = pytest.mark.slow

CAP = 5.0  # console.draft_run_max_timeout of these tests

LIB_PUBLISHED = '''
STATE = "clean"

@DFF.API("Greet")
def greet():
    return "published lib"
'''
LIB_DRAFT = LIB_PUBLISHED.replace('"published lib"', '"draft lib"')

APP_PUBLISHED = '''
import demo__lib

@DFF.API("Hello")
def hello(name, punct="!"):
    print("published says hi to", name)
    return {"version": 1, "text": f"hello {name}{punct}", "lib": demo__lib.greet(),
            "state": demo__lib.STATE}
'''

APP_DRAFT = '''
import os
import time
import demo__lib

demo__lib.STATE = "poisoned by the draft"

@DFF.API("Hello")
def hello(name, punct="?"):
    print("draft says hi to", name)
    return {"version": 2, "text": f"hello {name}{punct}", "lib": demo__lib.greet(),
            "origin": _DFF_ORIGIN}

def inner(x):
    return 10 / x

@DFF.API("Divide")
def divide(x):
    print("about to divide")
    return inner(x)

@DFF.API("Spin")
def spin():
    while True:
        pass

@DFF.API("Hold")
def hold(path):
    while not os.path.exists(path):
        time.sleep(0.02)
    return "released"

@DFF.API("Slow", timeout=600)
def slow():
    return "capped"

@DFF.API("Later")
async def later(x):
    return x * 2

def not_exported():
    return 1
'''


@pytest.fixture
def server_settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(tasks={"result_ttl": 600},
                         console={"draft_run_max_timeout": CAP, "draft_runs_per_user": 1})


@pytest.fixture
async def deployment(api: Api, server_settings: Settings, tmp_path: Path) -> AsyncIterator[Api]:
    """Both scripts published, the app's draft changed (not published), the lib's too, and one
    worker process with a single child (so a published call after a draft run uses the same
    worker, and a child that ran a draft must have been replaced)."""
    await api.publish("demo__lib", LIB_PUBLISHED)
    await api.publish("demo__app", APP_PUBLISHED)
    for script_id, code in (("demo__lib", LIB_DRAFT), ("demo__app", APP_DRAFT)):
        await api.call("PATCH", f"/api/v1/scripts/{script_id}", json={"code": code})
    data = server_settings.model_dump(mode="json")
    data["secret"] = "test-secret-for-fluxfunc-tests-only-0123"
    data["worker"] = {**data["worker"], **FAST, "concurrency": 1}
    config = tmp_path / "worker.yaml"
    config.write_text(yaml.safe_dump(data))
    proc = WorkerProcess(config, tmp_path / "worker.log")
    try:
        await wait_for(lambda: api.ctx.redis.exists(api.ctx.keys.queue("default")), 30,
                       what="the worker's consumer group")
        await wait_for(lambda: _worker_alive(api, proc), 30, what="worker heartbeat")
        yield api
    finally:
        proc.kill()


async def _worker_alive(api: Api, proc: WorkerProcess) -> bool:
    assert proc.alive(), proc.text()
    async for _ in api.ctx.redis.scan_iter(match=api.ctx.keys.svc_pattern("worker"), count=100):
        return True
    return False


async def draft_run(api: Api, body: dict[str, Any], *, script: str = "demo__app",
                    expect: int = 200) -> dict[str, Any]:
    _, answer, _ = await api.call("POST", f"/api/v1/scripts/{script}/draft-run", json=body,
                                  expect=expect)
    return answer["data"] if expect == 200 else answer  # type: ignore[no-any-return]


async def published_call(api: Api, func_id: str, kwargs: dict[str, Any]) -> Any:
    _, answer, _ = await api.call("POST", f"/api/v1/func/{func_id}", json={"kwargs": kwargs})
    return answer["data"]["result"]


async def test_a_draft_run_runs_the_draft_and_published_callers_keep_the_published_code(
        deployment: Api) -> None:
    api = deployment
    before = await published_call(api, "demo__app.hello", {"name": "ann"})
    assert before == {"version": 1, "text": "hello ann!", "lib": "published lib", "state": "clean"}
    data = await draft_run(api, {"funcName": "hello", "kwargs": {"name": "bob"}})
    assert data["status"] == "success" and data["error"] is None and data["traceback"] is None
    # the draft's code, its own default, and the PUBLISHED version of the script it imports
    assert data["result"] == {"version": 2, "text": "hello bob?", "lib": "published lib",
                              "origin": "draft"}
    assert data["output"] == "draft says hi to bob\n"
    assert data["taskId"] and data["durationMs"] >= 0
    # right after, on the same single-child worker: the published code, and the lib module the
    # draft changed at import is as published again (the draft's child was retired)
    after = await published_call(api, "demo__app.hello", {"name": "cy"})
    assert after == {"version": 1, "text": "hello cy!", "lib": "published lib", "state": "clean"}
    _, script, _ = await api.call("GET", "/api/v1/scripts/demo__app")
    assert "version\": 2" in script["data"]["code"]  # the draft is still a draft, unpublished


async def test_a_script_never_published_runs_from_its_draft(deployment: Api) -> None:
    code = 'import demo__lib\n\n@DFF.API("New")\ndef new(n=1):\n    return [n, demo__lib.greet()]\n'
    await deployment.call("POST", "/api/v1/scripts", json={"id": "demo__fresh", "code": code})
    data = await draft_run(deployment, {"funcName": "new", "kwargs": {"n": 7}}, script="demo__fresh")
    assert data["status"] == "success" and data["result"] == [7, "published lib"]
    await deployment.call("POST", "/api/v1/func/demo__fresh.new", json={}, expect=404)  # unpublished


async def test_printed_output_error_and_traceback_come_back(deployment: Api) -> None:
    data = await draft_run(deployment, {"funcName": "divide", "kwargs": {"x": 0}})
    assert data["status"] == "failure" and data["result"] is None
    assert data["error"] == "ZeroDivisionError: division by zero"
    assert data["output"] == "about to divide\n"
    tb = data["traceback"]
    assert 'File "<demo__app>"' in tb and "in divide" in tb and "in inner" in tb
    assert "return 10 / x" in tb  # the draft's own source line, not the published code's


async def test_a_draft_that_loops_forever_is_stopped_at_the_cap(deployment: Api) -> None:
    data = await draft_run(deployment, {"funcName": "spin"})
    assert data["status"] == "timeout" and data["result"] is None
    assert data["error"]
    # and the worker goes on: the next draft run and a published call both answer
    data = await draft_run(deployment, {"funcName": "hello", "kwargs": {"name": "dee"}})
    assert data["status"] == "success" and data["result"]["version"] == 2
    assert (await published_call(deployment, "demo__app.hello", {"name": "eve"}))["version"] == 1


async def test_timeouts_are_capped(deployment: Api) -> None:
    body = await draft_run(deployment, {"funcName": "slow", "timeout": CAP + 1}, expect=400)
    assert body["detail"] == {"field": "timeout", "max": CAP}
    data = await draft_run(deployment, {"funcName": "slow", "timeout": 1})
    assert data["status"] == "success" and data["result"] == "capped"


async def test_an_async_def_of_the_draft_runs(deployment: Api) -> None:
    data = await draft_run(deployment, {"funcName": "later", "kwargs": {"x": 21}})
    assert data["status"] == "success" and data["result"] == 42


async def test_kwargs_are_checked_as_for_a_published_call(deployment: Api) -> None:
    body = await draft_run(deployment, {"funcName": "hello", "kwargs": {"nme": "x"}}, expect=400)
    assert body["reason"] == "EClientBadRequest" and body["detail"]["unknown"] == ["nme"]
    body = await draft_run(deployment, {"funcName": "hello", "kwargs": {}}, expect=400)
    assert body["detail"] == {"missing": ["name"]}
    body = await draft_run(deployment, {"funcName": "hello", "kwargs": [1]}, expect=400)
    await draft_run(deployment, {"funcName": "hello", "kwargs": {}, "extra": 1}, expect=400)


async def test_unknown_functions_and_scripts_are_404(deployment: Api) -> None:
    for name in ("nope", "not_exported", "inner"):
        body = await draft_run(deployment, {"funcName": name}, expect=404)
        assert body["detail"] == {"scriptId": "demo__app", "funcName": name}
    await draft_run(deployment, {"funcName": "hello"}, script="demo__missing", expect=404)


async def test_a_draft_with_a_syntax_error_is_a_400_naming_the_line(deployment: Api) -> None:
    await deployment.call("PATCH", "/api/v1/scripts/demo__lib",
                          json={"code": "@DFF.API('x')\ndef x():\n    return (\n"})
    body = await draft_run(deployment, {"funcName": "x"}, script="demo__lib", expect=400)
    assert body["reason"] == "EScriptInvalid" and body["detail"]["line"] >= 3
    assert "syntax error at line" in body["message"]


async def test_a_draft_changed_after_the_check_is_not_run(deployment: Api) -> None:
    """The worker runs the draft only while its MD5 is the one the Server checked."""
    api = deployment
    func = {"id": "demo__app.hello", "scriptId": "demo__app", "name": "hello"}
    env = build_envelope(func, {"name": "x"}, origin=Origin.DRAFT, now=api.ctx.clock.time(),
                         settings=api.ctx.settings.tasks)
    env = env.model_copy(update={"draft_md5": "0" * 32})
    await api.ctx.streams.enqueue(env, max_len=1000)
    result = await wait_for(lambda: api.ctx.streams.get_result(env.id), 30, what="the result")
    assert result.status.value == "failure"
    assert "changed" in (result.exception or "") and result.origin is Origin.DRAFT


async def test_draft_runs_are_recorded_with_origin_draft(deployment: Api) -> None:
    api = deployment
    data = await draft_run(api, {"funcName": "hello", "kwargs": {"name": "rec"}})

    async def listed() -> list[dict[str, Any]]:
        _, body, _ = await api.call("GET", "/api/v1/task-records?origin=draft")
        return [r for r in body["data"] if r["id"] == data["taskId"]]

    record = (await wait_for(listed, 30, what="the draft run's task record"))[0]
    assert record["origin"] == "draft" and record["funcId"] == "demo__app.hello"
    _, body, _ = await api.call("GET", "/api/v1/task-records?origin=direct")
    assert data["taskId"] not in {r["id"] for r in body["data"]}


async def test_one_user_may_have_so_many_draft_runs_under_way(deployment: Api, tmp_path: Path) -> None:
    api = deployment
    gate = tmp_path / "release"
    first = asyncio.ensure_future(draft_run(api, {"funcName": "hold", "kwargs": {"path": str(gate)}}))
    key = api.ctx.keys.draft_runs("token:tok-test")

    async def admitted() -> bool:
        return bool(await api.ctx.redis.zcard(key)) or first.done()

    await wait_for(admitted, 30, what="the first draft run under way")
    body = await draft_run(api, {"funcName": "hello", "kwargs": {"name": "x"}}, expect=429)
    assert body["reason"] == "EClientRateLimit" and body["detail"] == {"limit": 1}
    gate.write_text("go")
    data = await first
    assert data["status"] == "success" and data["result"] == "released"
    assert await api.ctx.redis.zcard(key) == 0
    data = await draft_run(api, {"funcName": "hello", "kwargs": {"name": "y"}})
    assert data["status"] == "success"


async def test_the_functions_of_the_draft_are_listed_with_their_signatures(deployment: Api) -> None:
    _, body, _ = await deployment.call("GET", "/api/v1/scripts/demo__app/draft-funcs")
    funcs = {f["name"]: f for f in body["data"]["funcs"]}
    assert list(funcs) == ["hello", "divide", "spin", "hold", "slow", "later"]
    assert funcs["hello"]["kwargsSpec"] == {"name": {"required": True}, "punct": {"default": "'?'"}}
    assert funcs["later"]["isAsync"] is True and funcs["slow"]["extraConfig"]["timeout"] == 600
    _, script, _ = await deployment.call("GET", "/api/v1/scripts/demo__app")
    assert body["data"]["codeMD5"] == script["data"]["codeMD5"]
    await deployment.call("PATCH", "/api/v1/scripts/demo__lib", json={"code": "def broken(:\n"})
    _, body, _ = await deployment.call("GET", "/api/v1/scripts/demo__lib/draft-funcs", expect=400)
    assert body["reason"] == "EScriptInvalid" and body["detail"]["line"] == 1


async def test_draft_runs_need_the_developer_role(api: Api) -> None:
    rules = routing.rules(api.client.app)
    assert rules[("POST", PATH)].access is Access.DEVELOPER
    assert rules[("GET", FUNCS_PATH)].access is Access.VIEWER
    viewer = await role_token(api, Role.VIEWER)
    _, body, _ = await api.call("POST", "/api/v1/scripts/demo__app/draft-run", admin=False,
                                headers=viewer, json={"funcName": "hello"}, expect=403)
    assert body["reason"] == "EForbidden"
    developer = await role_token(api, Role.DEVELOPER)  # gets past access: the script is missing
    await api.call("POST", "/api/v1/scripts/demo__app/draft-run", admin=False, headers=developer,
                   json={"funcName": "hello"}, expect=404)
