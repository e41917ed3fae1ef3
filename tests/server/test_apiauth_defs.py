"""Reusable API auth definitions (``/api/v1/api-auths``, docs/http-api.md "API auth"): CRUD,
secrets sealed and never answered, ``apiAuthId`` on sync/async APIs, references checked."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from tests.server.conftest import Api, FakeWorker
from tests.server.test_transfer_api import PASSPHRASE, export, form, fresh

from fluxfunc_common.crypto import Cipher
from fluxfunc_common.store import Entity

pytestmark = pytest.mark.usefixtures("published")

BASE = "/api/v1/api-auths"


def basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


async def test_crud_seals_and_masks_secrets(api: Api, cipher: Cipher) -> None:
    created = await api.create(BASE, {"title": "keys", "type": "fixedField", "config": {
        "fields": [{"location": "header", "field": "x-key", "value": "s3cret"}]}})
    aid = created["id"]
    assert aid.startswith("apia") and "s3cret" not in str(created)
    assert created["config"] == {"fields": [{"location": "header", "field": "x-key"}]}
    stored = await api.ctx.store.get(Entity.API_AUTH, aid)
    sealed = stored["config"]["fields"][0]["valueCipher"]
    assert "s3cret" not in str(stored) and cipher.decrypt(sealed) == "s3cret"
    _, listed, _ = await api.call("GET", BASE)
    assert [a["id"] for a in listed["data"]] == [aid] and "valueCipher" not in str(listed)
    # PATCH without the value keeps it; the title changes
    _, patched, _ = await api.call("PATCH", f"{BASE}/{aid}", json={"title": "renamed", "config": {
        "fields": [{"location": "header", "field": "x-key"}]}})
    assert patched["data"]["title"] == "renamed"
    again = await api.ctx.store.get(Entity.API_AUTH, aid)
    assert cipher.decrypt(again["config"]["fields"][0]["valueCipher"]) == "s3cret"
    await api.call("DELETE", f"{BASE}/{aid}")
    await api.call("GET", f"{BASE}/{aid}", expect=404)


@pytest.mark.parametrize("body", [
    {"type": "httpBasic", "config": {"users": []}},
    {"type": "httpBasic", "config": {"users": [{"username": "ann"}]}},  # new user, no password
    {"type": "httpDigest", "config": {"users": [{"username": "a", "password": "b"}],
                                      "algorithm": "SHA-1"}},
    {"type": "fixedField", "config": {"fields": [{"location": "cookie", "field": "k", "value": "v"}]}},
    {"type": "func", "config": {"funcId": "demo__basic.nope"}},
    {"type": "nope", "config": {}},
])
async def test_bad_definitions_are_400(api: Api, body: dict[str, Any]) -> None:
    await api.call("POST", BASE, json=body, expect=400)


async def test_definitions_are_admin_only(api: Api) -> None:
    await api.call("GET", BASE, admin=False, expect=401)
    await api.call("POST", BASE, admin=False, expect=401,
                   json={"type": "func", "config": {"funcId": "demo__basic.plus"}})


async def test_entry_uses_a_definition_and_sees_changes(api: Api, fake_worker: FakeWorker) -> None:
    aid = (await api.create(BASE, {"type": "httpBasic", "config": {
        "users": [{"username": "ann", "password": "pw1"}]}}))["id"]
    sid = await api.entry("sync-apis", "echo", apiAuthId=aid)
    _, shown, _ = await api.call("GET", f"/api/v1/sync-apis/{sid}")
    assert shown["data"]["apiAuthId"] == aid
    url = f"/api/v1/sync/{sid}/s"
    _, _, resp = await api.call("POST", url, admin=False, expect=401, json={})
    assert resp.headers["WWW-Authenticate"].startswith("Basic")
    _, body, _ = await api.call("POST", url, admin=False, json={"a": 1}, headers=basic("ann", "pw1"))
    assert body == {"a": 1}
    # a new password: the old one stops working on the next call
    await api.call("PATCH", f"{BASE}/{aid}", json={"config": {
        "users": [{"username": "ann", "password": "pw2"}]}})
    await api.call("POST", url, admin=False, expect=401, json={}, headers=basic("ann", "pw1"))
    await api.call("POST", url, admin=False, json={}, headers=basic("ann", "pw2"))
    # PATCH leaving the password out keeps it
    await api.call("PATCH", f"{BASE}/{aid}", json={"config": {"users": [{"username": "ann"}]}})
    await api.call("POST", url, admin=False, json={}, headers=basic("ann", "pw2"))


async def test_references_are_checked(api: Api) -> None:
    aid = (await api.create(BASE, {"type": "fixedField", "config": {
        "fields": [{"location": "query", "field": "k", "value": "v"}]}}))["id"]
    _, body, _ = await api.call("POST", "/api/v1/sync-apis", expect=400,
                                json={"funcId": "demo__basic.echo", "apiAuthId": "apia-missing"})
    assert "apia-missing" in body["message"]
    await api.call("POST", "/api/v1/async-apis", expect=400, json={
        "funcId": "demo__basic.echo", "apiAuthId": aid,
        "apiAuth": {"type": "fixedField", "location": "query", "field": "k", "value": "v"}})
    sid = await api.entry("sync-apis", "echo", apiAuthId=aid)
    aapi = await api.entry("async-apis", "echo", apiAuthId=aid)
    _, refused, _ = await api.call("DELETE", f"{BASE}/{aid}", expect=409)
    assert sorted(refused["detail"]["referrers"]) == sorted([sid, aapi])
    # dropping the reference (back to no auth) frees the definition
    await api.call("PATCH", f"/api/v1/sync-apis/{sid}", json={"apiAuthId": None})
    await api.call("DELETE", f"/api/v1/async-apis/{aapi}")
    await api.call("DELETE", f"{BASE}/{aid}")


async def test_a_vanished_definition_fails_closed(api: Api, fake_worker: FakeWorker) -> None:
    aid = (await api.create(BASE, {"type": "fixedField", "config": {
        "fields": [{"location": "query", "field": "k", "value": "v"}]}}))["id"]
    sid = await api.entry("sync-apis", "echo", apiAuthId=aid)
    _, body, _ = await api.call("POST", f"/api/v1/sync/{sid}/s?k=v", admin=False, json={"a": 1})
    assert body == {"a": 1}  # the matched query field never reaches the function
    await api.call("POST", f"/api/v1/sync/{sid}/s?k=x", admin=False, expect=401, json={})
    await api.ctx.store.delete(Entity.API_AUTH, aid)  # behind the API's back
    await api.call("POST", f"/api/v1/sync/{sid}/s?k=v", admin=False, expect=401, json={})
    assert len(fake_worker.seen) == 1


async def test_inline_digest_password_is_sealed_and_masked(api: Api, cipher: Cipher) -> None:
    sid = await api.entry("sync-apis", "echo", apiAuth={
        "type": "httpDigest", "users": [{"username": "ann", "password": "pw"}]})
    _, shown, _ = await api.call("GET", f"/api/v1/sync-apis/{sid}")
    assert shown["data"]["apiAuth"]["users"] == [{"username": "ann"}]
    stored = await api.ctx.store.get(Entity.SYNC_API, sid)
    assert cipher.decrypt(stored["apiAuth"]["users"][0]["passwordCipher"]) == "pw"


__all__ = ["fresh"]  # the second deployment of the transfer tests, a fixture here too


async def test_export_import_carries_definitions_resealed(api: Api, fresh: Api) -> None:
    aid = (await api.create(BASE, {"id": "apia-shared", "type": "httpDigest", "config": {
        "users": [{"username": "ann", "password": "pw"}], "algorithm": "SHA-256"}}))["id"]
    await api.entry("sync-apis", "echo", id="sapi-guarded", apiAuthId=aid)
    data = await export(api, {"withSecrets": True, "passphrase": PASSPHRASE})
    assert b'"pw"' not in data
    await fresh.call("POST", "/api/v1/import", data=form(data, passphrase=PASSPHRASE))
    stored = await fresh.ctx.store.get(Entity.API_AUTH, aid)
    user = stored["config"]["users"][0]
    assert fresh.ctx.cipher.decrypt(user["passwordCipher"]) == "pw"
    assert stored["config"]["algorithm"] == "SHA-256"
    assert (await fresh.ctx.store.get(Entity.SYNC_API, "sapi-guarded"))["apiAuthId"] == aid
    _, again, _ = await fresh.call("POST", "/api/v1/import", data=form(data, passphrase=PASSPHRASE))
    counts = again["data"]["counts"]
    assert counts["create"] == counts["update"] == 0 and counts["unchanged"] > 0
