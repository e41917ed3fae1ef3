"""The public edge against hostile callers: scoped idempotency keys (409 on reuse for another
func), the body charset allow-list with API auth before the body, JSON nesting bounds that
keep bad requests away from other callers' enqueues, access-key signatures checked before
the body (and no key-id oracle), and admin calls validated before they write anything."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest
from tests.server.conftest import AK_ID, Api, FakeWorker, nested
from tests.server.loopprobe import LoopHold
from tests.server.test_adminauth import sdk_headers

from fluxfunc_common.store import Entity

pytestmark = pytest.mark.usefixtures("published")

PUNYCODE_BODY = b"-" + b"b" * 400_000  # ~400 KB; Python's punycode decoder is quadratic



# --- 1. idempotency keys are scoped ---------------------------------------------------------


async def test_an_anonymous_caller_never_gets_an_admin_result_by_idempotency_key(
        api: Api, fake_worker: FakeWorker) -> None:
    """The attack of the issue: an admin-only call with ``order-42``, then an anonymous
    sync-API call with the same key: each gets its own function's result."""
    _, body, _ = await api.call("POST", "/api/v1/func/demo__basic.echo", json={
        "kwargs": {"secret": "admin only"}, "options": {"idempotencyKey": "order-42"}})
    assert body["data"]["result"] == {"secret": "admin only"}
    sid = await api.entry("sync-apis", "plus")
    _, body, _ = await api.call("GET", f"/api/v1/sync/{sid}", admin=False, params={
        "kwargs": json.dumps({"x": 1}), "options": json.dumps({"idempotencyKey": "order-42"})})
    assert body == 2
    # the reverse: an anonymous call first, then the admin's with the same key runs its func
    echo = await api.entry("sync-apis", "echo")
    _, body, _ = await api.call("POST", f"/api/v1/sync/{echo}", admin=False, json={
        "kwargs": {"who": "anonymous"}, "options": {"idempotencyKey": "order-43"}})
    assert body == {"who": "anonymous"}
    _, body, _ = await api.call("POST", "/api/v1/func/demo__basic.echo", json={
        "kwargs": {"who": "admin"}, "options": {"idempotencyKey": "order-43"}})
    assert body["data"]["result"] == {"who": "admin"}
    assert len(fake_worker.seen) == 4


async def test_a_key_reused_for_another_func_is_a_409(api: Api, fake_worker: FakeWorker) -> None:
    opts = {"async": True, "idempotencyKey": "k-409"}
    _, first, _ = await api.call("POST", "/api/v1/func/demo__basic.plus",
                                 json={"kwargs": {"x": 1}, "options": opts})
    _, again, _ = await api.call("POST", "/api/v1/func/demo__basic.plus",
                                 json={"kwargs": {"x": 1}, "options": opts})
    assert again["data"]["id"] == first["data"]["id"]  # same func: the same task
    _, body, _ = await api.call("POST", "/api/v1/func/demo__basic.echo", expect=409,
                                json={"kwargs": {}, "options": opts})
    assert body["ok"] is False and body["detail"]["idempotencyKey"] == "k-409"
    assert first["data"]["id"] not in json.dumps(body)
    _, body, _ = await api.call("POST", "/api/v1/func-many", expect=409, json={"calls": [
        {"funcId": "demo__basic.noargs", "options": {"delay": 3600}},
        {"funcId": "demo__basic.noargs", "options": {"idempotencyKey": "k-409"}}]})
    assert body["detail"]["index"] == 1
    assert await api.ctx.redis.zcard(api.ctx.keys.delayed("default")) == 0  # all or nothing
    # an entry point re-pointed to another func: its callers' old keys are a 409 too
    aid = await api.entry("async-apis", "plus")
    call = {"kwargs": {"x": 1}, "options": {"idempotencyKey": "k-entry"}}
    await api.call("POST", f"/api/v1/async/{aid}", admin=False, json=call)
    await api.call("PATCH", f"/api/v1/async-apis/{aid}", json={"funcId": "demo__basic.echo"})
    await api.call("POST", f"/api/v1/async/{aid}", admin=False, json=call, expect=409)


async def test_each_entry_point_and_principal_has_its_own_keys(api: Api, fake_worker: FakeWorker) -> None:
    first, second = await api.entry("async-apis"), await api.entry("async-apis")
    call = {"kwargs": {"x": 1}, "options": {"idempotencyKey": "shared"}}
    ids = [(await api.call("POST", f"/api/v1/async/{aid}", admin=False, json=call))[1]["data"]["id"]
           for aid in (first, second, first)]
    assert ids[0] != ids[1] and ids[2] == ids[0]
    users = {"type": "httpBasic", "users": [{"username": "u1", "password": "p1"},
                                            {"username": "u2", "password": "p2"}]}
    basic = await api.entry("async-apis", apiAuth=users)
    got = set()
    for user in ("u1", "u2", "u1"):
        token = base64.b64encode(f"{user}:{user.replace('u', 'p')}".encode()).decode()
        _, body, _ = await api.call("POST", f"/api/v1/async/{basic}", admin=False, json=call,
                                    headers={"Authorization": f"Basic {token}"})
        got.add((user, body["data"]["id"]))
    assert len({task for _, task in got}) == 2


async def test_a_refused_delay_leaves_no_idempotency_key(api: Api, fake_worker: FakeWorker) -> None:
    for options in ({"delay": 1e300}, {"delay": 400 * 86400}, {"eta": "9999-01-01T00:00:00"},
                    {"maxWait": 1e300}):
        _, body, _ = await api.call("POST", "/api/v1/func/demo__basic.plus", expect=400, json={
            "kwargs": {"x": 1}, "options": {**options, "idempotencyKey": "late"}})
        assert body["reason"] == "EClientBadRequest"
    assert not [k async for k in api.ctx.redis.scan_iter(match=api.ctx.keys.idem("*"))]
    _, body, _ = await api.call("POST", "/api/v1/func/demo__basic.plus", json={
        "kwargs": {"x": 1}, "options": {"idempotencyKey": "late"}})
    assert body["data"]["result"] == 2


# --- 2. charsets, and API auth before the body ------------------------------------------------


@pytest.mark.parametrize("ctype", ["text/plain; charset=punycode",
                                   "application/json; charset=punycode",
                                   "application/x-www-form-urlencoded; charset=punycode",
                                   "text/plain; charset=utf-7", "text/plain; charset=idna"])
async def test_a_body_in_another_charset_is_refused_without_decoding(
        api: Api, fake_worker: FakeWorker, ctype: str) -> None:
    sid = await api.entry("sync-apis", "echo")
    async with LoopHold() as hold:
        health = asyncio.create_task(api.client.get("/healthz"))
        _, body, _ = await api.call("POST", f"/api/v1/sync/{sid}/s", admin=False, expect=400,
                                    data=PUNYCODE_BODY, headers={"Content-Type": ctype})
        assert (await health).status == 200
    assert "charset" in body["message"].lower() and "utf-8" in body["detail"]["allowed"]
    # decoding 400 KB of punycode holds the loop for many seconds; refusing it, for nothing
    # like the 100 ms
    assert hold.worst < 0.1, f"the event loop was held {hold.worst:.2f} s"


def multipart(*parts: tuple[str, bytes, str]) -> tuple[bytes, dict[str, str]]:
    """A multipart/form-data body of (name, raw bytes, part content type) fields."""
    out = b""
    for name, raw, ctype in parts:
        out += (f'--XyZ\r\nContent-Disposition: form-data; name="{name}"\r\n'
                f"Content-Type: {ctype}\r\n\r\n").encode() + raw + b"\r\n"
    return out + b"--XyZ--\r\n", {"Content-Type": "multipart/form-data; boundary=XyZ"}


async def test_a_multipart_field_in_another_charset_is_refused(api: Api, fake_worker: FakeWorker) -> None:
    sid = await api.entry("sync-apis", "echo")
    data, headers = multipart(("ok", b"fine", "text/plain"),
                              ("bad", PUNYCODE_BODY, "text/plain; charset=punycode"))
    _, body, _ = await api.call("POST", f"/api/v1/sync/{sid}/s", admin=False, expect=400,
                                data=data, headers=headers)
    assert "charset" in body["message"].lower()
    data, headers = multipart(("a", "é".encode("latin-1"), "text/plain; charset=latin-1"),
                              ("b", "二".encode("gb18030"), "text/plain; charset=gb18030"),
                              ("b", b"x", "text/plain"))
    _, body, _ = await api.call("POST", f"/api/v1/sync/{sid}/s", admin=False, data=data, headers=headers)
    assert body == {"a": "é", "b": ["二", "x"]}


async def test_allowed_charsets_decode_and_decode_errors_are_400(api: Api, fake_worker: FakeWorker) -> None:
    sid = await api.entry("sync-apis", "echo")
    for charset, text in (("utf-8", "héllo"), ("ISO-8859-1", "héllo"), ("us-ascii", "hello"),
                          ("gbk", "你好"), ("utf-16", "héllo")):
        _, body, _ = await api.call("POST", f"/api/v1/sync/{sid}/s", admin=False,
                                    data=text.encode(charset),
                                    headers={"Content-Type": f"text/plain; charset={charset}"})
        assert body == {"text": text}, charset
    _, body, _ = await api.call("POST", f"/api/v1/sync/{sid}/s", admin=False,
                                data='{"x": "é"}'.encode("latin-1"),
                                headers={"Content-Type": "application/json; charset=latin-1"})
    assert body == {"x": "é"}
    for data, ctype in ((b"\xff\xfe\xfa", "text/plain; charset=utf-8"),
                        (b"\xff", "text/plain; charset=us-ascii"),
                        (b'{"x": "\xff"}', "application/json"),
                        (b"a=%FF\xff", "application/x-www-form-urlencoded")):
        _, body, _ = await api.call("POST", f"/api/v1/sync/{sid}/s", admin=False, expect=400,
                                    data=data, headers={"Content-Type": ctype})
        assert body["reason"] == "EClientBadRequest", data


async def test_header_api_auth_is_checked_before_the_body(api: Api, fake_worker: FakeWorker) -> None:
    auth = {"type": "fixedField", "location": "header", "field": "X-Key", "value": "s3cret"}
    sid = await api.entry("sync-apis", "echo", apiAuth=auth)
    for ctype, data in (("application/json", b"{not json"), ("text/plain; charset=punycode", PUNYCODE_BODY),
                        ("application/json", json.dumps({"kwargs": nested(300)}).encode())):
        _, body, _ = await api.call("POST", f"/api/v1/sync/{sid}", admin=False, expect=401,
                                    data=data, headers={"Content-Type": ctype})
        assert body["reason"] == "EAPIAuth"
    _, body, _ = await api.call("POST", f"/api/v1/sync/{sid}", admin=False, expect=400,
                                data=b"{not json", headers={"Content-Type": "application/json",
                                                            "X-Key": "s3cret"})
    assert body["reason"] == "EClientBadRequest"


async def test_body_api_auth_still_reads_the_body(api: Api, fake_worker: FakeWorker) -> None:
    auth = {"type": "fixedField", "location": "body", "field": "key", "value": "s3cret"}
    sid = await api.entry("sync-apis", "echo", apiAuth=auth)
    _, body, _ = await api.call("POST", f"/api/v1/sync/{sid}/s", admin=False, json={"key": "s3cret", "n": 1})
    assert body == {"n": 1}
    await api.call("POST", f"/api/v1/sync/{sid}/s", admin=False, json={"key": "no"}, expect=401)


# --- 3. nesting bounds; one bad request never fails another -----------------------------------


@pytest.mark.parametrize("depth", [65, 100, 220, 300])
async def test_deeply_nested_kwargs_and_options_are_400(api: Api, fake_worker: FakeWorker,
                                                        depth: int) -> None:
    sid, aid = await api.entry("sync-apis", "echo"), await api.entry("async-apis", "echo")
    deep = nested(depth)
    requests: list[tuple[str, dict[str, Any]]] = [
        (f"/api/v1/sync/{sid}", {"json": {"kwargs": {"k": deep}}}),
        (f"/api/v1/sync/{sid}/s", {"json": {"k": deep}}),
        (f"/api/v1/async/{aid}", {"json": {"kwargs": {"k": deep}}}),
        (f"/api/v1/async/{aid}", {"json": {"options": deep}}),
    ]
    for path, kwargs in requests:
        _, body, _ = await api.call("POST", path, admin=False, expect=400, **kwargs)
        assert "nested too deeply" in body["message"] and body["detail"]["maxDepth"] == 64
    _, body, _ = await api.call("GET", f"/api/v1/sync/{sid}", admin=False, expect=400,
                                params={"kwargs": json.dumps({"k": deep})})
    assert "nested too deeply" in body["message"]
    _, body, _ = await api.call("POST", "/api/v1/func/demo__basic.echo", expect=400,
                                json={"kwargs": {"k": deep}})
    assert "nested too deeply" in body["message"]
    _, body, _ = await api.call("POST", "/api/v1/sync-apis", expect=400,
                                json={"funcId": "demo__basic.echo", "kwargs": {"k": deep}})
    assert fake_worker.seen == []
    _, body, _ = await api.call("POST", f"/api/v1/sync/{sid}/s", admin=False, json={"k": nested(63)})
    assert body == {"k": nested(63)}  # 64 levels with the body itself: still fine


async def test_a_large_body_is_depth_checked_too(api: Api, fake_worker: FakeWorker) -> None:
    """Bodies over 256 KB are depth-checked off the event loop: the same answers."""
    sid = await api.entry("sync-apis", "echo")
    pad = "x" * 300_000
    _, body, _ = await api.call("POST", f"/api/v1/sync/{sid}/s", admin=False, expect=400,
                                json={"pad": pad, "k": nested(100)})
    assert "nested too deeply" in body["message"]
    _, body, _ = await api.call("POST", f"/api/v1/sync/{sid}/s", admin=False,
                                json={"pad": pad, "k": nested(10)})
    assert body == {"pad": pad, "k": nested(10)}


async def test_nested_senders_do_not_fail_legitimate_async_calls(api: Api, fake_worker: FakeWorker) -> None:
    """4 anonymous senders of 300-level kwargs alongside 200 legitimate async calls: every
    legitimate call is accepted and runs; every bad one is a 400."""
    aid, bad = await api.entry("async-apis", "plus"), await api.entry("async-apis", "echo")
    evil = json.dumps({"kwargs": {"k": nested(300)}})

    async def sender() -> list[int]:
        out = []
        for _ in range(25):
            resp = await api.client.post(f"/api/v1/async/{bad}", data=evil,
                                         headers={"Content-Type": "application/json"})
            out.append(resp.status)
            await resp.read()
        return out

    async def legit(i: int) -> str:
        _, body, _ = await api.call("POST", f"/api/v1/async/{aid}", admin=False,
                                    json={"kwargs": {"x": i}})
        return str(body["data"]["id"])

    results = await asyncio.gather(*(sender() for _ in range(4)), *(legit(i) for i in range(200)))
    statuses = [s for r in results[:4] for s in r]
    assert statuses == [400] * 100
    await fake_worker.wait_seen(200, within=60)
    assert sorted(e.kwargs["x"] for e in fake_worker.seen) == list(range(200))


# --- 5. access-key signatures before the body ---------------------------------------------------


@pytest.mark.usefixtures("access_key")
async def test_access_key_errors_never_tell_which_key_ids_exist(api: Api) -> None:
    path = "/api/v1/func/demo__basic.echo"
    body = b'{"kwargs": ' + b'{"a": ' * 2000 + b"{}" + b"}" * 2001  # 500 before: parsed first
    answers = []
    for ak_id in (AK_ID, "ak-unknown"):
        headers = {**sdk_headers("POST", path, body, secret="wrong"), "X-Dff-Ak-Id": ak_id}
        _, got, _ = await api.call("POST", path, admin=False, expect=401, data=body, headers=headers)
        answers.append((got["reason"], got["message"], got["detail"]))
    assert answers[0] == answers[1] and answers[0][0] == "EUserAuth"
    # a correctly signed nested body gets past auth and is then refused as too deep
    for depth in (2000, 100):
        deep = b'{"kwargs": ' + b'{"a": ' * depth + b"{}" + b"}" * (depth + 1)
        _, got, _ = await api.call("POST", path, admin=False, expect=400, data=deep,
                                   headers=sdk_headers("POST", path, deep))
        assert got["reason"] == "EClientBadRequest" and "deep" in got["message"]


# --- 8. admin writes are validated first and all-or-nothing ---------------------------------------


@pytest.mark.parametrize("code", ["x = " + "-" * 100_000 + "1",
                                  "x = " + "+".join(["1"] * 100_000),
                                  "def broken(:\n    pass\n", "   ",
                                  "@DFF.API('X', expires=1e300)\ndef x():\n    pass\n",
                                  "@DFF.API('X', cache_result=1000000000000)\ndef x():\n    pass\n"])
async def test_a_publish_that_fails_leaves_the_draft(api: Api, code: str) -> None:
    draft = "@DFF.API('Kept')\ndef kept():\n    return 1\n"
    await api.call("PATCH", "/api/v1/scripts/demo__basic", json={"code": draft})
    _, body, _ = await api.call("POST", "/api/v1/scripts/demo__basic/publish", expect=400,
                                json={"code": code})
    assert body["reason"] in ("EClientBadRequest", "EScriptInvalid"), body
    script = await api.ctx.store.get(Entity.SCRIPT, "demo__basic")
    assert script["code"] == draft
    assert await api.ctx.store.find(Entity.FUNC, "demo__basic.plus") is not None  # still published
