"""Roles on every route (issue 16): each route declares its level, a viewer's mutating call is
a 403, a developer cannot reach the admin routes, and the levels hold for console sessions."""

from __future__ import annotations

import re

from tests.server.accounts import make_user, origin, role_token, sign_in
from tests.server.conftest import Api

from fluxfunc_common.roles import Role
from fluxfunc_common.settings import Settings
from fluxfunc_server import routing
from fluxfunc_server.access import MUTATING, Access
from fluxfunc_server.app import create_app
from fluxfunc_server.appkeys import ACCESS


def _url(path: str) -> str:
    return re.sub(r"{\w+}", "x", path.replace("{entry}", "1-0"))


def test_every_route_declares_its_level(api: Api) -> None:
    app = api.client.app
    declared = app[ACCESS]
    undeclared = [(r.method, r.resource.canonical if r.resource else "?")
                  for r in app.router.routes() if r not in declared]
    assert undeclared == []
    levels = {rule.access for rule in routing.rules(app).values()}
    assert {Access.VIEWER, Access.DEVELOPER, Access.ADMIN} <= levels


def test_the_documented_levels() -> None:
    """A few levels the issue names, checked by name."""
    rules = routing.rules(create_app(Settings(secret="s" * 40)))
    expect = {
        ("GET", "/api/v1/scripts"): Access.VIEWER,
        ("GET", "/api/v1/task-records"): Access.VIEWER,
        ("GET", "/api/v1/ops/overview"): Access.VIEWER,
        ("POST", "/api/v1/scripts"): Access.DEVELOPER,
        ("POST", "/api/v1/scripts/{id}/publish"): Access.DEVELOPER,
        ("PATCH", "/api/v1/env-variables/{id}"): Access.DEVELOPER,
        ("POST", "/api/v1/func/{func_id}"): Access.DEVELOPER,
        ("POST", "/api/v1/tasks/{task_id}/cancel"): Access.DEVELOPER,
        ("POST", "/api/v1/ops/dead-letters/{entry}/requeue"): Access.DEVELOPER,
        ("PUT", "/api/v1/python-packages"): Access.DEVELOPER,
        ("POST", "/api/v1/users"): Access.ADMIN,
        ("GET", "/api/v1/audit"): Access.ADMIN,
        ("GET", "/api/v1/auth/sessions"): Access.VIEWER,
        ("POST", "/api/v1/auth/sign-out-everywhere"): Access.VIEWER,
        ("POST", "/api/v1/admin/tokens"): Access.ADMIN,
        ("POST", "/api/v1/api-auths"): Access.ADMIN,
        ("POST", "/api/v1/connectors"): Access.ADMIN,
        ("POST", "/api/v1/import"): Access.ADMIN,
        ("POST", "/api/v1/export"): Access.ADMIN,
    }
    assert {key: rules[key].access for key in expect} == expect


async def test_a_viewer_gets_403_on_every_mutating_route(api: Api) -> None:
    viewer = await role_token(api, Role.VIEWER)
    checked = 0
    for (method, path), rule in routing.rules(api.client.app).items():
        if method not in MUTATING or rule.access not in (Access.DEVELOPER, Access.ADMIN):
            continue
        _, body, _ = await api.call(method, _url(path), admin=False, headers=viewer, expect=403)
        assert body["reason"] == "EForbidden" and body["detail"]["role"] == "viewer", (method, path)
        checked += 1
    assert checked > 40


async def test_a_developer_gets_403_on_admin_routes_only(api: Api) -> None:
    developer = await role_token(api, Role.DEVELOPER)
    for (method, path), rule in routing.rules(api.client.app).items():
        if rule.access is not Access.ADMIN:
            continue
        status, _, _ = await api.call(method, _url(path), admin=False, headers=developer, expect=None)
        assert status == 403, (method, path, status)
    await api.call("POST", "/api/v1/script-sets", admin=False, headers=developer, json={"id": "dev_set"})
    await api.call("GET", "/api/v1/api-auths", admin=False, headers=developer)


async def test_a_viewer_reads(api: Api) -> None:
    viewer = await role_token(api, Role.VIEWER)
    for (method, path), rule in routing.rules(api.client.app).items():
        if rule.access is Access.VIEWER and method == "GET" and "{" not in path:
            status, _, _ = await api.call(method, path, admin=False, headers=viewer, expect=None)
            assert status not in (401, 403), (path, status)  # 404: the download needs a file


async def test_roles_hold_for_console_sessions(api: Api) -> None:
    await make_user(api, "vera", Role.VIEWER)
    await sign_in(api.client, "vera")
    resp = await api.client.post("/api/v1/script-sets", json={"id": "v_set"}, headers=origin(api.client))
    assert resp.status == 403
    assert (await api.client.get("/api/v1/script-sets")).status == 200
    await api.ctx.store.update_user("vera", role="developer")  # takes effect at the next request
    resp = await api.client.post("/api/v1/script-sets", json={"id": "v_set"}, headers=origin(api.client))
    assert resp.status == 200
    assert (await api.client.get("/api/v1/users")).status == 403


async def test_access_keys_carry_a_role(api: Api) -> None:
    from fluxfunc_common.credentials import issue_access_key
    from fluxfunc_server.adminauth import sign_request
    ak_id, secret = await issue_access_key(api.ctx.store, api.ctx.cipher, "ro", "viewer")
    path = "/api/v1/script-sets"
    await api.call("GET", path, admin=False, headers=sign_request(ak_id, secret, "GET", path))
    body = b'{"id":"ak_set"}'
    headers = {**sign_request(ak_id, secret, "POST", path, body), "Content-Type": "application/json"}
    await api.call("POST", path, admin=False, data=body, headers=headers, expect=403)
