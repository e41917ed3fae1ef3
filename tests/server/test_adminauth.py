"""Admin auth: bearer tokens (stored hashed) and DataFlux Func access-key signing
(HMAC-SHA1, 900 s skew, nonce replay guard)."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import time
import uuid
from urllib.parse import urlencode

import pytest
from tests.server.conftest import AK_ID, AK_SECRET, Api

from fluxfunc_common.crypto import hash_token
from fluxfunc_server import routing
from fluxfunc_server.adminauth import sign_request


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
    """Every route needs a role unless declared otherwise, and every such route answers 401
    without credentials (the task API too, for a task that is not an API's)."""
    rules = routing.rules(api.client.app)
    entries = {f"/api/v1/{prefix}/{{id}}{suffix}" for prefix in ("sync", "async", "al", "bat")
               for suffix in ("", "/{format}")}
    public = {path for (_, path), rule in rules.items()
              if rule.access.role is None and not path.startswith("/console")}  # console files
    assert public == {"/healthz", "/readyz", "/metrics", "/", "/api/openapi.json", "/api/v1/do/ping",
                      "/api/v1/do/echo", "/api/v1/resources/large-data/{name}",
                      "/api/v1/auth/sign-in", "/api/v1/auth/sign-out", *entries}
    checked = 0
    for (method, path), rule in rules.items():
        if rule.access.role is None:
            continue
        url = re.sub(r"{\w+}", "x", path.replace("{entry}", "1-0"))
        resp = await api.client.request(method, url)
        assert resp.status == 401, (method, path, resp.status)
        assert (await resp.json())["reason"] == "EUserAuth"
        checked += 1
    assert checked > 30


def sdk_client_headers(method: str, path: str, body: object = None, *, query: dict[str, str] | None = None,
                       nonce: str | None = None) -> tuple[str, bytes, dict[str, str]]:
    """(path, bytes sent, headers) as the official SDKs' ``run`` builds them: the query appended
    with ``urlencode``, the body sent as sorted compact JSON (non-ASCII kept) only when truthy,
    and ``md5(json_dumps(body or {}))`` in the string to sign, so a bodiless request signs ``{}``."""
    def json_dumps(value: object) -> str:
        return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":"))

    if query:
        path = path + "?" + urlencode(query)
    timestamp, nonce = str(int(time.time())), nonce or uuid.uuid4().hex
    body_md5 = hashlib.md5(json_dumps(body or {}).encode()).hexdigest()
    text = "&".join([method.upper(), path, timestamp, nonce, body_md5])
    sign = hmac.new(AK_SECRET.encode(), text.encode(), hashlib.sha1).hexdigest()
    sent = json_dumps(body).encode() if body else b""
    return path, sent, {"X-Dff-Ak-Id": AK_ID, "X-Dff-Ak-Timestamp": timestamp, "X-Dff-Ak-Nonce": nonce,
                        "X-Dff-Ak-Sign": sign, "Content-Type": "application/json"}


@pytest.mark.usefixtures("access_key")
async def test_the_sdk_signing_code_path_is_accepted(api: Api) -> None:
    """Signed GET, bodiless POST and POST with a body, each signed both ways a client does it:
    as the SDKs do (a missing body is the md5 of ``{}``) and over the bytes sent."""
    await api.call("POST", "/api/v1/scripts", json={"id": "sdk__one", "code": "x = 1\n"})
    requests = [("GET", "/api/v1/scripts", None, {"limit": "5"}),
                ("POST", "/api/v1/scripts/sdk__one/publish", None, None),
                ("POST", "/api/v1/scripts", {"id": "sdk__two", "code": "x = '你好'\n"}, None),
                ("POST", "/api/v1/do/echo", {"echo": {"unicode": "你好", "none": None}}, {"a": "x yü"})]
    for method, path, body, query in requests:
        full, sent, headers = sdk_client_headers(method, path, body, query=query)
        status, answer, _ = await api.call(method, full, admin=False, data=sent, headers=headers, expect=None)
        assert status == 200 and answer["ok"] is True, (method, full, answer)
        raw = sdk_headers(method, full, sent)  # the digest of the bytes as sent
        status, answer, _ = await api.call(method, full, admin=False, data=sent, headers=raw, expect=None)
        assert status == 200 or (status == 409 and body), (method, full, answer)  # 409: created twice
        assert answer.get("reason") != "EUserAuth"
    # the wrong secret, a replay and a stale timestamp are still refused on the SDK path
    full, sent, headers = sdk_client_headers("GET", "/api/v1/scripts")
    await api.call("GET", full, admin=False, headers=headers)
    _, body, _ = await api.call("GET", full, admin=False, headers=headers, expect=401)
    assert "nonce" in body["message"]
    for bad in ({**sdk_client_headers("GET", full)[2], "X-Dff-Ak-Sign": "0" * 40},
                sdk_headers("GET", full, b"{}", secret="wrong"),
                sdk_headers("GET", full, b"{}", ts=int(time.time()) - 1000)):
        _, body, _ = await api.call("GET", full, admin=False, headers=bad, expect=401)
        assert body["reason"] == "EUserAuth"


@pytest.mark.usefixtures("access_key")
async def test_nonces_are_kept_for_the_sdk_day(api: Api) -> None:
    _, _, headers = sdk_client_headers("GET", "/api/v1/scripts")
    await api.call("GET", "/api/v1/scripts", admin=False, headers=headers)
    ttl = await api.ctx.redis.ttl(api.ctx.keys.nonce(AK_ID, headers["X-Dff-Ak-Nonce"]))
    assert ttl > 24 * 3600 - 60


@pytest.mark.usefixtures("access_key")
async def test_ping_and_echo_answer_as_dataflux_func(api: Api) -> None:
    _, body, _ = await api.call("GET", "/api/v1/do/ping", admin=False)
    assert (body["ok"], body["error"], body["message"], body["data"]) == (True, 200, "", "pong")
    data = {"echo": {"int": 1, "str": "Hello World", "unicode": "你好，世界！", "none": None,
                     "boolean": True}}
    _, body, _ = await api.call("POST", "/api/v1/do/echo?x=1&y=b", admin=False, json=data)
    assert body["data"] == {"query": {"x": "1", "y": "b"}, "body": data}
    _, body, _ = await api.call("POST", "/api/v1/do/echo", admin=False)
    assert body["data"] == {"query": {}, "body": {}}
    # with access-key headers the signature is checked: the SDK examples' own calls
    path, sent, headers = sdk_client_headers("GET", "/api/v1/do/ping")
    await api.call("GET", path, admin=False, headers=headers)
    path, sent, headers = sdk_client_headers("POST", "/api/v1/do/echo", data)
    _, body, _ = await api.call("POST", path, admin=False, data=sent, headers=headers)
    assert body["data"]["body"] == data
    headers["X-Dff-Ak-Nonce"] = "another"
    _, body, _ = await api.call("POST", path, admin=False, data=sent, headers=headers, expect=401)
    assert body["reason"] == "EUserAuth"
