"""``DFF.CONN`` of ``mqtt``, ``amqp`` and ``nats`` connectors against the real brokers of this
machine (topics, queues and subjects of the test's own): a published message is received by a
subscriber of the test; the connector's password never reaches the task's printed output."""

from __future__ import annotations

import queue
import time
from collections.abc import Callable

import nats
import paho.mqtt.client as mqtt
import pika
from paho.mqtt.enums import CallbackAPIVersion
from tests.connector_servers import require
from tests.worker.conftest import Bench, WorkerProcess
from tests.worker.dffconn_support import add_connector, unique

from fluxfunc_common.envelope import TaskStatus

SCRIPT = '''
@DFF.API("Publish")
def send(cid, target, message, routing_key=None):
    conn = DFF.CONN(cid)
    if routing_key is not None:
        conn.publish(target, message, routing_key=routing_key)
    elif cid.startswith("mqtt"):
        conn.publish(target, message, qos=1)
    else:
        conn.publish(target, message)
    print("the password is s3cret-amqp")
    return "sent"
'''


async def _send(bench: Bench, cid: str, target: str, message: object, **extra: object) -> str:
    task_id = await bench.enqueue("demo__pub.send", {"cid": cid, "target": target,
                                                     "message": message, **extra})
    result = await bench.result(task_id)
    assert result.status is TaskStatus.SUCCESS, result.exception
    return task_id


async def test_mqtt_publish_is_received(bench: Bench, workers: Callable[..., WorkerProcess]) -> None:
    require("mqtt")
    cid, topic = unique("mqtt"), f"fluxfunc-test/{unique('h11')}"
    await add_connector(bench, cid, "mqtt", host="127.0.0.1", port=1883)
    await bench.publish("demo__pub", SCRIPT)
    got: queue.Queue[bytes] = queue.Queue()
    sub = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=unique("h11sub"))
    sub.on_message = lambda client, userdata, msg: got.put(msg.payload)
    sub.connect("127.0.0.1", 1883)
    sub.subscribe(topic, qos=1)
    sub.loop_start()
    try:
        w = workers("w")
        deadline = time.monotonic() + 30
        while got.empty():  # the subscription may not be in force for the first message
            assert time.monotonic() < deadline, "no MQTT message received"
            await _send(bench, cid, topic, {"n": 1})
            try:
                assert got.get(timeout=1) == b'{"n": 1}'
                break
            except queue.Empty:
                continue
    finally:
        sub.loop_stop()
        sub.disconnect()
    assert w.stop() == 0


async def test_amqp_publish_is_received_and_password_masked(
        bench: Bench, workers: Callable[..., WorkerProcess]) -> None:
    require("amqp")
    cid, name = unique("amqp"), unique("h11q")
    # the connector's secretKey is what the script prints: it must come out masked
    await add_connector(bench, cid, "amqp", host="127.0.0.1", port=5672, user="guest",
                        password="guest", secretKey="s3cret-amqp")
    await bench.publish("demo__pub", SCRIPT)
    conn = pika.BlockingConnection(pika.ConnectionParameters("127.0.0.1", 5672))
    channel = conn.channel()
    channel.queue_declare(name, auto_delete=False)
    channel.exchange_declare(name, exchange_type="direct", auto_delete=False)
    channel.queue_bind(name, name, routing_key="rk")
    try:
        w = workers("w")
        task_id = await _send(bench, cid, name, "to the queue")
        await _send(bench, cid, name, "via the exchange", routing_key="rk")
        bodies = []
        deadline = time.monotonic() + 10
        while len(bodies) < 2:
            assert time.monotonic() < deadline, f"AMQP messages not received: {bodies}"
            _, _, body = channel.basic_get(name, auto_ack=True)
            if body is not None:
                bodies.append(body)
        assert bodies == [b"to the queue", b"via the exchange"]
        logs = (await bench.record(task_id))["printLogs"]
        assert "s3cret-amqp" not in logs and "the password is" in logs
    finally:
        channel.queue_delete(name)
        channel.exchange_delete(name)
        conn.close()
    assert w.stop() == 0


async def test_nats_publish_is_received(bench: Bench, workers: Callable[..., WorkerProcess]) -> None:
    require("nats")
    cid, subject = unique("nats"), unique("h11.subject")
    await add_connector(bench, cid, "nats", servers="127.0.0.1:4222")
    await bench.publish("demo__pub", SCRIPT)
    nc = await nats.connect("nats://127.0.0.1:4222")
    sub = await nc.subscribe(subject)
    try:
        w = workers("w")
        await _send(bench, cid, subject, "hello nats")
        msg = await sub.next_msg(timeout=10)
        assert msg.data == b"hello nats"
    finally:
        await nc.close()
    assert w.stop() == 0
