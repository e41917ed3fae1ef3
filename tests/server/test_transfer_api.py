"""``POST /api/v1/export`` and ``POST /api/v1/import`` (admin): the zip out, the plan back,
a second deployment that exports the same bytes, conflicts as a 409 with nothing written,
sealed secrets, and DataFlux Func's own export file."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient
from tests.common.test_transfer import dff_export_zip
from tests.server.conftest import Api

from fluxfunc_common.crypto import hash_token, new_token
from fluxfunc_common.settings import Settings
from fluxfunc_common.store import Entity
from fluxfunc_server.app import create_app
from fluxfunc_server.appkeys import CTX

PASSPHRASE = "a passphrase for the tests"


@pytest.fixture
async def fresh(aiohttp_client: Callable[..., Awaitable[TestClient[Any, Any]]],
                make_settings: Callable[..., Settings], tmp_path: Path) -> Api:
    """A second deployment with an empty store (same Redis, another secret)."""
    settings = make_settings(store={"url": f"sqlite:///{tmp_path / 'fresh.db'}"},
                             secret="another-secret-for-the-fresh-deployment-0123")
    app = create_app(settings, catalog_ttl=0)
    client = await aiohttp_client(app)
    token = new_token()
    await app[CTX].store.add_admin_token("tok-fresh", hash_token(token), "tests")
    return Api(client, app[CTX], token)


async def populate(api: Api) -> None:
    await api.publish()
    await api.create("/api/v1/env-variables", {"id": "db_pass", "valueType": "password",
                                               "value": "hunter2"})
    await api.create("/api/v1/env-variables", {"id": "limit", "valueType": "integer", "value": "7"})
    await api.create("/api/v1/sync-apis", {
        "id": "sapi-plus", "funcId": "demo__basic.plus", "kwargs": {"x": "INPUT_BY_CALLER"},
        "apiAuth": {"type": "httpBasic", "users": [{"username": "u", "password": "p"}]}})
    await api.create("/api/v1/cron-jobs", {"id": "cron-plus", "funcId": "demo__basic.plus",
                                           "kwargs": {"x": 1}, "cronExpr": "0 * * * *"})


async def export(api: Api, body: dict[str, Any] | None = None) -> bytes:
    _, _, resp = await api.call("POST", "/api/v1/export", json=body or {})
    assert resp.content_type == "application/zip"
    data: bytes = await resp.read()
    return data


def form(data: bytes, **fields: str) -> aiohttp.FormData:
    out = aiohttp.FormData()
    out.add_field("file", data, filename="export.zip", content_type="application/zip")
    for key, value in fields.items():
        out.add_field(key, value)
    return out


async def test_export_import_round_trip(api: Api, fresh: Api) -> None:
    await populate(api)
    data = await export(api)
    _, body, _ = await fresh.call("POST", "/api/v1/import?dryRun=true", data=data,
                                  headers={"Content-Type": "application/zip"})
    plan = body["data"]
    assert plan["dryRun"] is True and plan["applied"] is False
    assert plan["counts"] == {"create": 6, "update": 0, "unchanged": 0, "skip": 0, "conflict": 0}
    assert {"kind": "sync_apis", "id": "sapi-plus", "action": "create", "why": ""} in plan["objects"]
    assert await fresh.ctx.store.find(Entity.SCRIPT, "demo__basic") is None
    version = await fresh.ctx.redis.get(fresh.ctx.keys.scripts_version())
    _, body, _ = await fresh.call("POST", "/api/v1/import", data=form(data))
    assert body["data"]["applied"] is True
    assert await fresh.ctx.redis.get(fresh.ctx.keys.scripts_version()) != version  # workers told
    assert await export(fresh) == data
    _, body, _ = await fresh.call("GET", "/api/v1/funcs/demo__basic.plus")
    assert body["data"]["name"] == "plus"
    _, body, _ = await fresh.call("POST", "/api/v1/import", data=form(data))
    assert body["data"]["applied"] is False and body["data"]["counts"]["unchanged"] == 6


async def test_conflicts_answer_409_and_write_nothing(api: Api, fresh: Api) -> None:
    await populate(api)
    data = await export(api)
    await fresh.create("/api/v1/env-variables", {"id": "limit", "valueType": "integer", "value": 8})
    _, body, _ = await fresh.call("POST", "/api/v1/import", data=form(data), expect=409)
    conflicts = [o for o in body["detail"]["objects"] if o["action"] == "conflict"]
    assert [o["id"] for o in conflicts] == ["limit"]
    assert await fresh.ctx.store.find(Entity.SCRIPT_SET, "demo") is None
    _, body, _ = await fresh.call("POST", "/api/v1/import", data=form(data, overwrite="true"))
    assert body["data"]["counts"]["update"] == 1


async def test_secrets_need_a_passphrase_and_arrive_resealed(api: Api, fresh: Api) -> None:
    await populate(api)
    await api.call("POST", "/api/v1/export", json={"withSecrets": True}, expect=400)
    data = await export(api, {"withSecrets": True, "passphrase": PASSPHRASE})
    assert b"hunter2" not in data
    await fresh.call("POST", "/api/v1/import", data=data, expect=400,
                     headers={"Content-Type": "application/zip",
                              "X-Fluxfunc-Passphrase": "wrong passphrase"})
    await fresh.call("POST", "/api/v1/import", data=form(data, passphrase=PASSPHRASE))
    env = await fresh.ctx.store.get(Entity.ENV_VARIABLE, "db_pass")
    assert fresh.ctx.cipher.decrypt(str(env["valueCipher"])) == "hunter2"
    sapi = await fresh.ctx.store.get(Entity.SYNC_API, "sapi-plus")
    auth = sapi["apiAuth"]
    assert isinstance(auth, dict)
    assert fresh.ctx.cipher.decrypt(auth["users"][0]["passwordCipher"]) == "p"


async def test_admin_only_and_bad_uploads(api: Api) -> None:
    await api.call("POST", "/api/v1/export", admin=False, expect=401)
    await api.call("POST", "/api/v1/import", admin=False, expect=401, data=b"x")
    await api.call("POST", "/api/v1/import", data=b"not a zip", expect=400,
                   headers={"Content-Type": "application/zip"})
    await api.call("POST", "/api/v1/import", json={"file": "x"}, expect=400)


async def test_dataflux_func_export_file(api: Api) -> None:
    _, body, _ = await api.call("POST", "/api/v1/import", data=form(dff_export_zip()))
    assert body["data"]["applied"] is True
    assert any("connector mysql1" in note for note in body["data"]["notes"])
    _, body, _ = await api.call("GET", "/api/v1/sync-apis/auln-plus")
    assert body["data"]["funcId"] == "demo__calc.plus"
