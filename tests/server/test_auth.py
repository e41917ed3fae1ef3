"""Console sign-in (issue 16): the session cookie, sign-out, me, password change, throttling,
the Origin check on cookie-authenticated mutating calls."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
from aiohttp.test_utils import TestClient
from tests.server.accounts import PASSWORD, make_user, origin, role_token, sign_in
from tests.server.conftest import Api

from fluxfunc_common.roles import Role
from fluxfunc_common.settings import Settings
from fluxfunc_server import lockout, sessions
from fluxfunc_server.app import create_app

Browser = Callable[[], Awaitable[TestClient]]


@pytest.fixture
def browser(api: Api, aiohttp_client: Callable[..., Awaitable[TestClient]]) -> Browser:
    """Another browser (its own cookie jar) on the same Server."""
    async def make() -> TestClient:
        return await aiohttp_client(api.client.server)
    return make


async def test_sign_in_sets_a_strict_http_only_cookie_and_me_answers(api: Api) -> None:
    await make_user(api, "dora", Role.DEVELOPER)
    resp = await api.client.post("/api/v1/auth/sign-in", headers=origin(api.client),
                                 json={"username": "dora", "password": PASSWORD})
    assert resp.status == 200
    assert (await resp.json())["data"] == {"username": "dora", "role": "developer"}
    cookie = resp.headers["Set-Cookie"]
    assert cookie.startswith(f"{sessions.COOKIE}=")
    for attribute in ("HttpOnly", "SameSite=Strict", "Path=/"):
        assert attribute in cookie
    assert "Secure" not in cookie  # plain HTTP, no trusted proxy
    me = await api.client.get("/api/v1/auth/me")
    assert (await me.json())["data"] == {"username": "dora", "role": "developer", "via": "session"}
    user = await api.ctx.store.find_user("dora")
    assert user is not None and user.last_sign_in is not None


async def test_me_with_a_token_and_without_credentials(api: Api) -> None:
    _, body, _ = await api.call("GET", "/api/v1/auth/me")
    assert body["data"] == {"username": "token:tok-test", "role": "admin", "via": "token"}
    _, body, _ = await api.call("GET", "/api/v1/auth/me", admin=False, expect=401)
    assert body["reason"] == "EUserAuth"


async def test_wrong_password_unknown_user_and_disabled_user_are_one_401(api: Api) -> None:
    await make_user(api, "erin")
    await make_user(api, "frank")
    await api.ctx.store.update_user("frank", disabled=True)
    for username, password in (("erin", "wrong password"), ("nobody", PASSWORD), ("frank", PASSWORD)):
        body = await sign_in(api.client, username, password, expect=401)
        assert body["reason"] == "EUserAuth" and body["message"] == "wrong username or password"
    me = await api.client.get("/api/v1/auth/me")
    assert me.status == 401


async def test_session_rotates_at_sign_in_and_ends_at_sign_out(api: Api) -> None:
    await make_user(api, "gus")
    await sign_in(api.client, "gus")
    first = api.client.session.cookie_jar.filter_cookies(api.client.make_url("/"))[sessions.COOKIE].value
    await sign_in(api.client, "gus")
    second = api.client.session.cookie_jar.filter_cookies(api.client.make_url("/"))[sessions.COOKIE].value
    assert first != second
    assert await sessions.lookup(api.ctx, first) is None  # the old session ended
    assert await sessions.lookup(api.ctx, second) is not None
    resp = await api.client.post("/api/v1/auth/sign-out", headers=origin(api.client))
    assert resp.status == 200
    assert await sessions.lookup(api.ctx, second) is None
    assert (await api.client.get("/api/v1/auth/me")).status == 401


async def test_session_expires_server_side(api: Api) -> None:
    await make_user(api, "hal")
    await sign_in(api.client, "hal")
    sid = api.client.session.cookie_jar.filter_cookies(api.client.make_url("/"))[sessions.COOKIE].value
    ttl = await api.ctx.redis.ttl(api.ctx.keys.session(sessions._hash(sid)))
    assert 0 < ttl <= api.ctx.settings.accounts.session_idle_minutes * 60
    await api.ctx.redis.delete(api.ctx.keys.session(sessions._hash(sid)))  # as if it expired
    assert (await api.client.get("/api/v1/auth/me")).status == 401


async def test_cookie_mutations_need_the_servers_own_origin(api: Api) -> None:
    await make_user(api, "ivy", Role.DEVELOPER)
    await sign_in(api.client, "ivy")
    body = {"id": "origin_set"}
    for headers in ({}, {"Origin": "https://evil.example"}, {"Origin": "null"},
                    {"Referer": "https://evil.example/page"}):
        resp = await api.client.post("/api/v1/script-sets", json=body, headers=headers)
        assert resp.status == 403, headers
        assert (await resp.json())["reason"] == "EForbidden"
    resp = await api.client.post("/api/v1/script-sets", json=body, headers=origin(api.client))
    assert resp.status == 200
    referer = {"Referer": str(api.client.make_url("/console/scripts"))}
    resp = await api.client.patch("/api/v1/script-sets/origin_set", json={"title": "t"}, headers=referer)
    assert resp.status == 200
    assert (await api.client.get("/api/v1/script-sets")).status == 200  # reads need no Origin
    # a token is not subject to the check (no browser sends it by itself)
    await api.call("POST", "/api/v1/script-sets", json={"id": "token_set"},
                   headers={"Origin": "https://evil.example"})


async def test_password_change_ends_the_other_sessions(api: Api, browser: Browser) -> None:
    await make_user(api, "jay")
    await sign_in(api.client, "jay")
    other = await browser()
    await sign_in(other, "jay")
    resp = await api.client.post("/api/v1/auth/password", headers=origin(api.client),
                                 json={"oldPassword": "wrong password", "newPassword": "new password 1"})
    assert resp.status == 401
    resp = await api.client.post("/api/v1/auth/password", headers=origin(api.client),
                                 json={"oldPassword": PASSWORD, "newPassword": "new password 1"})
    assert resp.status == 200, await resp.text()
    assert (await api.client.get("/api/v1/auth/me")).status == 200  # this session stays
    assert (await other.get("/api/v1/auth/me")).status == 401  # the other one ended
    await sign_in(other, "jay", expect=401)
    await sign_in(other, "jay", "new password 1")
    _, body, _ = await api.call("POST", "/api/v1/auth/password", expect=400,
                                json={"oldPassword": "x", "newPassword": "new password 2"})
    assert "signed-in user" in body["message"]


async def test_failed_sign_ins_are_throttled_per_user(api: Api) -> None:
    await make_user(api, "kim")
    limit = api.ctx.settings.accounts.sign_in_failures
    for _ in range(limit):
        await sign_in(api.client, "kim", "wrong password", expect=401)
    resp = await api.client.post("/api/v1/auth/sign-in", headers=origin(api.client),
                                 json={"username": "kim", "password": PASSWORD})
    assert resp.status == 429  # even the right password, while locked
    assert int(resp.headers["Retry-After"]) == lockout.FIRST_LOCK_SECONDS
    assert (await resp.json())["reason"] == "EClientRateLimit"
    await api.ctx.redis.delete(api.ctx.keys.sign_in_lockout("user", "kim"),
                               api.ctx.keys.sign_in_lockout("addr", "127.0.0.1"))
    await sign_in(api.client, "kim")  # the lock over, the right password works
    assert not await api.ctx.redis.exists(api.ctx.keys.sign_in_failures("user", "kim"))


async def test_failed_sign_ins_are_throttled_per_address(api: Api) -> None:
    await make_user(api, "lee")
    limit = api.ctx.settings.accounts.sign_in_failures
    for n in range(limit):  # one address guessing many accounts
        await sign_in(api.client, f"guess{n}", "wrong password", expect=401)
    body = await sign_in(api.client, "lee", expect=429)
    assert body["detail"]["waitSeconds"] == lockout.FIRST_LOCK_SECONDS


def test_lock_seconds_double_up_to_the_maximum() -> None:
    assert [lockout.lock_seconds(n, 5) for n in (1, 4, 5, 6, 7)] == [0, 0, 15, 30, 60]
    assert lockout.lock_seconds(40, 5) == lockout.MAX_LOCK_SECONDS


async def test_secure_cookie_over_tls_from_a_trusted_proxy_only(
        api: Api, aiohttp_client: Callable[..., Awaitable[TestClient]],
        make_settings: Callable[..., Settings]) -> None:
    await make_user(api, "max", Role.VIEWER)
    forwarded = {"X-Forwarded-Proto": "https"}
    resp = await api.client.post("/api/v1/auth/sign-in", headers=forwarded,
                                 json={"username": "max", "password": PASSWORD})
    assert resp.status == 200 and "Secure" not in resp.headers["Set-Cookie"]  # not trusted
    behind_proxy = make_settings(server={"trusted_proxies": ["127.0.0.0/8"]})
    client = await aiohttp_client(create_app(behind_proxy, catalog_ttl=0))
    resp = await client.post("/api/v1/auth/sign-in", headers=forwarded,
                             json={"username": "max", "password": PASSWORD})
    assert resp.status == 200 and "Secure" in resp.headers["Set-Cookie"]


async def test_cross_origin_sign_in_is_refused(api: Api) -> None:
    await make_user(api, "ned")
    resp = await api.client.post("/api/v1/auth/sign-in", json={"username": "ned", "password": PASSWORD},
                                 headers={"Origin": "https://evil.example"})
    assert resp.status == 403


async def test_token_roles(api: Api) -> None:
    viewer = await role_token(api, Role.VIEWER)
    _, body, _ = await api.call("GET", "/api/v1/auth/me", admin=False, headers=viewer)
    assert body["data"]["role"] == "viewer" and body["data"]["via"] == "token"
