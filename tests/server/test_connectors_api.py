"""``/api/v1/connectors`` (admin): create tests the connection against the real servers of
this machine and saves nothing when it fails; secrets are sealed at rest and masked in answers;
PATCH keeps a secret left out; every change bumps the connectors version key."""

from __future__ import annotations

import uuid
from typing import Any

from tests.connector_servers import require
from tests.server.conftest import Api

from fluxfunc_common.connectors.sealing import unseal

PATH = "/api/v1/connectors"
AMQP = {"host": "127.0.0.1", "port": 5672, "user": "guest", "password": "guest"}


def _id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


async def _error(api: Api, body: dict[str, Any], status: int = 400) -> str:
    _, answer, _ = await api.call("POST", PATH, json=body, expect=status)
    return str(answer["message"])


async def test_create_seals_the_secret_and_masks_it(api: Api) -> None:
    require("amqp")
    cid = _id("amqp")
    created = await api.create(PATH, {"id": cid, "type": "amqp", "title": "rabbit", "config": AMQP})
    assert created["config"]["password"] == "******" and created["config"]["user"] == "guest"
    raw = await api.ctx.store.get_connector(cid)
    assert "password" not in raw.config and str(raw.config["passwordCipher"]).startswith("v2:")
    assert unseal(raw.config, api.ctx.cipher).password == "guest"
    _, listed, _ = await api.call("GET", PATH)
    assert [c["config"].get("password") for c in listed["data"] if c["id"] == cid] == ["******"]
    assert "passwordCipher" not in str(listed)
    _, one, _ = await api.call("GET", f"{PATH}/{cid}")
    assert one["data"]["config"]["password"] == "******" and "passwordCipher" not in one["data"]["config"]


async def test_failed_test_is_a_400_saying_what_and_saves_nothing(api: Api) -> None:
    require("amqp", "mysql")
    cid = _id("bad")
    message = await _error(api, {"id": cid, "type": "amqp", "config": {**AMQP, "password": "nope"}})
    assert "authentication failed" in message
    message = await _error(api, {"id": cid, "type": "mysql", "config": {
        "host": "127.0.0.1", "port": 3306, "user": "root", "password": "wrong-password"}})
    assert "authentication failed" in message
    message = await _error(api, {"id": cid, "type": "mysql", "config": {
        "host": "127.0.0.1", "port": 3306, "user": "root", "database": f"missing_{cid}"}})
    assert "database missing" in message
    message = await _error(api, {"id": cid, "type": "redis", "config": {
        "host": "127.0.0.1", "port": 1, "timeout": 2}})
    assert "host unreachable" in message
    await api.call("GET", f"{PATH}/{cid}", expect=404)


async def test_patch_keeps_the_secret_and_bumps_the_version(api: Api) -> None:
    require("amqp")
    cid = _id("amqp")
    await api.create(PATH, {"id": cid, "type": "amqp", "config": AMQP})
    version = int(await api.ctx.redis.get(api.ctx.keys.connectors_version()) or 0)
    _, changed, _ = await api.call("PATCH", f"{PATH}/{cid}", json={
        "title": "renamed", "config": {"host": "127.0.0.1", "user": "guest", "password": "******"}})
    assert changed["data"]["title"] == "renamed" and changed["data"]["config"]["password"] == "******"
    _, tested, _ = await api.call("POST", f"{PATH}/{cid}/test")
    assert tested["data"] == {"id": cid, "ok": True}
    assert int(await api.ctx.redis.get(api.ctx.keys.connectors_version())) == version + 1
    await api.call("PATCH", f"{PATH}/{cid}", json={"config": {**AMQP, "password": "nope"}},
                   expect=400)
    assert unseal((await api.ctx.store.get_connector(cid)).config, api.ctx.cipher).password == "guest"
    await api.call("DELETE", f"{PATH}/{cid}")
    await api.call("GET", f"{PATH}/{cid}", expect=404)
    assert int(await api.ctx.redis.get(api.ctx.keys.connectors_version())) == version + 2


async def test_skip_test_saves_an_unreachable_connector_and_test_says_why(api: Api) -> None:
    cid = _id("redis")
    await api.create(PATH, {"id": cid, "type": "redis", "skipTest": True,
                            "config": {"host": "127.0.0.1", "port": 1, "timeout": 2}})
    _, answer, _ = await api.call("POST", f"{PATH}/{cid}/test", expect=400)
    assert "host unreachable" in answer["message"]


async def test_admin_only_and_bodies_checked(api: Api) -> None:
    status, _, _ = await api.call("GET", PATH, admin=False, expect=None)
    assert status in (401, 403)
    await _error(api, {"id": "x", "type": "oracle", "config": {}})
    await _error(api, {"id": "x", "type": "redis", "config": {"port": "not a port"}, "skipTest": True})
    await api.call("POST", PATH, json={"id": "dup", "type": "redis", "skipTest": True})
    await api.call("POST", PATH, json={"id": "dup", "type": "redis", "skipTest": True}, expect=409)
