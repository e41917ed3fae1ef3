"""Testing a connector config before it is saved: open a client, run a trivial command, close.

A failure is a :class:`ConnectionTestFailed` whose message says what failed (host
unreachable, authentication failed, database missing, …) in words an operator acts on.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

from fluxfunc_common.connectors import clients
from fluxfunc_common.connectors.http import HttpEndpoint
from fluxfunc_common.connectors.types import ConnectorConfig, ConnectorType


class ConnectionTestFailed(Exception):
    """The connector could not be reached or refused us."""


_AUTH_WORDS = ("access denied", "authentication", "auth", "password", "not authorized",
               "wrongpass", "noauth", "probable_authentication", "access_refused", 'role "')
_DB_WORDS = ("unknown database", "does not exist", "invalid db index", "db index is out of range")


def explain(exc: BaseException) -> str:
    """What failed, in one line, from a driver's exception."""
    text = f"{type(exc).__name__}: {exc}".strip()
    lower = text.lower()
    if any(w in lower for w in _AUTH_WORDS):
        return f"authentication failed ({text})"
    if any(w in lower for w in _DB_WORDS):
        return f"database missing ({text})"
    return f"host unreachable or not answering ({text})"


def _mysql(config: ConnectorConfig) -> None:
    conn = clients.open_mysql(config)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1")
    finally:
        conn.close()


def _postgresql(config: ConnectorConfig) -> None:
    with clients.open_postgresql(config) as conn:
        conn.execute("SELECT 1")


def _redis(config: ConnectorConfig) -> None:
    client = clients.open_redis(config)
    try:
        client.ping()
    finally:
        client.close()


def _mqtt(config: ConnectorConfig) -> None:
    client = clients.open_mqtt(config, f"fluxfunc-test-{uuid.uuid4().hex[:12]}")
    try:
        info = client.publish("fluxfunc/connector-test", b"", qos=1)
        info.wait_for_publish(timeout=config.connect_timeout())
        if not info.is_published():
            raise ConnectionError("the broker did not acknowledge a test publish "
                                  "(not authorized, or not answering)")
    finally:
        client.loop_stop()
        client.disconnect()


def _amqp(config: ConnectorConfig) -> None:
    clients.open_amqp(config).close()


def _nats(config: ConnectorConfig) -> None:
    client = clients.NatsClient(config)
    try:
        client.flush()
    finally:
        client.close()


def _memcached(config: ConnectorConfig) -> None:
    client = clients.open_memcached(config)
    try:
        client.get("fluxfunc-connector-test")
    finally:
        client.close()


def _influx_databases(answer: object) -> set[str]:
    """The names in an InfluxDB ``SHOW DATABASES`` answer (its error raised)."""
    results = answer.get("results") if isinstance(answer, dict) else None
    if not isinstance(results, list) or not results or not isinstance(results[0], dict):
        raise ConnectionError(f"not an InfluxDB answer: {str(answer)[:200]}")
    if results[0].get("error"):
        raise ConnectionError(str(results[0]["error"]))
    series = results[0].get("series") or [{}]
    return {str(row[0]) for row in series[0].get("values") or []}


def _influxdb(config: ConnectorConfig) -> None:
    login = config.login()
    auth = (login, config.password or "") if login else None
    answer = HttpEndpoint.of(config, 8086).request(
        "GET", "/query", query={"q": "SHOW DATABASES"}, auth=auth).json()
    names = _influx_databases(answer)
    if config.database not in (None, "") and str(config.database) not in names:
        raise LookupError(f"database {str(config.database)!r} does not exist")


def _datakit(config: ConnectorConfig) -> None:
    HttpEndpoint.of(config, 9529).request("GET", "/v1/ping")


def _dataway(config: ConnectorConfig) -> None:
    if not config.token and "token=" not in (config.url or ""):
        raise ValueError("a dataway connector needs a `token`")
    HttpEndpoint.of(config, 9528).request("GET", "/v1/ping", query={"token": config.token or ""})


CHECKS: dict[ConnectorType, Callable[[ConnectorConfig], None]] = {
    ConnectorType.MYSQL: _mysql, ConnectorType.POSTGRESQL: _postgresql,
    ConnectorType.REDIS: _redis, ConnectorType.MQTT: _mqtt, ConnectorType.AMQP: _amqp,
    ConnectorType.NATS: _nats, ConnectorType.MEMCACHED: _memcached,
    ConnectorType.INFLUXDB: _influxdb, ConnectorType.DATAKIT: _datakit,
    ConnectorType.DATAWAY: _dataway,
}


def check(kind: ConnectorType, config: ConnectorConfig) -> None:
    """Connect and run one trivial command (blocking); ConnectionTestFailed saying what failed."""
    try:
        CHECKS[kind](config)
    except Exception as exc:
        raise ConnectionTestFailed(f"{kind.value} connector test failed: {explain(exc)}") from None


async def probe(kind: ConnectorType, config: ConnectorConfig) -> None:
    """:func:`check` on a thread (the drivers are blocking)."""
    await asyncio.to_thread(check, kind, config)
