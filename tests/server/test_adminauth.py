"""Admin auth (SPEC §4.3): bearer tokens (stored hashed) and DataFlux Func access-key signing
(HMAC-SHA1, 900 s skew, nonce replay guard)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid

import pytest
from tests.server.conftest import Api

from fluxfunc_common.crypto import hash_token
from fluxfunc_server.adminauth import sign_request

AK_ID, AK_SECRET = "ak-test", "the-ak-secret"


@pytest.fixture
async def access_key(api: Api) -> None:
    await api.ctx.store.add_access_key(AK_ID, api.ctx.cipher.encrypt(AK_SECRET), "tests")


def sdk_headers(method: str, path: str, body: bytes = b"", *, ts: int | None = None,
                nonce: str | None = None, secret: str = AK_SECRET) -> dict[str, str]:
    """What ``dataflux_func_sdk.DataFluxFunc.get_auth_header`` sends."""
    timestamp = str(int(time.time()) if ts is None else ts)
    nonce = nonce or uuid.uuid4().hex
    text = "&".join([method, path, timestamp, nonce, hashlib.md5(body).hexdigest()])
    sign = hmac.new(secret.encode(), text.encode(), hashlib.sha1).hexdigest()
    return {"X-Dff-Ak-Id": AK_ID, "X-Dff-Ak-Timestamp": timestamp, "X-Dff-Ak-Nonce": nonce,
            "X-Dff-Ak-Sign": sign, "Content-Type": "application/json"}


async def test_missing_and_invalid_bearer_tokens(api: Api) -> None:
    _, body, _ = await api.call("GET", "/api/v1/scripts", admin=False, expect=401)
    assert body["reason"] == "EUserAuth" and body["error"] == 401
    for header in ("Bearer wrong", "Bearer", "Token abc", "Basic YTpi"):
        _, body, _ = await api.call("GET", "/api/v1/scripts", admin=False, expect=401,
                                    headers={"Authorization": header})
        assert body["reason"] == "EUserAuth"
    await api.call("GET", "/api/v1/scripts")


async def test_tokens_are_stored_hashed(api: Api) -> None:
    assert await api.ctx.store.admin_token_exists(hash_token(api.token))
    assert not await api.ctx.store.admin_token_exists(api.token)


@pytest.mark.usefixtures("access_key")
async def test_access_key_get_with_query(api: Api) -> None:
    path = "/api/v1/scripts?limit=5"
    _, body, _ = await api.call("GET", path, admin=False, headers=sdk_headers("GET", path))
    assert body["ok"] is True


@pytest.mark.usefixtures("access_key")
async def test_access_key_post_sorted_compact_json(api: Api) -> None:
    data = {"title": "Signed", "id": "signed__one", "code": "x = 1  # 你好"}
    raw = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    path = "/api/v1/scripts"
    _, body, _ = await api.call("POST", path, admin=False, data=raw, headers=sdk_headers("POST", path, raw))
    assert body["data"]["id"] == "signed__one"
    # a client that signed the canonical form but sent it pretty-printed is accepted too
    data["id"] = "signed__two"
    canon = json.dumps(data, sort_keys=True, separators=(",", ":")).encode()
    pretty = json.dumps(data, indent=2).encode()
    await api.call("POST", path, admin=False, data=pretty, headers=sdk_headers("POST", path, canon))


@pytest.mark.usefixtures("access_key")
async def test_access_key_failures(api: Api) -> None:
    path = "/api/v1/scripts"
    cases = [
        sdk_headers("GET", path, secret="wrong"),  # wrong signature
        sdk_headers("GET", "/api/v1/other"),  # signed another path
        sdk_headers("POST", path),  # signed another method
        sdk_headers("GET", path, ts=int(time.time()) - 1000),  # stale
        sdk_headers("GET", path, ts=int(time.time()) + 1000),  # from the future
        {**sdk_headers("GET", path), "X-Dff-Ak-Id": "ak-unknown"},
        {**sdk_headers("GET", path), "X-Dff-Ak-Timestamp": "yesterday"},
        {k: v for k, v in sdk_headers("GET", path).items() if k != "X-Dff-Ak-Nonce"},
    ]
    for headers in cases:
        _, body, _ = await api.call("GET", path, admin=False, expect=401, headers=headers)
        assert body["reason"] == "EUserAuth", headers


@pytest.mark.usefixtures("access_key")
async def test_replayed_nonce_is_refused(api: Api) -> None:
    path = "/api/v1/scripts"
    headers = sdk_headers("GET", path)
    await api.call("GET", path, admin=False, headers=headers)
    _, body, _ = await api.call("GET", path, admin=False, expect=401, headers=headers)
    assert "nonce" in body["message"]
    ttl = await api.ctx.redis.ttl(api.ctx.keys.nonce(AK_ID, headers["X-Dff-Ak-Nonce"]))
    assert ttl > 900  # kept longer than the skew, so a future-dated request cannot be replayed


@pytest.mark.usefixtures("access_key")
async def test_sign_request_helper_matches_the_sdk(api: Api) -> None:
    headers = sign_request(AK_ID, AK_SECRET, "GET", "/api/v1/funcs")
    await api.call("GET", "/api/v1/funcs", admin=False, headers=headers)


async def test_every_admin_route_needs_auth(api: Api) -> None:
    """Every route but the public ones answers 401 without credentials."""
    public = {"/healthz", "/readyz", "/metrics", "/", "/api/openapi.json"}
    entry_points = ("/api/v1/sync/", "/api/v1/async/", "/api/v1/al/", "/api/v1/bat/",
                    "/api/v1/tasks/")
    checked = 0
    for route in api.client.app.router.routes():
        path = route.resource.canonical if route.resource else ""
        if path in public or path.startswith(entry_points) or route.method == "HEAD":
            continue
        url = path.replace("{id}", "x").replace("{func_id}", "x").replace("{entry}", "1-0")
        resp = await api.client.request(route.method, url)
        assert resp.status == 401, (route.method, path, resp.status)
        assert (await resp.json())["reason"] == "EUserAuth"
        checked += 1
    assert checked > 30
