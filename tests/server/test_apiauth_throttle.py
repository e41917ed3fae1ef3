"""API auth of entry points (fixedField, httpBasic) and throttling."""

from __future__ import annotations

import base64
import time
from typing import Any

import pytest
from tests.server.conftest import Api, FakeWorker

from fluxfunc_common.crypto import Cipher
from fluxfunc_common.store import Entity
from fluxfunc_server import throttle

pytestmark = pytest.mark.usefixtures("published")


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@pytest.mark.parametrize("location", ["header", "query", "body"])
async def test_fixed_field(api: Api, fake_worker: FakeWorker, location: str) -> None:
    sid = await api.entry("sync-apis", "echo", apiAuth={"type": "fixedField", "location": location,
                                       "field": "x-key", "value": "s3cret"})
    url = f"/api/v1/sync/{sid}/s"
    _, body, _ = await api.call("POST", url, admin=False, expect=401, json={"a": 1})
    assert body["reason"] == "EAPIAuth" and body["error"] == 401
    wrong: dict[str, Any] = {"header": {"headers": {"x-key": "nope"}, "json": {"a": 1}},
                             "query": {"params": {"x-key": "nope"}, "json": {"a": 1}},
                             "body": {"json": {"a": 1, "x-key": "nope"}}}[location]
    await api.call("POST", url, admin=False, expect=401, **wrong)
    right: dict[str, Any] = {"header": {"headers": {"x-key": "s3cret"}, "json": {"a": 1}},
                             "query": {"params": {"x-key": "s3cret"}, "json": {"a": 1}},
                             "body": {"json": {"a": 1, "x-key": "s3cret"}}}[location]
    _, body, _ = await api.call("POST", url, admin=False, **right)
    assert body == {"a": 1}  # a matched query/body field never reaches the function
    assert len(fake_worker.seen) == 1
    seen = fake_worker.seen[0].http_request
    assert seen is not None and "s3cret" not in str(seen)  # nor does it reach _DFF_HTTP_REQUEST


async def test_fixed_field_in_query_of_normal_get(api: Api, fake_worker: FakeWorker) -> None:
    sid = await api.entry("sync-apis", "echo", apiAuth={"type": "fixedField", "location": "query",
                                       "field": "token", "value": "abc"})
    _, body, _ = await api.call("GET", f"/api/v1/sync/{sid}?token=abc&kwargs=%7B%22q%22%3A1%7D",
                                admin=False)
    assert body == {"q": 1}


async def test_http_basic(api: Api, fake_worker: FakeWorker, cipher: Cipher) -> None:
    users = [{"username": "ann", "password": "pw1"}, {"username": "bob", "password": "pw2"}]
    sid = await api.entry("sync-apis", "echo", apiAuth={"type": "httpBasic", "users": users})
    url = f"/api/v1/sync/{sid}/s"
    _, _, resp = await api.call("POST", url, admin=False, expect=401, json={})
    assert resp.headers["WWW-Authenticate"].startswith("Basic")
    await api.call("POST", url, admin=False, expect=401, json={}, headers=basic("ann", "pw2"))
    await api.call("POST", url, admin=False, expect=401, json={},
                   headers={"Authorization": "Basic !!notbase64"})
    await api.call("POST", url, admin=False, json={"ok": 1}, headers=basic("bob", "pw2"))
    seen = fake_worker.seen[-1].http_request
    assert seen is not None and "authorization" not in seen["headers"]
    # stored sealed, never answered
    stored = await api.ctx.store.get(Entity.SYNC_API, sid)
    assert "password" not in str(stored["apiAuth"]["users"]) or all(
        "password" not in u for u in stored["apiAuth"]["users"])
    assert cipher.decrypt(stored["apiAuth"]["users"][0]["passwordCipher"]) == "pw1"
    _, got, _ = await api.call("GET", f"/api/v1/sync-apis/{sid}")
    assert got["data"]["apiAuth"]["users"] == [{"username": "ann"}, {"username": "bob"}]
    # a PATCH that leaves apiAuth alone keeps the sealed passwords working
    await api.call("PATCH", f"/api/v1/sync-apis/{sid}", json={"note": "changed"})
    await api.call("POST", url, admin=False, json={}, headers=basic("ann", "pw1"))


async def test_async_api_auth_too(api: Api, fake_worker: FakeWorker) -> None:
    aid = await api.entry("async-apis", "echo", apiAuth={"type": "fixedField", "location": "header",
                                                     "field": "X-Token", "value": "t"})
    await api.call("POST", f"/api/v1/async/{aid}", admin=False, expect=401)
    await api.call("POST", f"/api/v1/async/{aid}", admin=False, headers={"X-Token": "t"})


async def test_api_auth_validation(api: Api) -> None:
    for auth in ({"type": "httpDigest"}, {"type": "fixedField", "location": "cookie", "field": "a",
                                          "value": "b"},
                 {"type": "httpBasic", "users": []}, {"type": "fixedField", "field": "a"}):
        await api.call("POST", "/api/v1/sync-apis", expect=400,
                       json={"funcId": "demo__basic.echo", "apiAuth": auth})


# --- throttling ------------------------------------------------------------------------------------


async def test_fixed_window_throttling(api: Api, fake_worker: FakeWorker) -> None:
    sid = await api.entry("sync-apis", "echo", throttling={"byMinute": 3, "window": "fixed"})
    url = f"/api/v1/sync/{sid}/s"
    for _ in range(3):
        await api.call("POST", url, admin=False, json={})
    _, body, resp = await api.call("POST", url, admin=False, json={}, expect=429)
    assert body["reason"] == "EClientRateLimit" and body["error"] == 429
    assert body["detail"]["rule"] == "byMinute" and body["detail"]["limit"] == 3
    assert body["detail"]["currentCount"] == 3
    assert 1 <= int(resp.headers["Retry-After"]) == body["detail"]["waitSeconds"] <= 60
    assert len(fake_worker.seen) == 3


async def test_sliding_window_throttling_async(api: Api, fake_worker: FakeWorker) -> None:
    aid = await api.entry("async-apis", "echo", throttling={"bySecond": 1000, "byHour": 2})
    for _ in range(2):
        await api.call("POST", f"/api/v1/async/{aid}", admin=False)
    for _ in range(3):  # refused calls are not counted
        await api.call("POST", f"/api/v1/async/{aid}", admin=False, expect=429)
    now = time.time()
    bucket = int(now // 3600)
    count = await api.ctx.redis.get(api.ctx.keys.throttle(aid, "byHour", bucket))
    assert int(count) == 2


async def test_sliding_window_counts_the_previous_window(api: Api, fake_worker: FakeWorker) -> None:
    sid = await api.entry("sync-apis", "echo", throttling={"byDay": 10})
    ctx = api.ctx
    now = time.time()
    day = int(now // 86_400)
    overlap = 1 - (now - day * 86_400) / 86_400
    # its weighted share alone is twice the limit (near midnight the weight is tiny and the
    # count large; the margin covers the weight fading while the call travels)
    previous = int(20 / max(overlap, 1e-6)) + 1
    await ctx.redis.set(ctx.keys.throttle(sid, "byDay", day - 1), previous)
    _, body, _ = await api.call("POST", f"/api/v1/sync/{sid}/s", admin=False, json={}, expect=429)
    assert body["detail"]["rule"] == "byDay" and body["detail"]["waitSeconds"] >= 1
    await ctx.redis.delete(ctx.keys.throttle(sid, "byDay", day - 1))
    await api.call("POST", f"/api/v1/sync/{sid}/s", admin=False, json={})


def test_sliding_wait_maths() -> None:
    rule = throttle.Rule("byMinute", 60, 10)
    # 30 s into a window, 4 calls now, 20 in the previous window (weight 0.5 → 10 + 4 > 10)
    wait = throttle._wait_sliding(rule, 90.0, 4, 20)
    assert wait == pytest.approx(15)  # the share must fade to 5 (weight .25): 45 s into the window
    assert throttle._wait_sliding(rule, 90.0, 10, 0) > 30  # current alone is full
    assert throttle._wait_fixed(rule, 90.0) == 30
    assert throttle.rules_of({"byMinute": 0, "bySecond": True, "byHour": 5, "window": "x"}) == [
        throttle.Rule("byHour", 3600, 5)]
