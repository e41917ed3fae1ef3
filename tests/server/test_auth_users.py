"""Users and API credentials over HTTP (issue 16, admin only): create with a generated
password, change role/state/password, delete, the last admin kept; tokens and access keys
created with a role, their secret answered once."""

from __future__ import annotations

from tests.server.accounts import PASSWORD, make_user, origin, sign_in
from tests.server.conftest import Api

from fluxfunc_common.roles import Role
from fluxfunc_server.adminauth import sign_request


async def test_create_list_change_delete_users(api: Api) -> None:
    _, body, _ = await api.call("POST", "/api/v1/users", json={"username": "pia", "role": "viewer"})
    generated = body["data"]["password"]
    assert body["data"]["username"] == "pia" and len(generated) >= 16
    _, body, _ = await api.call("POST", "/api/v1/users",
                                json={"username": "quin", "role": "developer", "password": PASSWORD})
    assert "password" not in body["data"]
    await api.call("POST", "/api/v1/users", json={"username": "pia", "role": "viewer"}, expect=409)
    for bad in ({"username": "token:x", "role": "viewer"}, {"username": "ok", "role": "root"},
                {"username": "ok", "role": "viewer", "password": "short"}):
        await api.call("POST", "/api/v1/users", json=bad, expect=400)
    await sign_in(api.client, "pia", generated)
    _, body, _ = await api.call("GET", "/api/v1/users")
    listed = {u["username"]: u for u in body["data"]}
    assert listed["pia"]["lastSignInAt"] is not None and listed["quin"]["lastSignInAt"] is None
    assert set(listed["pia"]) == {"username", "role", "createdAt", "lastSignInAt", "isDisabled"}
    _, body, _ = await api.call("PATCH", "/api/v1/users/pia", json={"role": "developer"})
    assert body["data"]["role"] == "developer"
    assert (await api.client.get("/api/v1/auth/me")).status == 200  # a role change keeps sessions
    await api.call("PATCH", "/api/v1/users/pia", json={"isDisabled": True})
    assert (await api.client.get("/api/v1/auth/me")).status == 401  # disabling ends them
    await sign_in(api.client, "pia", generated, expect=401)
    await api.call("PATCH", "/api/v1/users/pia", json={"isDisabled": False, "password": "a new password"})
    await sign_in(api.client, "pia", "a new password")
    await api.call("DELETE", "/api/v1/users/pia")
    assert (await api.client.get("/api/v1/auth/me")).status == 401
    await api.call("DELETE", "/api/v1/users/pia", expect=404)
    await api.call("PATCH", "/api/v1/users/pia", json={"role": "viewer"}, expect=404)


async def test_the_last_admin_stays(api: Api) -> None:
    await make_user(api, "root1", Role.ADMIN)
    for method, body in (("PATCH", {"role": "viewer"}), ("PATCH", {"isDisabled": True}), ("DELETE", None)):
        await api.call(method, "/api/v1/users/root1", json=body, expect=409)
    await make_user(api, "root2", Role.ADMIN)
    await api.call("PATCH", "/api/v1/users/root1", json={"role": "viewer"})


async def test_users_are_admin_only(api: Api) -> None:
    await make_user(api, "dev", Role.DEVELOPER)
    await sign_in(api.client, "dev")
    assert (await api.client.get("/api/v1/users")).status == 403
    resp = await api.client.post("/api/v1/users", json={"username": "x", "role": "admin"},
                                 headers=origin(api.client))
    assert resp.status == 403


async def test_create_tokens_and_access_keys_with_a_role(api: Api) -> None:
    _, body, _ = await api.call("POST", "/api/v1/admin/tokens", json={"name": "ci", "role": "developer"})
    token_id, token = body["data"]["id"], body["data"]["token"]
    headers = {"Authorization": f"Bearer {token}"}
    _, me, _ = await api.call("GET", "/api/v1/auth/me", admin=False, headers=headers)
    assert me["data"] == {"username": f"token:{token_id}", "role": "developer", "via": "token"}
    _, listed, _ = await api.call("GET", "/api/v1/admin/tokens")
    roles = {t["id"]: t["role"] for t in listed["data"]}
    assert roles == {"tok-test": "admin", token_id: "developer"}
    assert all("token" not in t for t in listed["data"])
    _, body, _ = await api.call("POST", "/api/v1/admin/access-keys", json={"name": "sdk", "role": "viewer"})
    ak_id, secret = body["data"]["id"], body["data"]["secret"]
    path = "/api/v1/auth/me"
    _, me, _ = await api.call("GET", path, admin=False, headers=sign_request(ak_id, secret, "GET", path))
    assert me["data"] == {"username": f"ak:{ak_id}", "role": "viewer", "via": "accessKey"}
    _, listed, _ = await api.call("GET", "/api/v1/admin/access-keys")
    assert [k["role"] for k in listed["data"]] == ["viewer"]
    _, body, _ = await api.call("POST", "/api/v1/admin/tokens", json={"name": "default"})
    assert body["data"]["role"] == "admin"
    await api.call("POST", "/api/v1/admin/tokens", json={"name": "x", "role": "owner"}, expect=400)
