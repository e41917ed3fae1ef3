"""``mqtt``, ``amqp`` (RabbitMQ) and ``nats`` connectors: publishing.

- mqtt: ``publish(topic, message, qos=0, retain=False)`` (paho-mqtt 2, its network loop on a
  thread; waits for the broker's acknowledgement at qos 1 and 2);
- amqp: ``publish(exchange_or_queue, message, routing_key=None)``: with ``routing_key`` to the
  exchange named by the first argument, without one to the queue of that name (the default
  exchange);
- nats: ``publish(subject, message)`` (flushed before it returns).

A message that is not bytes or text is sent as JSON.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from fluxfunc_common.connectors import clients
from fluxfunc_common.connectors.types import ConnectorConfig
from fluxfunc_worker.dffconn.pool import ConnectorError, ConnectorPool

PUBLISH_WAIT_SECONDS = 10.0


def payload(message: Any) -> bytes:
    if isinstance(message, bytes):
        return message
    if isinstance(message, str):
        return message.encode()
    return json.dumps(message, ensure_ascii=False).encode()


class MqttFamily:
    def open(self, config: ConnectorConfig, connector_id: str) -> Any:
        return clients.open_mqtt(config, f"fluxfunc-{connector_id}-{uuid.uuid4().hex[:8]}")

    def close(self, client: Any) -> None:
        client.loop_stop()
        client.disconnect()

    def is_broken(self, exc: BaseException) -> bool:
        return isinstance(exc, (ConnectionError, OSError))


class AmqpFamily:
    def open(self, config: ConnectorConfig, connector_id: str) -> Any:
        return clients.open_amqp(config)

    def close(self, client: Any) -> None:
        if client.is_open:
            client.close()

    def is_broken(self, exc: BaseException) -> bool:
        import pika.exceptions

        return isinstance(exc, (pika.exceptions.AMQPConnectionError, pika.exceptions.ChannelClosed,
                                pika.exceptions.StreamLostError, ConnectionError))


class NatsFamily:
    def open(self, config: ConnectorConfig, connector_id: str) -> Any:
        return clients.NatsClient(config)

    def close(self, client: Any) -> None:
        client.close()

    def is_broken(self, exc: BaseException) -> bool:
        return True  # nats-py reconnects nothing here (allow_reconnect off): start afresh


class _Publisher:
    def __init__(self, pool: ConnectorPool, connector_id: str) -> None:
        self._pool = pool
        self._id = connector_id


class MqttHelper(_Publisher):
    """``DFF.CONN(id)`` of an MQTT connector."""

    def publish(self, topic: str, message: Any, qos: int = 0, retain: bool = False) -> None:
        def send(client: Any) -> None:
            info = client.publish(topic, payload(message), qos=qos, retain=retain)
            if info.rc != 0:
                raise ConnectionError(f"MQTT publish to {topic!r} failed (rc={info.rc})")
            if qos:
                info.wait_for_publish(timeout=PUBLISH_WAIT_SECONDS)
                if not info.is_published():
                    raise ConnectorError(f"MQTT publish to {topic!r}: no acknowledgement")

        self._pool.call(self._id, send)


class AmqpHelper(_Publisher):
    """``DFF.CONN(id)`` of an AMQP (RabbitMQ) connector."""

    def publish(self, exchange_or_queue: str, message: Any, routing_key: str | None = None) -> None:
        def send(conn: Any) -> None:
            channel = conn.channel()
            try:
                if routing_key is None:
                    channel.basic_publish(exchange="", routing_key=exchange_or_queue, body=payload(message))
                else:
                    channel.basic_publish(exchange=exchange_or_queue, routing_key=routing_key,
                                          body=payload(message))
            finally:
                if channel.is_open:
                    channel.close()

        self._pool.call(self._id, send)


class NatsHelper(_Publisher):
    """``DFF.CONN(id)`` of a NATS connector."""

    def publish(self, subject: str, message: Any) -> None:
        self._pool.call(self._id, lambda client: client.publish(subject, payload(message)))
