"""One's own console sessions: listed (never their cookie or its hash), all ended by "sign out
everywhere" (audited); a session's editing locks are released when it ends."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp.test_utils import TestClient
from tests.server.accounts import make_user, origin, sign_in
from tests.server.conftest import Api

from fluxfunc_common.roles import Role
from fluxfunc_server import sessions

Connect = Callable[..., Awaitable[TestClient]]
SESSIONS = "/api/v1/auth/sessions"
EVERYWHERE = "/api/v1/auth/sign-out-everywhere"


def _cookie(client: TestClient) -> str:
    return client.session.cookie_jar.filter_cookies(client.make_url("/"))[sessions.COOKIE].value


def _lock(script_id: str) -> str:
    return f"/api/v1/scripts/{script_id}/lock"


async def _browsers(api: Api, aiohttp_client: Connect, username: str) -> tuple[TestClient, TestClient]:
    """``username`` signed in from two browsers (the second with its own user agent)."""
    await make_user(api, username, Role.DEVELOPER)
    await sign_in(api.client, username)
    other = await aiohttp_client(api.client.server, headers={"User-Agent": "Second Browser/1.0"})
    await sign_in(other, username)
    return api.client, other


async def test_sessions_list_ones_own_without_secrets(api: Api, aiohttp_client: Connect) -> None:
    first, second = await _browsers(api, aiohttp_client, "una")
    await make_user(api, "vic")
    await sign_in(await aiohttp_client(api.client.server), "vic")  # not una's
    body = await (await first.get(SESSIONS)).json()
    listed = body["data"]
    assert len(listed) == 2 and sorted(s["isCurrent"] for s in listed) == [False, True]
    assert all(set(s) == {"createdAt", "lastSeenAt", "address", "userAgent", "isCurrent"} for s in listed)
    assert all(s["address"] == "127.0.0.1" and s["lastSeenAt"] >= s["createdAt"] for s in listed)
    other = next(s for s in listed if not s["isCurrent"])
    assert other["userAgent"] == "Second Browser/1.0"
    text = await (await first.get(SESSIONS)).text()
    for sid in (_cookie(first), _cookie(second)):
        assert sid not in text and sessions._hash(sid) not in text
    await api.ctx.redis.delete(api.ctx.keys.session(sessions._hash(_cookie(second))))  # idled out
    assert [s["isCurrent"] for s in (await (await first.get(SESSIONS)).json())["data"]] == [True]
    _, body, _ = await api.call("GET", SESSIONS, expect=400)  # a token has no sessions
    assert "signed-in user" in body["message"]


async def test_sign_out_everywhere_ends_every_session_and_is_audited(
        api: Api, aiohttp_client: Connect) -> None:
    first, second = await _browsers(api, aiohttp_client, "wes")
    resp = await first.post(EVERYWHERE, headers={"Origin": "https://evil.example"})
    assert resp.status == 403
    resp = await first.post(EVERYWHERE, headers=origin(first))
    assert resp.status == 200 and (await resp.json())["data"] == {"username": "wes", "ended": 2}
    assert f"{sessions.COOKIE}=" in resp.headers["Set-Cookie"]  # cleared
    for client in (first, second):
        assert (await client.get("/api/v1/auth/me")).status == 401
    assert not await api.ctx.redis.exists(api.ctx.keys.user_sessions("wes"))
    _, audit, _ = await api.call("GET", f"/api/v1/audit?route={EVERYWHERE}")
    assert [(e["username"], e["via"], e["status"]) for e in audit["data"]] == [
        ("wes", "session", 200), ("wes", "session", 403)]  # the cross-origin refusal too
    await api.call("POST", EVERYWHERE, expect=400)
    assert (await first.post(EVERYWHERE, headers=origin(first))).status == 401


async def test_sign_out_releases_the_locks_taken_through_that_session(
        api: Api, aiohttp_client: Connect) -> None:
    for script_id in ("demo__a", "demo__b", "demo__c"):
        await api.call("POST", "/api/v1/scripts", json={"id": script_id, "code": "x = 1"})
    first, second = await _browsers(api, aiohttp_client, "xia")
    for client, script_id in ((first, "demo__a"), (first, "demo__b"), (second, "demo__c")):
        assert (await client.post(_lock(script_id), json={}, headers=origin(client))).status == 200
    await make_user(api, "yul")
    taker = await aiohttp_client(api.client.server)
    await sign_in(taker, "yul")
    resp = await taker.post(_lock("demo__b"), json={"force": True}, headers=origin(taker))
    assert resp.status == 200  # taken over: no longer xia's to release
    index = api.ctx.keys.session_locks(sessions._hash(_cookie(first)))
    assert (await first.post("/api/v1/auth/sign-out", headers=origin(first))).status == 200
    held = {s: (await (await second.get(_lock(s))).json())["data"] for s in ("demo__a", "demo__b", "demo__c")}
    assert held["demo__a"] is None
    assert held["demo__b"]["holder"] == "yul" and held["demo__c"]["holder"] == "xia"
    assert not await api.ctx.redis.exists(index)


async def test_a_lock_renewed_from_another_session_outlives_the_first(
        api: Api, aiohttp_client: Connect) -> None:
    await api.call("POST", "/api/v1/scripts", json={"id": "demo__shared", "code": "x = 1"})
    first, second = await _browsers(api, aiohttp_client, "zed")
    await first.post(_lock("demo__shared"), json={}, headers=origin(first))
    await second.post(_lock("demo__shared"), json={}, headers=origin(second))  # the same user renews
    await first.post("/api/v1/auth/sign-out", headers=origin(first))
    lock = (await (await second.get(_lock("demo__shared"))).json())["data"]
    assert lock is not None and lock["holder"] == "zed" and set(lock) == {"holder", "expiresAt"}
    assert (await second.post(EVERYWHERE, headers=origin(second))).status == 200
    assert (await api.call("GET", _lock("demo__shared")))[1]["data"] is None


async def test_disabling_a_user_releases_their_locks(api: Api) -> None:
    await api.call("POST", "/api/v1/scripts", json={"id": "demo__held", "code": "x = 1"})
    await make_user(api, "abe", Role.DEVELOPER)
    await sign_in(api.client, "abe")
    await api.client.post(_lock("demo__held"), json={}, headers=origin(api.client))
    await api.call("PATCH", "/api/v1/users/abe", json={"isDisabled": True})
    assert (await api.call("GET", _lock("demo__held")))[1]["data"] is None
