"""Opening a synchronous client of each connector type from its (unsealed) config.

Drivers are imported on first use: a process that never opens a connector of a type never
loads its driver. ``nats`` has only an asyncio client: :class:`NatsClient` runs it on a
private event loop thread and offers blocking calls.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from fluxfunc_common.connectors.types import ConnectorConfig

T = TypeVar("T")


def _database(config: ConnectorConfig) -> str | None:
    return None if config.database in (None, "") else str(config.database)


def open_mysql(config: ConnectorConfig) -> Any:
    """A pymysql connection (rows as dicts, autocommit off)."""
    import pymysql
    import pymysql.cursors

    return pymysql.connect(
        host=config.host or "127.0.0.1", port=config.port or 3306, user=config.login() or "root",
        password=config.password or "", database=_database(config),
        charset=config.charset or "utf8mb4", cursorclass=pymysql.cursors.DictCursor,
        connect_timeout=int(config.connect_timeout()), autocommit=False)


def open_postgresql(config: ConnectorConfig) -> Any:
    """A psycopg (v3) connection (rows as dicts)."""
    import psycopg
    from psycopg.rows import dict_row

    return psycopg.connect(
        host=config.host or "127.0.0.1", port=config.port or 5432, user=config.login(),
        password=config.password or None, dbname=_database(config),
        client_encoding=config.charset or "utf8", row_factory=dict_row,
        options=f"-c search_path={config.schema_}" if config.schema_ else None,
        connect_timeout=max(1, int(config.connect_timeout())))


def open_redis(config: ConnectorConfig) -> Any:
    """A redis-py client (strings decoded)."""
    import redis

    db = config.db if config.db is not None else int(config.database or 0)
    return redis.Redis(host=config.host or "127.0.0.1", port=config.port or 6379, db=db,
                       username=config.login(), password=config.password or None,
                       ssl=bool(config.use_ssl), decode_responses=True,
                       socket_connect_timeout=config.connect_timeout(),
                       socket_timeout=max(config.connect_timeout(), 10.0))


def open_mqtt(config: ConnectorConfig, client_id: str) -> Any:
    """A connected paho-mqtt (2.x) client with its network loop on a thread, returned once the
    broker accepted the connection (its CONNACK): a refusal (wrong password: "Not authorized")
    raises ``ConnectionError`` with the broker's reason instead of failing a later publish."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=config.client_id or client_id)
    if config.login() or config.password:
        client.username_pw_set(config.login(), config.password)
    if config.use_ssl:
        client.tls_set()
    answered = threading.Event()
    reasons: list[Any] = []

    def on_connect(_c: Any, _u: Any, _flags: Any, reason: Any, _props: Any) -> None:
        reasons.append(reason)
        answered.set()

    client.on_connect = on_connect
    client.connect(config.host or "127.0.0.1", config.port or 1883, config.keepalive or 60)
    client.loop_start()
    refused = None if not answered.wait(config.connect_timeout()) else reasons[0]
    if refused is None or refused.is_failure:
        client.loop_stop()
        client.disconnect()
        why = "no CONNACK" if refused is None else f"the broker refused the connection: {refused}"
        raise ConnectionError(f"MQTT connect to {config.host or '127.0.0.1'}:{config.port or 1883} "
                              f"failed ({why})")
    client.on_connect = None  # paho's own reconnects need no more waiting
    return client


def open_amqp(config: ConnectorConfig) -> Any:
    """A pika blocking connection."""
    import pika

    credentials = pika.PlainCredentials(config.login() or "guest", config.password or "guest")
    params = pika.ConnectionParameters(
        host=config.host or "127.0.0.1", port=config.port or 5672,
        virtual_host=config.vhost or "/", credentials=credentials,
        socket_timeout=config.connect_timeout(), blocked_connection_timeout=30,
        connection_attempts=1)
    return pika.BlockingConnection(params)


def open_memcached(config: ConnectorConfig) -> Any:
    """A pymemcache hash client over ``servers``."""
    from pymemcache.client.hash import HashClient

    servers = []
    for server in config.server_list("127.0.0.1:11211"):
        host, _, port = server.rpartition(":")
        servers.append((host or server, int(port) if port.isdigit() else 11211))
    return HashClient(servers, connect_timeout=config.connect_timeout(), timeout=10,
                      ignore_exc=False, retry_attempts=1, dead_timeout=0)


async def _raised_anyway(exc: Exception) -> None:
    """nats-py's error callback: the error is raised to the caller too, so no second report
    (its default prints a traceback on stderr)."""


class NatsClient:
    """nats-py on a private event loop thread, with blocking ``publish``/``close``."""

    def __init__(self, config: ConnectorConfig) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="dff-nats", daemon=True)
        self._thread.start()
        self._timeout = config.connect_timeout()
        try:
            self._nc = self._run(self._connect(config))
        except BaseException:
            self._stop()
            raise

    async def _connect(self, config: ConnectorConfig) -> Any:
        import nats

        servers = [s if "://" in s else f"nats://{s}" for s in config.server_list("127.0.0.1:4222")]
        options: dict[str, Any] = {"servers": servers, "connect_timeout": self._timeout,
                                   "allow_reconnect": False, "max_reconnect_attempts": 0,
                                   "error_cb": _raised_anyway}
        if config.token:
            options["token"] = config.token
        elif config.login() or config.password:
            options["user"], options["password"] = config.login(), config.password
        return await nats.connect(**options)

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(self._timeout + 5)

    def publish(self, subject: str, payload: bytes) -> None:
        async def send() -> None:
            await self._nc.publish(subject, payload)
            await self._nc.flush(timeout=self._timeout)

        self._run(send())

    def flush(self) -> None:
        self._run(self._nc.flush(timeout=self._timeout))

    def close(self) -> None:
        try:
            self._run(self._nc.close())
        finally:
            self._stop()

    def _stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()
