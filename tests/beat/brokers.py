"""Broker helpers of the subscription tests: publishing to MQTT (Mosquitto) and AMQP (RabbitMQ)
with unique topics / queues, a private Mosquitto, and reading the tasks a subscription made."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as aioredis

from fluxfunc_common.keys import Keys
from fluxfunc_common.proc.localredis import free_port

MQTT_HOST, MQTT_PORT = "127.0.0.1", 1883
AMQP_HOST, AMQP_PORT = "127.0.0.1", 5672
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def publish_mqtt(topic: str, payloads: Iterable[bytes], *, port: int = MQTT_PORT,
                 rate: float | None = None) -> int:
    """Publish QoS 1 messages and wait until the broker acknowledged each; the count sent.
    ``rate``: at most that many messages a second."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{topic[-20:]}")
    client.max_inflight_messages_set(1000)
    client.connect(MQTT_HOST, port, 60)
    client.loop_start()
    sent, started, infos = 0, time.monotonic(), []
    try:
        for payload in payloads:
            infos.append(client.publish(topic, payload, qos=1))
            sent += 1
            if rate is not None and (ahead := sent / rate - (time.monotonic() - started)) > 0:
                time.sleep(ahead)
        for info in infos:
            info.wait_for_publish(timeout=60)
    finally:
        client.loop_stop()
        client.disconnect()
    return sent


def amqp_channel() -> Any:
    import pika

    params = pika.ConnectionParameters(host=AMQP_HOST, port=AMQP_PORT,
                                       credentials=pika.PlainCredentials("guest", "guest"))
    return pika.BlockingConnection(params)


def publish_amqp(queue: str, payloads: Iterable[bytes], *, rate: float | None = None) -> int:
    """Declare ``queue`` durable and publish persistent messages to it (confirmed)."""
    import pika

    conn = amqp_channel()
    sent, started = 0, time.monotonic()
    try:
        ch = conn.channel()
        ch.queue_declare(queue, durable=True)
        ch.confirm_delivery()
        for payload in payloads:
            ch.basic_publish("", queue, payload, pika.BasicProperties(delivery_mode=2))
            sent += 1
            if rate is not None and (ahead := sent / rate - (time.monotonic() - started)) > 0:
                time.sleep(ahead)
    finally:
        conn.close()
    return sent


def delete_amqp_queue(queue: str) -> None:
    with contextlib.suppress(Exception):
        conn = amqp_channel()
        try:
            conn.channel().queue_delete(queue)
        finally:
            conn.close()


@contextlib.contextmanager
def private_mosquitto() -> Iterator[int]:
    """A Mosquitto of our own on a free port, without the per-client queue limit (1000 queued
    QoS 1 messages by default, dropped beyond: a burst larger than that while no consumer is
    connected would be lost by the broker, not by fluxfunc). Yields its port."""
    tmp = Path(tempfile.mkdtemp(prefix="fluxfunc-mqtt-"))
    port = free_port()
    conf = tmp / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                    "max_queued_messages 0\nmax_inflight_messages 1000\n")
    proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                import socket

                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            time.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        proc.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


async def queued_tasks(redis: aioredis.Redis, keys: Keys, queue: str = "default") -> list[dict[str, Any]]:
    """Every envelope on a queue stream (no worker runs in these tests)."""
    return [orjson.loads(fields[b"body"]) for _id, fields in await redis.xrange(keys.queue(queue))]
