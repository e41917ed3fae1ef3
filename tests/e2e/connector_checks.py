"""The round trips of the connector acceptance test (test_connectors_acceptance.py): the script
it publishes, one ``DFF.CONN`` func per connector family, and per type how to call it and how
to see from outside that it did what it said (a subscriber of the test receives the publish,
rows rolled back are gone, a written point is read back)."""

from __future__ import annotations

import asyncio
import queue
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from tests.e2e.faults import Deployment
from tests.processes import wait_for

SCRIPT_ID = "demo__connacc"
SCRIPT = '''
@DFF.API("SQL round trip")
def sql(cid, table):
    db = DFF.CONN(cid)
    db.non_query("CREATE TABLE " + table + " (name VARCHAR(20) NOT NULL)")
    db.non_query("INSERT INTO " + table + " (name) VALUES (?)", ["kept"])
    trans = db.start_trans()
    db.trans_non_query(trans, "INSERT INTO " + table + " (name) VALUES (?), (?)", ["a", "b"])
    inside = db.trans_query(trans, "SELECT name FROM " + table + " ORDER BY name")
    db.rollback(trans)
    after = db.query("SELECT name FROM " + table + " ORDER BY name")
    db.non_query("DROP TABLE " + table)
    return {"inside": [r["name"] for r in inside], "after": [r["name"] for r in after]}


@DFF.API("Key-value round trip")
def kv(cid, key):
    db = DFF.CONN(cid)
    db.set(key, "value of " + key)
    got = db.get(key)
    db.delete(key)
    return {"got": got, "after": db.get(key)}


@DFF.API("Publish")
def publish(cid, target, message, qos=None):
    conn = DFF.CONN(cid)
    if qos is None:
        conn.publish(target, message)
    else:
        conn.publish(target, message, qos=qos)
    return "sent"


@DFF.API("Subscription handler")
def handle(topic, message):
    return {"topic": topic, "message": message}


@DFF.API("Time series round trip")
def series(cid, measurement):
    db = DFF.CONN(cid)
    if hasattr(db, "write_metric"):
        db.write_metric(measurement, tags={"t": "x"}, fields={"value": 1.5})
        return db.query("M::" + measurement + ":(value)", dict_output=True)[1]["series"]
    db.write_point(measurement, {"value": 1.5}, tags={"t": "x"})
    return db.query('SELECT "value" FROM "' + measurement + '"', dict_output=True)["series"]
'''
Answer = tuple[int, Any]


@dataclass
class Stack:
    """The module's deployment and its SQLite store file (for reading raw rows)."""

    d: Deployment
    store: Path

    async def request(self, method: str, path: str, body: Any = None) -> Answer:
        """(HTTP status, JSON answer), whatever the status."""
        assert self.d.http is not None
        async with self.d.http.request(method, path, json=body,
                                       timeout=aiohttp.ClientTimeout(total=90)) as resp:
            return resp.status, await resp.json(content_type=None)

    async def run(self, func: str, **kwargs: Any) -> Answer:
        """A sync call of one func of the script through the Server."""
        return await self.request("POST", f"/api/v1/func/{SCRIPT_ID}.{func}", {"kwargs": kwargs})

    async def ok(self, func: str, **kwargs: Any) -> Any:
        status, body = await self.run(func, **kwargs)
        assert status == 200, body
        return body["data"]["result"]


def unique(prefix: str) -> str:
    return f"{prefix}_{secrets.token_hex(5)}"


@dataclass(frozen=True)
class RoundTrip:
    """``call``: the func run with a connector id (for the failing case); ``check``: the
    successful round trip, verified from outside."""

    call: Callable[[Stack, str], Awaitable[Answer]]
    check: Callable[[Stack, str, dict[str, Any]], Awaitable[None]]


# --- SQL -------------------------------------------------------------------------------------


async def _sql_call(s: Stack, cid: str) -> Answer:
    return await s.run("sql", cid=cid, table=unique("h1t"))


async def _sql_check(s: Stack, cid: str, good: dict[str, Any]) -> None:
    assert await s.ok("sql", cid=cid, table=unique("h1t")) == {"inside": ["a", "b", "kept"],
                                                               "after": ["kept"]}


# --- key-value -------------------------------------------------------------------------------


async def _kv_call(s: Stack, cid: str) -> Answer:
    return await s.run("kv", cid=cid, key=unique("h1key"))


async def _kv_check(s: Stack, cid: str, good: dict[str, Any]) -> None:
    key = unique("h1key")
    assert await s.ok("kv", cid=cid, key=key) == {"got": f"value of {key}", "after": None}


# --- brokers ---------------------------------------------------------------------------------


async def _publish_call(s: Stack, cid: str) -> Answer:
    return await s.run("publish", cid=cid, target=unique("h1.target"), message="never sent")


async def _until_received(s: Stack, cid: str, target: str, got: Callable[[], bytes | None],
                          qos: int | None = None) -> None:
    """Publish until the test's subscriber has the message (a subscription may not be in
    force for the very first one)."""
    async def received() -> bool:
        assert await s.ok("publish", cid=cid, target=target, message="hello", qos=qos) == "sent"
        for _ in range(20):
            if (body := got()) is not None:
                assert body == b"hello"
                return True
            await asyncio.sleep(0.05)
        return False

    await wait_for(received, 60, 0.1, what=f"the publish of {cid} received")


async def _mqtt_check(s: Stack, cid: str, good: dict[str, Any]) -> None:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    topic, inbox = f"fluxfunc-test/{unique('h1')}", queue.Queue[bytes]()
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=unique("h1sub"))
    sub.username_pw_set(good["user"], good["password"])
    sub.on_message = lambda _c, _u, msg: inbox.put(bytes(msg.payload))
    sub.connect("127.0.0.1", good["port"])
    sub.subscribe(topic, qos=1)
    sub.loop_start()
    try:
        await _until_received(s, cid, topic, lambda: None if inbox.empty() else inbox.get(), qos=1)
    finally:
        sub.loop_stop()
        sub.disconnect()


async def _amqp_check(s: Stack, cid: str, good: dict[str, Any]) -> None:
    import pika

    name = unique("h1q")
    conn = pika.BlockingConnection(pika.ConnectionParameters(
        "127.0.0.1", 5672, credentials=pika.PlainCredentials("guest", "guest")))
    channel = conn.channel()
    channel.queue_declare(name, auto_delete=False)
    try:
        await _until_received(s, cid, name, lambda: channel.basic_get(name, auto_ack=True)[2])
    finally:
        channel.queue_delete(name)
        conn.close()


async def _nats_check(s: Stack, cid: str, good: dict[str, Any]) -> None:
    import nats

    subject = unique("h1.subject")
    nc = await nats.connect(f"nats://127.0.0.1:{good['port']}", user=good["user"],
                            password=good["password"])
    sub = await nc.subscribe(subject)
    try:
        assert await s.ok("publish", cid=cid, target=subject, message="hello") == "sent"
        assert (await sub.next_msg(timeout=30)).data == b"hello"
    finally:
        await nc.close()


# --- time series -----------------------------------------------------------------------------


async def _series_call(s: Stack, cid: str) -> Answer:
    return await s.run("series", cid=cid, measurement=unique("h1m"))


async def _series_check(s: Stack, cid: str, good: dict[str, Any]) -> None:
    rows = await s.ok("series", cid=cid, measurement=unique("h1m"))
    assert len(rows) == 1 and len(rows[0]) == 1 and rows[0][0]["value"] == 1.5, rows


SQL = RoundTrip(_sql_call, _sql_check)
ROUND_TRIPS: dict[str, RoundTrip] = {
    "mysql": SQL, "postgresql": SQL,
    "redis": RoundTrip(_kv_call, _kv_check), "memcached": RoundTrip(_kv_call, _kv_check),
    "mqtt": RoundTrip(_publish_call, _mqtt_check), "amqp": RoundTrip(_publish_call, _amqp_check),
    "nats": RoundTrip(_publish_call, _nats_check),
    "influxdb": RoundTrip(_series_call, _series_check),
    "datakit": RoundTrip(_series_call, _series_check),
    "dataway": RoundTrip(_series_call, _series_check),
}
