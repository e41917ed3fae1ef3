"""The management REST API: every resource, validation, paging, publish and the
notifications it sends to workers and the Beat."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import orjson
import pytest
from tests.server.conftest import DEMO_SCRIPT, Api

from fluxfunc_common.crypto import Cipher
from fluxfunc_common.envelope import Origin, TaskResult, TaskStatus
from fluxfunc_common.store import Entity


def bad(body: dict[str, Any]) -> str:
    assert body["ok"] is False and body["reason"] == "EClientBadRequest" and body["error"] == 400
    return str(body["message"])


# --- script sets and scripts ------------------------------------------------------------------


async def test_script_sets_crud(api: Api) -> None:
    created = await api.create("/api/v1/script-sets", {"id": "tools", "title": "Tools"})
    assert created["id"] == "tools" and created["createTime"] > 0
    await api.call("POST", "/api/v1/script-sets", json={"id": "tools"}, expect=409)
    for payload in ({"id": "bad id"}, {"id": "x__y"}, {}, {"id": "ok", "title": 5},
                    {"id": "ok", "nope": 1}):
        _, body, _ = await api.call("POST", "/api/v1/script-sets", json=payload, expect=400)
        bad(body)
    _, body, _ = await api.call("PATCH", "/api/v1/script-sets/tools", json={"description": "d"})
    assert body["data"]["description"] == "d" and body["data"]["title"] == "Tools"
    await api.call("PATCH", "/api/v1/script-sets/tools", json={"id": "other"}, expect=400)
    await api.create("/api/v1/scripts", {"id": "tools__a", "code": ""})
    _, body, _ = await api.call("DELETE", "/api/v1/script-sets/tools", expect=403)
    assert body["reason"] == "EBizCondition"
    await api.call("DELETE", "/api/v1/scripts/tools__a")
    await api.call("DELETE", "/api/v1/script-sets/tools")
    await api.call("GET", "/api/v1/script-sets/tools", expect=404)


async def test_scripts_paging_and_filters(api: Api) -> None:
    for i in range(7):
        await api.create("/api/v1/scripts", {"id": f"page__s{i}", "code": f"x = {i}"})
    await api.create("/api/v1/scripts", {"id": "other__s", "code": ""})
    seen: list[str] = []
    cursor = None
    while True:
        query = "scriptSetId=page&limit=3" + (f"&cursor={cursor}" if cursor else "")
        _, body, _ = await api.call("GET", f"/api/v1/scripts?{query}")
        seen += [s["id"] for s in body["data"]]
        assert body["pageInfo"]["limit"] == 3 and body["pageInfo"]["count"] == len(body["data"])
        cursor = body["pageInfo"]["nextCursor"]
        if not cursor:
            break
    assert seen == [f"page__s{i}" for i in range(7)]
    _, body, _ = await api.call("GET", "/api/v1/script-sets/page")  # created with its first script
    assert body["data"]["id"] == "page"
    for query in ("limit=0", "limit=501", "limit=x", "unknown=1", "scriptSetId=" + "x" * 100):
        bad((await api.call("GET", f"/api/v1/scripts?{query}", expect=400))[1])


async def test_publish_extracts_funcs_and_notifies(api: Api) -> None:
    ctx = api.ctx
    await api.create("/api/v1/scripts", {"id": "demo__basic", "title": "Basic", "code": DEMO_SCRIPT})
    events = ctx.redis.pubsub()
    await events.subscribe(ctx.keys.events())
    try:
        _, body, _ = await api.call("POST", "/api/v1/scripts/demo__basic/publish")
        message = None
        deadline = time.monotonic() + 5
        while message is None and time.monotonic() < deadline:
            message = await events.get_message(ignore_subscribe_messages=True, timeout=1)
    finally:
        await events.aclose()
    assert message is not None
    assert orjson.loads(message["data"]) == {"type": "scriptPublished", "scriptId": "demo__basic"}
    assert int(await ctx.redis.get(ctx.keys.scripts_version())) == 1
    data = body["data"]
    names = [f["name"] for f in data["funcs"]]
    assert names == ["plus", "echo", "fail", "slow", "resp", "cached", "text", "noargs"]
    plus = data["funcs"][0]
    assert plus["id"] == "demo__basic.plus" and plus["definition"] == "plus(x, y=1)"
    assert plus["kwargsSpec"] == {"x": {"required": True}, "y": {"default": "1"}}
    assert plus["description"] == "Add two numbers."
    assert data["script"]["publishVersion"] == 1 and data["script"]["publishedCode"] == DEMO_SCRIPT
    _, body, _ = await api.call("GET", "/api/v1/funcs?scriptId=demo__basic&limit=100")
    assert len(body["data"]) == 8
    _, body, _ = await api.call("GET", "/api/v1/funcs/demo__basic.slow")
    assert body["data"]["extraConfig"]["timeout"] == 10
    await api.call("POST", "/api/v1/funcs", json={"id": "x"}, expect=405)
    await api.call("DELETE", "/api/v1/funcs/demo__basic.slow", expect=405)


async def test_publish_new_code_replaces_funcs_and_tells_the_beat(api: Api) -> None:
    ctx = api.ctx
    await api.create("/api/v1/scripts", {"id": "demo__cron", "code": "@DFF.API('a')\ndef a():\n  pass\n"})
    await api.call("POST", "/api/v1/scripts/demo__cron/publish")
    code = "@DFF.API('b', fixed_cron_expr='*/5 * * * *')\ndef b():\n  pass\n"
    _, body, _ = await api.call("POST", "/api/v1/scripts/demo__cron/publish", json={"code": code})
    assert [f["id"] for f in body["data"]["funcs"]] == ["demo__cron.b"]
    assert body["data"]["script"]["publishVersion"] == 2 and body["data"]["script"]["code"] == code
    await api.call("GET", "/api/v1/funcs/demo__cron.a", expect=404)
    changes = await ctx.redis.xrange(ctx.keys.cron_changed())
    assert changes[-1][1] == {b"id": b"cron-fixed-demo__cron.b", b"op": b"create"}
    await api.call("DELETE", "/api/v1/scripts/demo__cron")
    await api.call("GET", "/api/v1/funcs/demo__cron.b", expect=404)
    changes = await ctx.redis.xrange(ctx.keys.cron_changed())
    assert changes[-1][1] == {b"id": b"cron-fixed-demo__cron.b", b"op": b"delete"}


async def test_publish_refuses_bad_code(api: Api) -> None:
    await api.create("/api/v1/scripts", {"id": "demo__bad", "code": "def broken(:\n  pass\n"})
    _, body, _ = await api.call("POST", "/api/v1/scripts/demo__bad/publish", expect=400)
    assert body["reason"] == "EScriptInvalid" and body["detail"]["line"] == 1
    await api.create("/api/v1/scripts", {"id": "demo__empty"})
    bad((await api.call("POST", "/api/v1/scripts/demo__empty/publish", expect=400))[1])
    await api.call("POST", "/api/v1/scripts/demo__none/publish", expect=404)
    bad((await api.call("POST", "/api/v1/scripts/demo__bad/publish", json={"code": 1}, expect=400))[1])
    bad((await api.call("POST", "/api/v1/scripts", json={"id": "nounderscores", "code": ""},
                        expect=400))[1])


async def test_publish_never_runs_the_code(api: Api, tmp_path: Any) -> None:
    marker = tmp_path / "ran"
    code = f"open({str(marker)!r}, 'w').write('x')\n@DFF.API('f')\ndef f():\n  pass\n"
    await api.create("/api/v1/scripts", {"id": "demo__side", "code": code})
    await api.call("POST", "/api/v1/scripts/demo__side/publish")
    assert not marker.exists()


# --- entry points -----------------------------------------------------------------------------


@pytest.mark.usefixtures("published")
@pytest.mark.parametrize("path,prefix", [("sync-apis", "sapi-"), ("async-apis", "aapi-")])
async def test_api_entries_crud(api: Api, path: str, prefix: str) -> None:
    base = f"/api/v1/{path}"
    entry = await api.create(base, {"funcId": "demo__basic.plus", "kwargs": {"x": "INPUT_BY_CALLER"},
                                    "throttling": {"byMinute": 5}, "note": "n",
                                    "expireTime": "2999-01-01T00:00:00+00:00"})
    assert entry["id"].startswith(prefix) and entry["apiAuth"] == {"type": "none"}
    assert entry["expireTime"] == pytest.approx(32472144000.0)
    named = await api.create(base, {"id": "my-entry", "funcId": "demo__basic.noargs"})
    assert named["id"] == "my-entry"
    await api.call("POST", base, json={"id": "my-entry", "funcId": "demo__basic.noargs"}, expect=409)
    _, body, _ = await api.call("GET", f"{base}?funcId=demo__basic.plus")
    assert [e["id"] for e in body["data"]] == [entry["id"]]
    _, body, _ = await api.call("PATCH", f"{base}/{entry['id']}", json={"isDisabled": True, "note": None})
    assert body["data"]["isDisabled"] is True and body["data"]["note"] is None
    assert body["data"]["updateTime"] >= body["data"]["createTime"]
    await api.call("DELETE", f"{base}/{entry['id']}")
    await api.call("GET", f"{base}/{entry['id']}", expect=404)
    await api.call("PATCH", f"{base}/{entry['id']}", json={"note": "x"}, expect=404)
    await api.call("DELETE", f"{base}/{entry['id']}", expect=404)


@pytest.mark.usefixtures("published")
async def test_api_entry_validation(api: Api) -> None:
    cases = [
        ({"funcId": "demo__basic.nope"}, "catalogue"),
        ({"funcId": "demo__basic.plus", "kwargs": {"z": 1}}, "not accepted"),
        ({"funcId": "demo__basic.plus", "isDisabled": "yes"}, "isDisabled"),
        ({"funcId": "demo__basic.plus", "kwargs": []}, "kwargs"),
        ({"funcId": "demo__basic.plus", "throttling": {"byWeek": 1}}, "throttling"),
        ({"funcId": "demo__basic.plus", "throttling": {"byMinute": 0}}, "throttling"),
        ({"funcId": "demo__basic.plus", "expireTime": "someday"}, "expireTime"),
        ({"funcId": "demo__basic.plus", "id": "has space"}, "id"),
        ({"funcId": "demo__basic.plus", "taskRecordLimit": -1}, "taskRecordLimit"),
        ({"funcId": "demo__basic.plus", "funcCallKwargsJSON": {}}, "funcCallKwargsJSON"),
        ({}, "funcId"),
    ]
    for payload, needle in cases:
        _, body, _ = await api.call("POST", "/api/v1/sync-apis", json=payload, expect=400)
        assert needle.lower() in bad(body).lower(), (payload, body["message"])
    for raw in (b"{", b"[]", b'"x"', b"\xff"):
        await api.call("POST", "/api/v1/sync-apis", data=raw, expect=400,
                       headers={"Content-Type": "application/json"})


@pytest.mark.usefixtures("published")
async def test_cron_jobs(api: Api) -> None:
    ctx = api.ctx
    job = await api.create("/api/v1/cron-jobs", {"funcId": "demo__basic.plus", "kwargs": {"x": 1},
                                                 "cronExpr": "*/10 * * * *", "timezone": "Asia/Shanghai"})
    assert job["id"].startswith("cron-") and job["misfirePolicy"] == "fireOnce"
    assert job["overlapPolicy"] == "skip"
    _, body, _ = await api.call("GET", f"/api/v1/cron-jobs/{job['id']}/next?count=3")
    fires = body["data"]["next"]
    assert len(fires) == 3 and fires[1]["timestamp"] - fires[0]["timestamp"] == 600
    assert fires[0]["iso"].endswith("+08:00")
    default_tz = await api.create("/api/v1/cron-jobs", {"funcId": "demo__basic.noargs",
                                                        "cronExpr": "0 * * * * *"})
    assert default_tz["timezone"] == "UTC"
    await api.call("PATCH", f"/api/v1/cron-jobs/{job['id']}", json={"cronExpr": "0 3 * * *"})
    await api.call("DELETE", f"/api/v1/cron-jobs/{job['id']}")
    changes = [(f[b"id"].decode(), f[b"op"].decode())
               for _, f in await ctx.redis.xrange(ctx.keys.cron_changed())]
    assert changes == [(job["id"], "create"), (default_tz["id"], "create"), (job["id"], "update"),
                       (job["id"], "delete")]
    for payload, needle in (
            ({"funcId": "demo__basic.plus", "kwargs": {"x": 1}, "cronExpr": "61 * * * *"}, "cron"),
            ({"funcId": "demo__basic.plus", "kwargs": {"x": 1}, "cronExpr": "* * * * *",
              "timezone": "Mars/Olympus"}, "timezone"),
            ({"funcId": "demo__basic.plus", "cronExpr": "* * * * *"}, "missing"),
            ({"funcId": "demo__basic.plus", "kwargs": {"x": "INPUT_BY_CALLER"}, "cronExpr": "* * * * *"},
             "caller"),
            ({"funcId": "demo__basic.noargs", "cronExpr": "* * * * *", "misfirePolicy": "later"},
             "misfirePolicy"),
            ({"id": "cron-fixed-x", "funcId": "demo__basic.noargs", "cronExpr": "* * * * *"}, "reserved")):
        _, body, _ = await api.call("POST", "/api/v1/cron-jobs", json=payload, expect=400)
        assert needle.lower() in bad(body).lower(), (payload, body["message"])
    await api.call("GET", "/api/v1/cron-jobs/cron-none/next", expect=404)
    await api.call("GET", f"/api/v1/cron-jobs/{default_tz['id']}/next?count=0", expect=400)


# --- env variables ------------------------------------------------------------------------------


@pytest.mark.parametrize("value_type,given,stored", [
    ("string", "abc", "abc"), ("integer", "42", 42), ("integer", 7, 7), ("float", "1.5", 1.5),
    ("boolean", "yes", True), ("boolean", False, False), ("json", '{"a": [1]}', {"a": [1]}),
    ("json", [1, 2], [1, 2]), ("commaArray", "a,b,,c", ["a", "b", "", "c"]),
    ("commaArray", ["x", "y"], ["x", "y"]),
])
async def test_env_variable_types(api: Api, value_type: str, given: Any, stored: Any) -> None:
    created = await api.create("/api/v1/env-variables", {"id": "v1", "valueType": value_type, "value": given})
    assert created["value"] == stored


async def test_env_variable_bad_values(api: Api) -> None:
    for value_type, value in (("integer", "x"), ("float", "nan"), ("boolean", "maybe"),
                              ("json", "{bad"), ("string", 5), ("color", "red"), ("commaArray", [1])):
        await api.call("POST", "/api/v1/env-variables", expect=400,
                       json={"id": "bad", "valueType": value_type, "value": value})
    await api.call("POST", "/api/v1/env-variables", json={"id": "novalue"}, expect=400)


async def test_password_env_variables_are_sealed(api: Api, cipher: Cipher) -> None:
    created = await api.create("/api/v1/env-variables", {"id": "db_pw", "valueType": "password",
                                                         "value": "hunter2"})
    assert created["value"] is None and "valueCipher" not in created
    stored = await api.ctx.store.get(Entity.ENV_VARIABLE, "db_pw")
    assert cipher.decrypt(stored["valueCipher"]) == "hunter2"
    assert "hunter2" not in orjson.dumps(stored).decode()
    _, body, _ = await api.call("GET", "/api/v1/env-variables")
    assert "hunter2" not in orjson.dumps(body).decode() and "valueCipher" not in orjson.dumps(body).decode()
    await api.call("PATCH", "/api/v1/env-variables/db_pw", json={"title": "DB"})  # secret kept
    stored = await api.ctx.store.get(Entity.ENV_VARIABLE, "db_pw")
    assert cipher.decrypt(stored["valueCipher"]) == "hunter2"
    await api.call("PATCH", "/api/v1/env-variables/db_pw", json={"value": "new"})
    stored = await api.ctx.store.get(Entity.ENV_VARIABLE, "db_pw")
    assert cipher.decrypt(stored["valueCipher"]) == "new"
    await api.call("PATCH", "/api/v1/env-variables/db_pw", json={"valueType": "string"}, expect=400)
    _, body, _ = await api.call("PATCH", "/api/v1/env-variables/db_pw",
                                json={"valueType": "string", "value": "plain"})
    assert body["data"]["value"] == "plain"
    stored = await api.ctx.store.get(Entity.ENV_VARIABLE, "db_pw")
    assert stored.get("valueCipher") is None


# --- task records --------------------------------------------------------------------------------


async def test_task_records_filters_and_paging(api: Api) -> None:
    records = []
    for i in range(12):
        result = TaskResult(id=f"task-{i:04d}", func_id="demo__basic.plus" if i % 2 else "demo__basic.echo",
                            status=TaskStatus.SUCCESS if i % 3 else TaskStatus.FAILURE,
                            origin=Origin.SYNC_API if i < 6 else Origin.CRON_JOB,
                            origin_id="sapi-a" if i < 6 else "cron-b", trigger_time=1000.0 + i,
                            end_time=1000.5 + i, result=i)
        records.append(result.model_dump(by_alias=True, mode="json"))
    await api.ctx.store.insert_task_records(records)
    _, body, _ = await api.call("GET", "/api/v1/task-records?limit=5")
    assert [r["id"] for r in body["data"]] == [f"task-{i:04d}" for i in (11, 10, 9, 8, 7)]
    cursor = body["pageInfo"]["nextCursor"]
    _, body, _ = await api.call("GET", f"/api/v1/task-records?limit=5&cursor={cursor}")
    assert body["data"][0]["id"] == "task-0006"
    _, body, _ = await api.call("GET", "/api/v1/task-records?funcId=demo__basic.plus&status=failure")
    assert [r["id"] for r in body["data"]] == ["task-0009", "task-0003"]
    _, body, _ = await api.call("GET", "/api/v1/task-records?origin=cronJob&originId=cron-b&since=1008")
    assert [r["id"] for r in body["data"]] == ["task-0011", "task-0010", "task-0009", "task-0008"]
    _, body, _ = await api.call("GET", "/api/v1/task-records?until=1970-01-01T00:16:42Z")
    assert [r["id"] for r in body["data"]] == ["task-0001", "task-0000"]
    _, body, _ = await api.call("GET", "/api/v1/task-records/task-0004")
    assert body["data"]["result"] == 4
    await api.call("GET", "/api/v1/task-records/task-9999", expect=404)
    for query in ("status=weird", "origin=nowhere", "since=yesterday", "cursor=%%%", "limit=-1"):
        bad((await api.call("GET", f"/api/v1/task-records?{query}", expect=400))[1])


async def test_management_changes_reach_invocation_quickly(api: Api, fake_worker: Any) -> None:
    """With the production catalogue TTL, an entry disabled on one replica is refused by the
    others within the TTL (here: this app's catalogue, TTL 0)."""
    await api.publish()
    entry = await api.create("/api/v1/sync-apis", {"funcId": "demo__basic.noargs"})
    await api.call("POST", f"/api/v1/sync/{entry['id']}", admin=False)
    await api.call("PATCH", f"/api/v1/sync-apis/{entry['id']}", json={"isDisabled": True})
    await asyncio.sleep(0)
    await api.call("POST", f"/api/v1/sync/{entry['id']}", admin=False, expect=403)
