"""Every connector type end to end, against real servers, through a running ``fluxfunc-server``
(HTTP API) and ``fluxfunc-worker`` (docs/connectors.md, "What the tests prove"):

1. a create with a wrong password (or token; a host nobody listens on for the types without
   credentials) is a 400 naming the failure, and nothing is saved;
2. the create with the right secret answers it masked, and the raw store row holds only its
   ciphertext;
3. a published script using ``DFF.CONN`` makes the round trip (SQL insert + select in a
   transaction rolled back, key set/get, a publish received by a subscriber of the test, a
   time-series write read back);
4. the same connector saved with ``skipTest`` and the wrong secret fails the task with an
   error naming the connector and the failure, the secret nowhere in the answer.

The servers that check a password are private ones (tests/e2e/authed_servers.py): the shared
ones of this machine let anyone in.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web
from tests.conftest import RedisServer
from tests.connector_servers import require
from tests.e2e import authed_servers as authed
from tests.e2e.connector_checks import ROUND_TRIPS, SCRIPT, SCRIPT_ID, Stack
from tests.e2e.faults import Deployment
from tests.guance_receiver import Receiver
from tests.processes import wait_for

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(300)]

PATH = "/api/v1/connectors"
TOKEN = "tkn_h1_acceptance_0123456789"


@dataclass(frozen=True)
class Case:
    kind: str
    secret: str | None  # the config field holding the secret ("password", "token"), if any
    failure: str  # what the 400 and the task error say for the bad config
    servers: tuple[str, ...] = ()  # shared servers of this machine the case needs


CASES = [
    Case("mysql", "password", "authentication failed", ("mysql",)),
    Case("postgresql", "password", "authentication failed"),
    Case("redis", "password", "authentication failed"),
    Case("mqtt", "password", "authentication failed"),
    Case("amqp", "password", "authentication failed", ("amqp",)),
    Case("nats", "password", "authentication failed"),
    Case("memcached", None, "host unreachable", ("memcached",)),
    Case("influxdb", "password", "authentication failed"),
    Case("datakit", None, "host unreachable"),
    Case("dataway", "token", "authentication failed"),
]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def stack(tmp_path_factory: pytest.TempPathFactory,
                redis_server: RedisServer) -> AsyncIterator[Stack]:
    """One Server and one Worker for the module, the acceptance script published."""
    tmp = tmp_path_factory.mktemp("connectors")
    d = Deployment(tmp, redis_server.url, f"sqlite:///{tmp / 'store.db'}")
    try:
        await d.open()
        await d.call("POST", "/api/v1/scripts", {"id": SCRIPT_ID, "code": SCRIPT})
        await d.call("POST", f"/api/v1/scripts/{SCRIPT_ID}/publish")
        d.start("fluxfunc_worker", "worker")
        await d.workers_ready(1)
        yield Stack(d, tmp / "store.db")
    finally:
        await d.close()


@pytest.fixture(scope="module")
def servers() -> Iterator[Callable[[str], Any]]:
    """The private servers, each started on first use and kept for the module."""
    with ExitStack() as exits:
        started: dict[str, Any] = {}
        makers: dict[str, Callable[[], Any]] = {
            "postgresql": authed.postgresql_with_password, "redis": authed.redis_with_password,
            "mqtt": authed.mosquitto_with_password, "nats": authed.nats_with_password,
            "influxdb": lambda: authed.influxdb_with_password("h1_acceptance"),
            "mysql": authed.mysql_user_with_password}

        def get(kind: str) -> Any:
            if kind not in started:
                started[kind] = exits.enter_context(makers[kind]())
            return started[kind]

        yield get


@pytest_asyncio.fixture(loop_scope="module")
async def receivers() -> AsyncIterator[Callable[[str | None], Awaitable[int]]]:
    """Start protocol-checking DataKit / DataWay receivers (tests/guance_receiver.py)."""
    runners: list[web.AppRunner] = []

    async def start(token: str | None) -> int:
        runner = web.AppRunner(Receiver(token=token).app())
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        runners.append(runner)
        return int(runner.addresses[0][1])

    yield start
    for runner in runners:
        await runner.cleanup()


UNREACHABLE = {"host": "127.0.0.1", "port": 1, "timeout": 2}


Config = dict[str, Any]


async def _configs(case: Case, servers: Callable[[str], Any],
                   receivers: Callable[[str | None], Awaitable[int]]) -> tuple[Config, Config]:
    """(good config, bad config) of a case."""
    kind = case.kind
    if kind in ("mysql", "postgresql", "redis", "mqtt", "nats", "influxdb"):
        a = servers(kind)
        good = {"host": "127.0.0.1", "port": a.port, "password": a.password, "timeout": 5}
        if a.user:
            good["user"] = a.user
        database = {"mysql": a.database, "postgresql": "postgres", "influxdb": "h1_acceptance"}
        if kind in database:
            good["database"] = database[kind]
        return good, {**good, "password": f"wrong-{kind}-pw"}
    if kind == "amqp":
        good = {"host": "127.0.0.1", "port": 5672, "user": "guest", "password": "guest", "timeout": 5}
        return good, {**good, "password": "wrong-amqp-pw"}
    if kind == "memcached":
        return {"servers": "127.0.0.1:11211", "timeout": 5}, {"servers": "127.0.0.1:1", "timeout": 2}
    if kind == "datakit":
        return {"host": "127.0.0.1", "port": await receivers(None), "source": "h1"}, UNREACHABLE
    port = await receivers(TOKEN)
    good = {"host": "127.0.0.1", "port": port, "token": TOKEN}
    return good, {**good, "token": "wrong-dataway-token"}


def _raw_row(store: Path, cid: str) -> str:
    with sqlite3.connect(store) as db:
        rows = db.execute("SELECT data FROM connectors WHERE id = ?", (cid,)).fetchall()
    assert len(rows) == 1, f"no stored row for {cid}"
    return str(rows[0][0])


async def _refused_on_save(s: Stack, case: Case, cid: str, bad: dict[str, Any]) -> None:
    status, body = await s.request("POST", PATH, {"id": cid, "type": case.kind, "config": bad})
    assert status == 400 and body["reason"] == "EClientBadRequest", body
    assert case.failure in body["message"] and case.kind in body["message"], body["message"]
    if case.secret and bad.get(case.secret):
        assert str(bad[case.secret]) not in json.dumps(body)
    assert (await s.request("GET", f"{PATH}/{cid}"))[0] == 404


async def _saved_sealed(s: Stack, case: Case, cid: str, good: dict[str, Any]) -> None:
    status, body = await s.request("POST", PATH, {"id": cid, "type": case.kind, "config": good})
    assert status == 200, body
    plain = str(good[case.secret]) if case.secret and good.get(case.secret) else None
    if plain is None:
        return
    assert body["data"]["config"][case.secret] == "******"
    _, listed = await s.request("GET", PATH)
    _, one = await s.request("GET", f"{PATH}/{cid}")
    raw = _raw_row(s.store, cid)
    stored = json.loads(raw)["config"]
    assert case.secret not in stored
    if plain not in (str(v) for k, v in good.items() if k != case.secret):  # RabbitMQ's guest/guest
        assert plain not in json.dumps(body) + json.dumps(listed) + json.dumps(one) + raw
    assert str(stored[f"{case.secret}Cipher"]).startswith("v2:")


async def _fails_at_run_time(s: Stack, case: Case, cid: str, bad: dict[str, Any]) -> None:
    bad_id = f"{cid}_bad"
    status, body = await s.request("POST", PATH, {"id": bad_id, "type": case.kind, "config": bad,
                                                  "skipTest": True})
    assert status == 200, body
    status, body = await ROUND_TRIPS[case.kind].call(s, bad_id)
    assert status == 599 and body["reason"] == "EFuncFailed", body
    message = body["message"]
    assert f"connector {bad_id!r} ({case.kind})" in message and case.failure in message, message
    assert body["detail"]["status"] == "failure"
    if case.secret and bad.get(case.secret):
        assert str(bad[case.secret]) not in json.dumps(body)


@pytest.mark.parametrize("case", CASES, ids=[c.kind for c in CASES])
async def test_connector_type_end_to_end(case: Case, stack: Stack, servers: Callable[[str], Any],
                                         receivers: Callable[[str | None], Awaitable[int]]) -> None:
    require(*case.servers)
    cid = f"{case.kind}_{secrets.token_hex(4)}"
    good, bad = await _configs(case, servers, receivers)
    await _refused_on_save(stack, case, cid, bad)
    await _saved_sealed(stack, case, cid, good)
    await ROUND_TRIPS[case.kind].check(stack, cid, good)
    await _fails_at_run_time(stack, case, cid, bad)
    await asyncio.gather(*(stack.request("DELETE", f"{PATH}/{i}") for i in (cid, f"{cid}_bad")))


def _metric(text: str, name: str, **labels: str) -> float:
    """The value of one series of a Prometheus exposition (0 when absent)."""
    want = name + "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"
    for line in text.splitlines():
        if line.startswith(want + " "):
            return float(line.split()[-1])
    return 0.0


async def test_subscription_messages_are_tasks_counted_by_origin_and_connector(
        stack: Stack, servers: Callable[[str], Any]) -> None:
    """Each message of an MQTT subscription (on the password-checking Mosquitto) becomes one
    task with origin ``subscription``: in the task records, in ``fluxfunc_tasks_by_origin`` and
    in the connector's ``fluxfunc_subscription_messages``."""
    broker, count = servers("mqtt"), 5
    cid, topic = f"subs_{secrets.token_hex(4)}", f"fluxfunc-test/h1/{secrets.token_hex(4)}"
    metrics = (await stack.d.get("/metrics"))
    before = _metric(await metrics.text(), "fluxfunc_tasks_by_origin_total", origin="subscription",
                     status="success")
    if not any(s.log_path.name == "beat.log" for s in stack.d.services):
        stack.d.start("fluxfunc_beat", "beat")
    assert await stack.ok("handle", topic="direct", message="call") == {"topic": "direct",
                                                                        "message": "call"}
    config = {"host": "127.0.0.1", "port": broker.port, "user": broker.user,
              "password": broker.password,
              "topicHandlers": [{"topic": topic, "funcId": f"{SCRIPT_ID}.handle"}]}
    status, body = await stack.request("POST", PATH, {"id": cid, "type": "mqtt", "config": config})
    assert status == 200, body
    await asyncio.to_thread(_publish_until_subscribed, broker, topic, stack, cid)
    await asyncio.to_thread(_publish, broker, topic, [f"m{i}".encode() for i in range(count)])

    async def records() -> list[dict[str, Any]] | None:
        _, found = await stack.request("GET", f"/api/v1/task-records?origin=subscription&originId={cid}")
        rows = [r for r in found.get("data") or [] if str(r["result"]["message"]).startswith("m")]
        return rows if len(rows) == count else None

    rows = await wait_for(records, 90, 0.3, what=f"{count} subscription task records")
    assert sorted(r["result"]["message"] for r in rows) == [f"m{i}" for i in range(count)]
    assert {(r["origin"], r["originId"], r["status"]) for r in rows} == {("subscription", cid, "success")}

    async def counted() -> str | None:
        text = await (await stack.d.get("/metrics")).text()
        enqueued = _metric(text, "fluxfunc_subscription_messages_total", connector=cid, outcome="enqueued")
        done = _metric(text, "fluxfunc_tasks_by_origin_total", origin="subscription", status="success")
        return text if enqueued >= count + 1 and done - before >= count + 1 else None

    text = await wait_for(counted, 30, 0.3, what="the subscription counted in /metrics")
    assert _metric(text, "fluxfunc_tasks_by_origin_total", origin="direct", status="success") > 0
    await stack.request("DELETE", f"{PATH}/{cid}")

    async def forgotten() -> bool:
        return f'connector="{cid}"' not in await (await stack.d.get("/metrics")).text()

    await wait_for(forgotten, 30, 0.3, what="a deleted connector left out of /metrics")


def _publish(broker: Any, topic: str, payloads: list[bytes]) -> None:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"h1pub-{secrets.token_hex(4)}")
    client.username_pw_set(broker.user, broker.password)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    try:
        for info in [client.publish(topic, p, qos=1) for p in payloads]:
            info.wait_for_publish(timeout=30)
    finally:
        client.loop_stop()
        client.disconnect()


def _publish_until_subscribed(broker: Any, topic: str, stack: Stack, cid: str) -> None:
    """Publish "probe" until the Beat's consumer took one (its task record exists)."""
    import time
    import urllib.request

    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        _publish(broker, topic, [b"probe"])
        request = urllib.request.Request(
            f"{stack.d.base}/api/v1/task-records?origin=subscription&originId={cid}",
            headers={"Authorization": f"Bearer {stack.d.token}"})
        with urllib.request.urlopen(request, timeout=30) as resp:
            if json.loads(resp.read())["data"]:
                return
        time.sleep(0.5)
    raise AssertionError("the subscription never took a message")
