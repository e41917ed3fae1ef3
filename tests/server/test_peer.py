"""What the Server believes about a caller: X-Forwarded-For only from trusted proxies,
credentials never copied into a task, cross-origin form posts refused for HTTP Basic entries,
and a cached result never served to another API-auth principal."""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable
from ipaddress import ip_network

import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient
from tests.server.conftest import Api, FakeWorker

from fluxfunc_common.keys import Keys
from fluxfunc_common.settings import Settings
from fluxfunc_server.app import create_app
from fluxfunc_server.appkeys import CTX
from fluxfunc_server.peer import client_ips

pytestmark = pytest.mark.usefixtures("published")


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


async def everything_in(redis: aioredis.Redis, keys: Keys) -> str:
    """Every value stored under the namespace, as one text (to look for leaked secrets)."""
    parts = []
    async for key in redis.scan_iter(match=f"{keys.ns}:*"):
        kind = (await redis.type(key)).decode()
        if kind == "string":
            parts.append(await redis.get(key))
        elif kind == "hash":
            parts.append(str(await redis.hgetall(key)))
        elif kind == "stream":
            parts.append(str(await redis.xrange(key)))
        elif kind == "zset":
            parts.append(str(await redis.zrange(key, 0, -1)))
    return str(parts)


async def test_forwarded_for_is_ignored_from_an_untrusted_peer(api: Api, fake_worker: FakeWorker) -> None:
    aid = await api.entry("async-apis", "echo")
    await api.call("POST", f"/api/v1/async/{aid}", admin=False, json={},
                   headers={"X-Forwarded-For": "6.6.6.6, 7.7.7.7"})
    await fake_worker.wait_seen(1)
    seen = fake_worker.seen[0].http_request
    assert seen is not None and seen["ip"] == "127.0.0.1" and seen["ips"] == []


async def test_forwarded_for_is_read_from_a_trusted_proxy(
        aiohttp_client: Callable[..., Awaitable[TestClient]], make_settings: Callable[..., Settings],
        fake_worker: FakeWorker, api: Api) -> None:
    aid = await api.entry("async-apis", "echo")
    trusted = make_settings(server={"trusted_proxies": ["127.0.0.0/8", "10.0.0.0/8"]})
    proxy = await aiohttp_client(create_app(trusted, catalog_ttl=0))
    # the client, then two proxies: the nearest (127.0.0.1, the peer) and 10.1.2.3 are trusted
    resp = await proxy.post(f"/api/v1/async/{aid}", json={},
                            headers={"X-Forwarded-For": "1.1.1.1, 6.6.6.6, 10.1.2.3"})
    assert resp.status == 200, await resp.text()
    await fake_worker.wait_seen(1)
    seen = fake_worker.seen[0].http_request
    assert seen is not None and seen["ip"] == "6.6.6.6"
    assert seen["ips"] == ["1.1.1.1", "6.6.6.6", "10.1.2.3"]
    assert proxy.app is not None
    await proxy.app[CTX].store.close()


async def test_credentials_never_reach_the_task(api: Api) -> None:
    """No worker runs: the envelope stays in its queue stream, where it is looked at."""
    aid = await api.entry("async-apis", "echo")
    secrets = {"Authorization": f"Bearer {api.token}", "Cookie": "session=cookie-secret-1",
               "Proxy-Authorization": "Basic cHJveHktc2VjcmV0", "X-Dff-Ak-Sign": "ak-sign-secret"}
    await api.call("POST", f"/api/v1/async/{aid}", admin=False, json={"kwargs": {"x": 1}},
                   headers={**secrets, "X-Other": "kept-header"})
    stored = await everything_in(api.ctx.redis, api.ctx.keys)
    assert "kept-header" in stored  # the envelope is in there ...
    for value in (api.token, "cookie-secret-1", "cHJveHktc2VjcmV0", "ak-sign-secret"):
        assert value not in stored  # ... without any credential


@pytest.mark.parametrize("headers", [{"Origin": "https://evil.example"}, {"Origin": "null"},
                                     {"Sec-Fetch-Site": "cross-site"},
                                     {"Sec-Fetch-Site": "same-site", "Origin": "https://a.example"}])
async def test_cross_origin_form_posts_to_http_basic_entries_are_refused(
        api: Api, fake_worker: FakeWorker, headers: dict[str, str]) -> None:
    auth = {"type": "httpBasic", "users": [{"username": "ann", "password": "pw-ann"}]}
    aid = await api.entry("async-apis", "echo", apiAuth=auth)
    url = f"/api/v1/async/{aid}/s"
    creds = basic("ann", "pw-ann")
    for form in ({"data": {"x": "1"}}, {"data": "x=1", "headers": {"Content-Type": "text/plain"}}):
        extra = form.pop("headers", {})
        _, body, _ = await api.call("POST", url, admin=False, expect=403,
                                    headers={**creds, **headers, **extra}, **form)
        assert "cross-origin" in body["message"]
    # not a form (a browser cannot send this cross-origin without a CORS preflight), or same
    # origin, or no browser at all: accepted
    await api.call("POST", url, admin=False, json={"x": 1}, headers={**creds, **headers})
    await api.call("POST", url, admin=False, data={"x": "1"},
                   headers={**creds, "Sec-Fetch-Site": "same-origin"})
    await api.call("POST", url, admin=False, data={"x": "1"}, headers=creds)
    # an entry that opts in
    opted = await api.entry("async-apis", "echo", apiAuth={**auth, "allowCrossOriginForms": True})
    await api.call("POST", f"/api/v1/async/{opted}/s", admin=False, data={"x": "1"},
                   headers={**creds, **headers})


async def test_cross_origin_forms_to_open_entries_are_not_concerned(api: Api) -> None:
    aid = await api.entry("async-apis", "echo")
    await api.call("POST", f"/api/v1/async/{aid}/s", admin=False, data={"x": "1"},
                   headers={"Origin": "https://evil.example"})


async def test_result_cache_is_per_principal(api: Api, fake_worker: FakeWorker) -> None:
    users = [{"username": "ann", "password": "pw-ann"}, {"username": "bob", "password": "pw-bob"}]
    sid = await api.entry("sync-apis", "cached", apiAuth={"type": "httpBasic", "users": users})
    url, call = f"/api/v1/sync/{sid}", {"json": {"kwargs": {"x": 1}}}
    _, _, resp = await api.call("POST", url, admin=False, headers=basic("ann", "pw-ann"), **call)
    assert "X-Dff-Cache" not in resp.headers
    _, _, resp = await api.call("POST", url, admin=False, headers=basic("ann", "pw-ann"), **call)
    assert resp.headers["X-Dff-Cache"] == "Cached"
    _, _, resp = await api.call("POST", url, admin=False, headers=basic("bob", "pw-bob"), **call)
    assert "X-Dff-Cache" not in resp.headers  # bob's call ran: ann's result is ann's
    # nor across entries, nor with the admin's direct call
    open_sid = await api.entry("sync-apis", "cached")
    _, _, resp = await api.call("POST", f"/api/v1/sync/{open_sid}", admin=False, **call)
    assert "X-Dff-Cache" not in resp.headers
    _, _, resp = await api.call("POST", "/api/v1/func/demo__basic.cached", **call)
    assert "X-Dff-Cache" not in resp.headers
    assert len(fake_worker.seen) == 4



def test_client_ip_rules() -> None:
    trusted = (ip_network("10.0.0.0/8"),)
    assert client_ips("8.8.8.8", "1.2.3.4", trusted) == ("8.8.8.8", [])  # not a proxy
    assert client_ips("10.0.0.1", "", trusted) == ("10.0.0.1", [])
    assert client_ips("10.0.0.1", "6.6.6.6, 1.2.3.4", trusted) == ("1.2.3.4", ["6.6.6.6", "1.2.3.4"])
    assert client_ips("::ffff:10.0.0.5", "1.2.3.4, 10.9.9.9", trusted)[0] == "1.2.3.4"
    assert client_ips("10.0.0.1", "10.0.0.2", trusted) == ("10.0.0.2", ["10.0.0.2"])
