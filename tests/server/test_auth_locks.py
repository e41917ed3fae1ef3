"""Editing locks (issue 16): opening a script takes a renewable lock, another user sees the
holder and can only take it over explicitly; their draft saves meanwhile are refused, API
callers with a token are not."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp.test_utils import TestClient
from tests.server.accounts import make_user, origin, sign_in
from tests.server.conftest import Api

from fluxfunc_common.roles import Role

LOCK = "/api/v1/scripts/demo__locked/lock"


async def _two_editors(api: Api, aiohttp_client: Callable[..., Awaitable[TestClient]]) -> TestClient:
    await api.call("POST", "/api/v1/scripts", json={"id": "demo__locked", "code": "x = 1"})
    await make_user(api, "rita", Role.DEVELOPER)
    await make_user(api, "sam", Role.DEVELOPER)
    await sign_in(api.client, "rita")
    other = await aiohttp_client(api.client.server)
    await sign_in(other, "sam")
    return other


async def test_lock_take_renew_refuse_force_release(
        api: Api, aiohttp_client: Callable[..., Awaitable[TestClient]]) -> None:
    sam = await _two_editors(api, aiohttp_client)
    rita = api.client
    resp = await rita.post(LOCK, json={"force": False}, headers=origin(rita))
    first = (await resp.json())["data"]
    assert resp.status == 200 and first["holder"] == "rita"
    ttl = api.ctx.settings.accounts.edit_lock_seconds
    assert 0 < first["expiresAt"] - api.ctx.clock.time() <= ttl
    renewed = (await (await rita.post(LOCK, json={}, headers=origin(rita))).json())["data"]
    assert renewed["expiresAt"] >= first["expiresAt"]
    resp = await sam.post(LOCK, json={"force": False}, headers=origin(sam))
    body = await resp.json()
    assert resp.status == 409 and body["detail"]["holder"] == "rita" and "expiresAt" in body["detail"]
    seen = (await (await sam.get(LOCK)).json())["data"]
    assert seen["holder"] == "rita"
    resp = await sam.delete(LOCK, headers=origin(sam))
    assert resp.status == 409  # not sam's lock to release
    resp = await sam.post(LOCK, json={"force": True}, headers=origin(sam))
    assert resp.status == 200 and (await resp.json())["data"]["holder"] == "sam"
    resp = await sam.delete(LOCK, headers=origin(sam))
    assert resp.status == 200
    assert (await (await rita.get(LOCK)).json())["data"] is None
    resp = await rita.post("/api/v1/scripts/nope/lock", json={}, headers=origin(rita))
    assert resp.status == 404
    _, audit, _ = await api.call("GET", "/api/v1/audit?route=/api/v1/scripts/{id}/lock")
    assert [(e["username"], e["status"]) for e in audit["data"]] == [("sam", 200)]  # the takeover


async def test_draft_saves_respect_the_lock(
        api: Api, aiohttp_client: Callable[..., Awaitable[TestClient]]) -> None:
    sam = await _two_editors(api, aiohttp_client)
    rita = api.client
    await rita.post(LOCK, json={}, headers=origin(rita))
    draft = {"code": "x = 2"}
    resp = await rita.patch("/api/v1/scripts/demo__locked", json=draft, headers=origin(rita))
    assert resp.status == 200
    resp = await sam.patch("/api/v1/scripts/demo__locked", json={"code": "x = 3"}, headers=origin(sam))
    body = await resp.json()
    assert resp.status == 409 and body["reason"] == "EClientLocked" and body["detail"]["holder"] == "rita"
    resp = await sam.delete("/api/v1/scripts/demo__locked", headers=origin(sam))
    assert resp.status == 409
    resp = await sam.post("/api/v1/scripts/demo__locked/publish", json={}, headers=origin(sam))
    assert resp.status == 409
    await api.call("PATCH", "/api/v1/scripts/demo__locked", json={"code": "x = 4"})  # a token may
    await api.ctx.redis.delete(api.ctx.keys.edit_lock("demo__locked"))  # as if it expired
    resp = await sam.patch("/api/v1/scripts/demo__locked", json={"code": "x = 5"}, headers=origin(sam))
    assert resp.status == 200


async def test_a_viewer_may_see_but_not_take_the_lock(api: Api) -> None:
    await api.call("POST", "/api/v1/scripts", json={"id": "demo__locked", "code": "x = 1"})
    await make_user(api, "tess", Role.VIEWER)
    await sign_in(api.client, "tess")
    assert (await api.client.get(LOCK)).status == 200
    assert (await api.client.post(LOCK, json={}, headers=origin(api.client))).status == 403
