"""``POST /api/v1/import`` for the console, beyond the round trip: an applied import announces
every change the way the management API does (publish generation with its change log, events,
the cron stream, the connectors and packages counters); connectors with their secrets; a
dry run that lists conflicts by id; DataFlux Func 1.x's password-protected package with a
right, wrong or missing password."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from tests.common.test_transfer_dff_package import PACKAGE, PASSWORD, package_file
from tests.server.conftest import Api
from tests.server.test_transfer_api import PASSPHRASE, export, form, fresh, populate

from fluxfunc_common import scriptchanges
from fluxfunc_common.store import Entity

__all__ = ["fresh"]  # the second deployment of the transfer tests, a fixture here too

CONNECTOR = {"id": "cache", "type": "redis", "skipTest": True,
             "config": {"host": "127.0.0.1", "port": 6399, "password": "r3dis",
                        "topicHandlers": [{"topic": "t", "funcId": "demo__basic.plus",
                                           "isDisabled": True}]}}


async def _counter(api: Api, key: str) -> int:
    return int(await api.ctx.redis.get(key) or 0)


async def _events(pubsub: Any, wanted: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events a subscribed ``pubsub`` got, read until ``wanted`` are among them (or 10 s)."""
    seen: list[dict[str, Any]] = []
    deadline = asyncio.get_running_loop().time() + 10
    while any(w not in seen for w in wanted) and asyncio.get_running_loop().time() < deadline:
        message = await pubsub.get_message(timeout=0.2)
        if message is not None:
            seen.append(orjson.loads(message["data"]))
    await pubsub.aclose()
    return seen


async def test_an_applied_import_announces_every_change(api: Api, fresh: Api) -> None:
    await populate(api)
    await api.create("/api/v1/connectors", CONNECTOR)
    data = await export(api, {"withSecrets": True, "passphrase": PASSPHRASE})
    keys = fresh.ctx.keys
    generation = await _counter(fresh, keys.scripts_version())
    connectors = await _counter(fresh, keys.connectors_version())
    packages = await _counter(fresh, keys.python_packages_version())
    pubsub = fresh.ctx.redis.pubsub(ignore_subscribe_messages=True)
    await pubsub.subscribe(keys.events())
    _, body, _ = await fresh.call("POST", "/api/v1/import", data=form(data, passphrase=PASSPHRASE))
    wanted = [{"type": "scriptPublished", "scriptId": "demo__basic"},
              {"type": "envVariableChanged", "id": "db_pass", "op": "create"},
              {"type": "envVariableChanged", "id": "limit", "op": "create"}]
    events = await _events(pubsub, wanted)
    assert body["data"]["applied"] is True and body["data"]["counts"]["create"] == 7
    new_generation = await _counter(fresh, keys.scripts_version())
    # workers: one logged generation per script, so they drop only that script
    assert await scriptchanges.between(fresh.ctx.redis, keys, generation,
                                       new_generation) == {"demo__basic"}
    assert all(w in events for w in wanted), events
    # the Beat: the cron job; workers and Beat: the connector; workers: the package set
    stream = await fresh.ctx.redis.xrange(keys.cron_changed())
    assert {b"id": b"cron-plus", b"op": b"create"} in [fields for _, fields in stream]
    assert await _counter(fresh, keys.connectors_version()) == connectors + 1
    assert await _counter(fresh, keys.python_packages_version()) == packages + 1
    _, body, _ = await fresh.call("GET", "/api/v1/connectors/cache")
    assert body["data"]["config"]["password"] == "******"
    assert body["data"]["config"]["topicHandlers"][0]["isDisabled"] is True
    stored = await fresh.ctx.store.get_connector("cache")
    assert fresh.ctx.cipher.decrypt(str(stored.config["passwordCipher"])) == "r3dis"


async def test_without_secrets_the_plan_says_which_to_set(api: Api, fresh: Api) -> None:
    await populate(api)
    await api.create("/api/v1/connectors", CONNECTOR)
    data = await export(api)
    _, body, _ = await fresh.call("POST", "/api/v1/import?dryRun=1", data=form(data))
    plan = body["data"]
    step = next(o for o in plan["objects"] if o["kind"] == "connectors")
    assert step == {"kind": "connectors", "id": "cache", "action": "create",
                    "why": "without its password, untested"}
    assert any(n.startswith("connector cache: set its password") for n in plan["notes"])
    assert await fresh.ctx.store.find_connector("cache") is None


async def test_a_dry_run_lists_conflicts_by_id_and_writes_nothing(api: Api, fresh: Api) -> None:
    await populate(api)
    await api.create("/api/v1/connectors", CONNECTOR)
    data = await export(api)
    await fresh.create("/api/v1/connectors", {**CONNECTOR, "config": {"host": "elsewhere"}})
    _, body, _ = await fresh.call("POST", "/api/v1/import", data=form(data, dryRun="true"))
    plan = body["data"]
    assert plan["applied"] is False and plan["counts"]["conflict"] == 1
    conflict = next(o for o in plan["objects"] if o["action"] == "conflict")
    assert conflict["id"] == "cache" and "config" in conflict["why"]
    assert await fresh.ctx.store.find(Entity.SCRIPT, "demo__basic") is None
    _, body, _ = await fresh.call("POST", "/api/v1/import", data=form(data), expect=409)
    assert [o["id"] for o in body["detail"]["objects"] if o["action"] == "conflict"] == ["cache"]
    assert await fresh.ctx.store.find(Entity.SCRIPT, "demo__basic") is None


async def test_dataflux_func_package_needs_its_password(api: Api) -> None:
    data = package_file(PACKAGE, PASSWORD)
    _, body, _ = await api.call("POST", "/api/v1/import", data=form(data, password="nope"),
                                expect=400)
    assert "wrong password" in body["message"]
    _, body, _ = await api.call("POST", "/api/v1/import", data=data, expect=400,
                                headers={"Content-Type": "text/plain"})
    assert "protected by a password" in body["message"]
    assert await api.ctx.store.find(Entity.SCRIPT_SET, "demo") is None
    _, body, _ = await api.call("POST", "/api/v1/import", data=data, headers={
        "Content-Type": "application/octet-stream", "X-Fluxfunc-Dff-Password": PASSWORD})
    assert body["data"]["applied"] is True and body["data"]["counts"]["create"] == 7
    _, body, _ = await api.call("GET", "/api/v1/sync-apis/auln-plus")
    assert body["data"]["funcId"] == "demo__calc.plus"
