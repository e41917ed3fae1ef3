"""``DFF.CONN(id)`` (alias ``DFF.SRC``), child side: one module per connector family
(:mod:`.sql`, :mod:`.redis`, :mod:`.brokers`, :mod:`.memcached`, :mod:`.influxdb`,
:mod:`.guance`) and the per-child
:mod:`.pool`. The worker's side (the ``conn`` DFF call) is :mod:`.calls`. docs/connectors.md.
"""

from __future__ import annotations

from typing import Any

from fluxfunc_common.connectors.types import ConnectorType
from fluxfunc_worker.dffconn.brokers import (
    AmqpFamily,
    AmqpHelper,
    MqttFamily,
    MqttHelper,
    NatsFamily,
    NatsHelper,
)
from fluxfunc_worker.dffconn.guance import GuanceFamily, GuanceHelper
from fluxfunc_worker.dffconn.influxdb import InfluxDBFamily, InfluxDBHelper
from fluxfunc_worker.dffconn.memcached import MemcachedFamily, MemcachedHelper
from fluxfunc_worker.dffconn.pool import ConnectorError, ConnectorPool, Family, Mask, Rpc
from fluxfunc_worker.dffconn.redis import RedisFamily, RedisHelper
from fluxfunc_worker.dffconn.sql import MysqlFamily, PostgresqlFamily, SqlHelper

__all__ = ["ConnectorError", "ConnectorPool", "Connectors"]

_MYSQL, _POSTGRESQL = MysqlFamily(), PostgresqlFamily()
FAMILIES: dict[ConnectorType, Family] = {
    ConnectorType.MYSQL: _MYSQL, ConnectorType.POSTGRESQL: _POSTGRESQL,
    ConnectorType.REDIS: RedisFamily(), ConnectorType.MQTT: MqttFamily(),
    ConnectorType.AMQP: AmqpFamily(), ConnectorType.NATS: NatsFamily(),
    ConnectorType.MEMCACHED: MemcachedFamily(), ConnectorType.INFLUXDB: InfluxDBFamily(),
    ConnectorType.DATAKIT: GuanceFamily(ConnectorType.DATAKIT),
    ConnectorType.DATAWAY: GuanceFamily(ConnectorType.DATAWAY),
}


def _helper(pool: ConnectorPool, connector_id: str, kind: ConnectorType) -> Any:
    if kind is ConnectorType.MYSQL:
        return SqlHelper(pool, connector_id, _MYSQL)
    if kind is ConnectorType.POSTGRESQL:
        return SqlHelper(pool, connector_id, _POSTGRESQL)
    simple = {ConnectorType.REDIS: RedisHelper, ConnectorType.MQTT: MqttHelper,
              ConnectorType.AMQP: AmqpHelper, ConnectorType.NATS: NatsHelper,
              ConnectorType.MEMCACHED: MemcachedHelper, ConnectorType.INFLUXDB: InfluxDBHelper,
              ConnectorType.DATAKIT: GuanceHelper, ConnectorType.DATAWAY: GuanceHelper}
    return simple[kind](pool, connector_id)


class Connectors:
    """``DFF.CONN`` / ``DFF.SRC``: ``DFF.CONN(id)`` is the connector's helper. Extra arguments
    of DataFlux Func's (``database=``, ``pool_size=``) are accepted and ignored."""

    def __init__(self, rpc: Rpc, mask: Mask) -> None:
        self.pool = ConnectorPool(rpc, mask, FAMILIES)

    def __call__(self, connector_id: str, *args: Any, **kwargs: Any) -> Any:
        entry = self.pool.entry(str(connector_id))
        return _helper(self.pool, str(connector_id), entry.kind)

    def close_all(self) -> None:
        self.pool.close_all()
