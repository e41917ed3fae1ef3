"""Export/import with real processes (Server, Worker, Beat) over HTTP, the way the console
uses it: an import that changes a published script, an env variable, a connector and a
subscription, and adds a cron job, is picked up by the Worker and the Beat exactly as the same
changes made through the management API would be — without restarting anything. A
subscription the import file has disabled is not started; enabled by the next import, it is."""

from __future__ import annotations

import asyncio
import io
import json
import secrets
import zipfile
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from tests.conftest import RedisServer
from tests.e2e.faults import Deployment
from tests.processes import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

SCRIPT_ID = "demo__xfer"
SCRIPT = '''
VERSION = "v1"

@DFF.API("Probe")
def probe():
    value = DFF.CONN("cache").get("xfer:k")
    return {"version": VERSION, "greeting": DFF.ENV("greeting"),
            "k": value.decode() if isinstance(value, bytes) else value}

@DFF.API("Handle")
def handle(topic, message):
    with open(PATH, "a") as f:
        f.write(message + "\\n")

@DFF.API("Tick")
def tick():
    with open(PATH, "a") as f:
        f.write("tick\\n")
'''


@pytest.fixture
async def deployment(tmp_path: Path, redis_server: RedisServer) -> AsyncIterator[Deployment]:
    d = Deployment(tmp_path, redis_server.url, f"sqlite:///{tmp_path / 'store.db'}")
    try:
        await d.open()
        d.start("fluxfunc_worker", "worker")
        d.start("fluxfunc_beat", "beat")
        await d.workers_ready(1)
        yield d
    finally:
        await d.close()


def _seen(d: Deployment) -> list[str]:
    path = d.tmp / "seen.txt"
    return path.read_text().split("\n")[:-1] if path.exists() else []


async def _export(d: Deployment) -> bytes:
    assert d.http is not None
    async with d.http.post("/api/v1/export", json={}) as resp:
        assert resp.status == 200, await resp.text()
        return await resp.read()


async def _import(d: Deployment, data: bytes, **fields: str) -> dict[str, Any]:
    assert d.http is not None
    form = aiohttp.FormData()
    form.add_field("file", data, filename="export.zip", content_type="application/zip")
    for key, value in fields.items():
        form.add_field(key, value)
    async with d.http.post("/api/v1/import", data=form) as resp:
        body = await resp.json()
        assert resp.status == 200, body
        return dict(body["data"])


def _edited(data: bytes, name: str, edit: Callable[[list[dict[str, Any]]], None]) -> bytes:
    """The export with the rows of ``name`` changed by ``edit``."""
    src, out = zipfile.ZipFile(io.BytesIO(data)), io.BytesIO()
    with src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            body = src.read(info)
            if info.filename == name:
                rows = json.loads(body)
                edit(rows)
                body = json.dumps(rows).encode()
            dst.writestr(info, body)
    return out.getvalue()


async def _probe(d: Deployment, sapi: str) -> dict[str, Any]:
    assert d.http is not None
    async with d.http.post(f"/api/v1/sync/{sapi}", json={"kwargs": {}}) as resp:
        assert resp.status == 200, await resp.text()
        return dict(await resp.json())


async def _published(redis_url: str, channel: str, message: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    try:
        await client.publish(channel, message)
    finally:
        await client.aclose()


async def test_an_import_is_picked_up_like_api_changes(deployment: Deployment,
                                                       redis_server: RedisServer) -> None:
    d = deployment
    channel = "xfer-" + secrets.token_hex(4)
    host, port = "127.0.0.1", redis_server.port
    for db, value in ((5, "five"), (6, "six")):
        async with aioredis.Redis(host=host, port=port, db=db) as r:
            await r.set("xfer:k", value)
    code = SCRIPT.replace("PATH", repr(str(d.tmp / "seen.txt")))
    await d.call("POST", "/api/v1/scripts", {"id": SCRIPT_ID, "title": "Xfer", "code": code})
    await d.call("POST", f"/api/v1/scripts/{SCRIPT_ID}/publish")
    await d.call("POST", "/api/v1/env-variables", {"id": "greeting", "valueType": "string",
                                                   "value": "hello"})
    handler = {"topic": channel, "funcId": f"{SCRIPT_ID}.handle", "isDisabled": True}
    await d.call("POST", "/api/v1/connectors", {
        "id": "cache", "type": "redis", "skipTest": True,
        "config": {"host": host, "port": port, "database": 5, "topicHandlers": [handler]}})
    sapi = (await d.call("POST", "/api/v1/sync-apis", {"funcId": f"{SCRIPT_ID}.probe"}))["id"]
    assert await _probe(d, sapi) == {"version": "v1", "greeting": "hello", "k": "five"}

    # the same objects, changed in the file: new code, new value, another database
    data = await _export(d)
    data = _edited(data, "scripts.json", lambda rows: [
        r.update(publishedCode=str(r["publishedCode"]).replace('"v1"', '"v2"'))
        for r in rows if r["id"] == SCRIPT_ID])
    data = _edited(data, "env_variables.json", lambda rows: [r.update(value="bonjour") for r in rows])
    data = _edited(data, "connectors.json", lambda rows: rows[0]["config"].update(database=6))
    data = _edited(data, "cron_jobs.json", lambda rows: rows.append({
        "id": "cron-xfer", "funcId": f"{SCRIPT_ID}.tick", "kwargs": {}, "cronExpr": "* * * * * *",
        "timezone": "UTC", "isDisabled": False, "tags": [], "note": None}))
    dry = await _import(d, data, dryRun="true")
    assert dry["applied"] is False and dry["counts"]["conflict"] == 3  # no overwrite asked
    assert {o["id"] for o in dry["objects"] if o["action"] == "conflict"} == {
        SCRIPT_ID, "greeting", "cache"}
    done = await _import(d, data, overwrite="true")
    assert done["applied"] is True and done["counts"]["update"] == 3 and done["counts"]["create"] == 1

    # the Worker: new code, new env value, the connector's new config; the Beat: the cron job
    async def probed() -> bool:
        return await _probe(d, sapi) == {"version": "v2", "greeting": "bonjour", "k": "six"}
    await wait_for(probed, 60, 0.2, what="the worker to run the imported code, env and connector")
    await wait_for(lambda: _async("tick" in _seen(d)), 60, 0.2, what="the imported cron job to fire")

    # disabled in the file: no subscription; enabled by the next import: it runs
    for n in range(15):
        await _published(redis_server.url, channel, f"before-{n}")
        await asyncio.sleep(0.2)
    data = _edited(data, "connectors.json",
                   lambda rows: rows[0]["config"]["topicHandlers"][0].update(isDisabled=False))
    again = await _import(d, data, overwrite="true")
    assert [o["id"] for o in again["objects"] if o["action"] == "update"] == ["cache"], again

    async def handled() -> bool:
        await _published(redis_server.url, channel, "after")
        return "after" in _seen(d)
    await wait_for(handled, 60, 0.3, what="the subscription enabled by the import to run")
    assert not [m for m in _seen(d) if m.startswith("before-")]


async def _async(value: bool) -> bool:
    return value
