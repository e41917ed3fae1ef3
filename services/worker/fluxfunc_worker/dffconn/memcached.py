"""``memcached`` connectors: DataFlux Func's memcached helper (``query``/``run`` any client
method, ``get``/``set``/``add``/``replace``/``delete`` and ``incr``/``decr``); values are
stored as text and read back as text."""

from __future__ import annotations

from typing import Any

from fluxfunc_common.connectors import clients
from fluxfunc_common.connectors.types import ConnectorConfig
from fluxfunc_worker.dffconn.pool import ConnectorPool


def _text(value: Any) -> Any:
    return value.decode() if isinstance(value, bytes) else value


class MemcachedFamily:
    def open(self, config: ConnectorConfig, connector_id: str) -> Any:
        return clients.open_memcached(config)

    def close(self, client: Any) -> None:
        client.close()

    def is_broken(self, exc: BaseException) -> bool:
        return isinstance(exc, (ConnectionError, OSError))


class MemcachedHelper:
    """``DFF.CONN(id)`` of a memcached connector."""

    def __init__(self, pool: ConnectorPool, connector_id: str) -> None:
        self._pool = pool
        self._id = connector_id

    def run(self, *args: Any, **kwargs: Any) -> Any:
        command, rest = str(args[0]).lower(), args[1:]
        return _text(self._pool.call(self._id, lambda c: getattr(c, command)(*rest, **kwargs)))

    def query(self, *args: Any, **kwargs: Any) -> Any:
        return self.run(*args, **kwargs)

    def check(self) -> None:
        self.run("get", "fluxfunc-connector-check")

    def get(self, key: str) -> Any:
        return self.run("get", key)

    def set(self, key: str, value: Any, expires: int = 0) -> bool:
        return bool(self.run("set", key, str(value), expire=expires, noreply=False))

    def add(self, key: str, value: Any, expires: int = 0) -> bool:
        return bool(self.run("add", key, str(value), expire=expires, noreply=False))

    def replace(self, key: str, value: Any, expires: int = 0) -> bool:
        return bool(self.run("replace", key, str(value), expire=expires, noreply=False))

    def delete(self, key: str) -> bool:
        return bool(self.run("delete", key, noreply=False))

    def incr(self, key: str, step: int = 1) -> Any:
        return self.run("incr", key, step, noreply=False)

    def decr(self, key: str, step: int = 1) -> Any:
        return self.run("decr", key, step, noreply=False)
