"""Subscriptions across a Beat leader SIGKILL, with real processes (Server, Worker, two Beats):
10,000 messages published while the leader is killed half-way each become a task (counted by
the sequence number the handler appends to a file): none missing, duplicates counted and
printed. MQTT (QoS 1, persistent session, PUBACK after enqueue) and AMQP (manual ack after
enqueue) redeliver what the dead leader had not acknowledged."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import threading
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
from tests.beat.brokers import (
    AMQP_PORT,
    MQTT_PORT,
    delete_amqp_queue,
    private_mosquitto,
    publish_amqp,
    publish_mqtt,
)
from tests.conftest import RedisServer
from tests.e2e.faults import Deployment
from tests.processes import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

SCRIPT_ID = "demo__subs"
SCRIPT = '''
@DFF.API("Handle")
def handle(topic, message):
    with open({path!r}, "a") as f:
        f.write(message + "\\n")
'''
TOTAL = 10_000
RATE = 400.0  # messages/s: the kill lands half-way through a 25 s publish


@pytest.fixture
async def deployment(tmp_path: Path, redis_server: RedisServer) -> AsyncIterator[Deployment]:
    d = Deployment(tmp_path, redis_server.url, f"sqlite:///{tmp_path / 'store.db'}",
                   {"beat": {"lease_seconds": 3}})
    try:
        await d.open()
        await d.call("POST", "/api/v1/scripts", {"id": SCRIPT_ID, "title": "Subs",
                                                 "code": SCRIPT.format(path=str(_seen_path(d)))})
        await d.call("POST", f"/api/v1/scripts/{SCRIPT_ID}/publish")
        d.start("fluxfunc_worker", "worker")
        await d.workers_ready(1)
        yield d
    finally:
        await d.close()


@pytest.fixture
def brokers() -> Iterator[Callable[[str], dict[str, Any]]]:
    """Broker endpoints by kind: a private Mosquitto without the per-client cap of queued
    messages (:func:`tests.beat.brokers.private_mosquitto`) or, with ``TEST_MQTT_SHARED=1``,
    the local one on 1883 (a unique topic; its default cap of 1000 queued messages per client
    can be passed during the leader change, and the broker then drops messages itself: its
    log says "Outgoing messages are being dropped"); the local RabbitMQ."""
    with ExitStack() as stack:
        made: dict[str, dict[str, Any]] = {}

        def get(kind: str) -> dict[str, Any]:
            if kind not in made:
                if kind == "mqtt" and os.environ.get("TEST_MQTT_SHARED"):
                    made[kind] = {"host": "127.0.0.1", "port": MQTT_PORT}
                elif kind == "mqtt":
                    made[kind] = {"host": "127.0.0.1", "port": stack.enter_context(private_mosquitto())}
                else:
                    made[kind] = {"host": "127.0.0.1", "port": AMQP_PORT, "user": "guest",
                                  "password": "guest"}
            return made[kind]

        yield get


def _seen_path(d: Deployment) -> Path:
    return d.tmp / "seen.txt"


def _seen(d: Deployment) -> Counter[str]:
    path = _seen_path(d)
    if not path.exists():
        return Counter()
    return Counter(line for line in path.read_text().split("\n")[:-1])


def _publisher(kind: str, broker: dict[str, Any], topic: str, payloads: list[bytes]) -> None:
    if kind == "mqtt":
        publish_mqtt(topic, payloads, port=broker["port"], rate=RATE)
    else:
        publish_amqp(topic, payloads, rate=RATE)


@pytest.mark.parametrize("kind", ["mqtt", "amqp"])
async def test_every_message_becomes_a_task_across_a_leader_kill(
        deployment: Deployment, brokers: Callable[[str], dict[str, Any]], kind: str) -> None:
    d = deployment
    broker = brokers(kind)
    topic = f"fluxfunc-e2e-{kind}-{secrets.token_hex(6)}"
    try:
        if kind == "amqp":  # the queue exists before the first consumer, as in production
            await asyncio.to_thread(publish_amqp, topic, [])
        a = d.start("fluxfunc_beat", "beat-a")
        await d.call("POST", "/api/v1/connectors", {
            "id": f"subs_{kind}", "type": kind, "skipTest": True,
            "config": {**broker, "topicHandlers": [{"topic": topic, "funcId": f"{SCRIPT_ID}.handle"}]}})
        await _probe(d, kind, broker, topic)  # beat-a leads and its consumer is subscribed
        d.start("fluxfunc_beat", "beat-b")
        payloads = [f"{i}".encode() for i in range(TOTAL)]
        publisher = threading.Thread(target=_publisher, args=(kind, broker, topic, payloads))
        publisher.start()

        async def half_published() -> bool:
            return len(_seen(d)) >= TOTAL // 2

        await wait_for(half_published, 120, 0.05, what="half the messages handled")
        assert a.proc is not None
        os.killpg(a.proc.pid, signal.SIGKILL)
        await asyncio.to_thread(publisher.join, 300)

        async def all_handled() -> bool:
            return {str(i) for i in range(TOTAL)} <= set(_seen(d))

        await wait_for(all_handled, 180, 0.5, what=f"all {TOTAL} messages handled")
        seen = _seen(d)
        duplicates = sum(n - 1 for key, n in seen.items() if key != "probe")
        print(f"\n{kind}: {TOTAL} messages, 0 missing, {duplicates} duplicates across a leader SIGKILL")
    finally:
        if kind == "amqp":
            await asyncio.to_thread(delete_amqp_queue, topic)


async def _probe(d: Deployment, kind: str, broker: dict[str, Any], topic: str) -> None:
    """Publish "probe" until one is handled (the subscription is live)."""
    async def handled() -> bool:
        if _seen(d)["probe"]:
            return True
        await asyncio.to_thread(_publisher, kind, broker, topic, [b"probe"])
        await asyncio.sleep(0.5)
        return bool(_seen(d)["probe"])

    await wait_for(handled, 60, 0.5, what="the subscription live")
