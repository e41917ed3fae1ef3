"""``redis`` connectors: DataFlux Func's Redis helper (``query``/``run`` any command, plus its
named helpers with their argument order and return shapes; strings decoded)."""

from __future__ import annotations

from typing import Any

from fluxfunc_common.connectors import clients
from fluxfunc_common.connectors.types import ConnectorConfig
from fluxfunc_worker.dffconn.pool import ConnectorPool

SCAN_COUNT = 1000


def _array(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple, set)) else [value]


class RedisFamily:
    def open(self, config: ConnectorConfig, connector_id: str) -> Any:
        return clients.open_redis(config)

    def close(self, client: Any) -> None:
        client.close()

    def is_broken(self, exc: BaseException) -> bool:
        import redis

        return isinstance(exc, (redis.ConnectionError, redis.TimeoutError))


class RedisHelper:
    """``DFF.CONN(id)`` of a Redis connector."""

    def __init__(self, pool: ConnectorPool, connector_id: str) -> None:
        self._pool = pool
        self._id = connector_id

    def run(self, *args: Any, **kwargs: Any) -> Any:
        """``run(command, *args, **kwargs)``: redis-py's method of that name."""
        command, rest = str(args[0]).lower(), args[1:]
        return self._pool.call(self._id, lambda c: getattr(c, command)(*rest, **kwargs))

    def query(self, *args: Any, **kwargs: Any) -> Any:
        return self.run(*args, **kwargs)

    def check(self) -> None:
        self.run("ping")

    def dbsize(self) -> Any:
        return self.run("dbsize")

    def info(self) -> Any:
        return self.run("info")

    def type(self, key: str) -> str | None:
        found = self.run("type", key)
        return None if found == "none" else found

    def keys(self, pattern: str = "*", limit: int | None = None) -> list[str]:
        found: set[str] = set()
        cursor = 0
        while True:
            cursor, keys = self.run("scan", cursor=cursor, match=pattern, count=SCAN_COUNT)
            found.update(keys)
            if (limit and len(found) > limit) or cursor == 0:
                break
        return list(found)[:limit] if limit else list(found)

    def exists(self, key: str) -> bool:
        return bool(self.run("exists", key))

    def expire(self, key: str, expires: int) -> Any:
        return self.run("expire", key, max(int(expires), 1))

    def expireat(self, key: str, timestamp: int) -> Any:
        return self.run("expireat", key, timestamp)

    def ttl(self, key: str) -> Any:
        return self.run("ttl", key)

    def pttl(self, key: str) -> Any:
        return self.run("pttl", key)

    def delete(self, keys: Any) -> int:
        names = _array(keys)
        return int(self.run("delete", *names)) if names else 0

    def set(self, key: str, value: Any, expires: int | None = None, not_exists: bool = False,
            exists: bool = False, get_old_value: bool = False) -> Any:
        return self.run("set", key, value, ex=expires, nx=not_exists, xx=exists, get=get_old_value)

    def mset(self, key_values: dict[str, Any]) -> Any:
        return self.run("mset", key_values) if key_values else False

    def get(self, key: str) -> Any:
        return self.run("get", key)

    def mget(self, keys: Any) -> dict[str, Any]:
        names = _array(keys)
        return dict(zip(names, self.run("mget", names), strict=True)) if names else {}

    def getset(self, key: str, value: Any) -> Any:
        return self.run("getset", key, value)

    def incr(self, key: str) -> Any:
        return self.run("incr", key)

    def incrby(self, key: str, step: int = 1) -> Any:
        return self.run("incrby", key, step)

    def hkeys(self, key: str, pattern: str = "*", with_values: bool = False) -> Any:
        found: dict[str, Any] = {}
        cursor = 0
        while True:
            cursor, page = self.run("hscan", key, cursor=cursor, match=pattern, count=SCAN_COUNT)
            found.update(page)
            if cursor == 0:
                break
        return found if with_values else list(found)

    def hset(self, key: str, field: str | None = None, value: Any = None,
             field_values: dict[str, Any] | None = None) -> Any:
        return self.run("hset", key, field, value, field_values)

    def hmset(self, key: str, field_values: dict[str, Any]) -> Any:
        return self.run("hset", key, mapping=field_values) if field_values else False

    def hsetnx(self, key: str, field: str, value: Any) -> Any:
        return self.run("hsetnx", key, field, value)

    def hget(self, key: str, field: str) -> Any:
        return self.run("hget", key, field)

    def hmget(self, key: str, fields: Any) -> dict[str, Any]:
        names = _array(fields)
        return dict(zip(names, self.run("hmget", key, names), strict=True)) if names else {}

    def hgetall(self, key: str) -> Any:
        return self.run("hgetall", key)

    def hincr(self, key: str, field: str) -> Any:
        return self.run("hincrby", key, field, amount=1)

    def hincrby(self, key: str, field: str, step: int = 1) -> Any:
        return self.run("hincrby", key, field, step)

    def hdel(self, key: str, field: Any) -> int:
        names = _array(field)
        return int(self.run("hdel", key, *names)) if names else 0

    def lpush(self, key: str, value: Any) -> int:
        values = _array(value)
        return int(self.run("lpush", key, *values)) if values else 0

    def rpush(self, key: str, value: Any) -> int:
        values = _array(value)
        return int(self.run("rpush", key, *values)) if values else 0

    def lpop(self, key: str, count: int | None = None) -> Any:
        return self.run("lpop", key) if count is None else self.run("lpop", key, count)

    def rpop(self, key: str, count: int | None = None) -> Any:
        return self.run("rpop", key) if count is None else self.run("rpop", key, count)

    def rpoplpush(self, key: str, dest_key: str | None = None) -> Any:
        return self.run("rpoplpush", key, key if dest_key is None else dest_key)

    def llen(self, key: str) -> Any:
        return self.run("llen", key)

    def lrange(self, key: str, start: int = 0, stop: int = -1) -> Any:
        return self.run("lrange", key, start, stop)

    def ltrim(self, key: str, start: int, stop: int) -> Any:
        return self.run("ltrim", key, start, stop)

    def push(self, *args: Any, **kwargs: Any) -> int:
        return self.lpush(*args, **kwargs)

    def pop(self, *args: Any, **kwargs: Any) -> Any:
        return self.rpop(*args, **kwargs)

    def sadd(self, key: str, member: Any) -> int:
        members = _array(member)
        return int(self.run("sadd", key, *members)) if members else 0

    def srem(self, key: str, member: Any) -> int:
        members = _array(member)
        return int(self.run("srem", key, *members)) if members else 0

    def scard(self, key: str) -> Any:
        return self.run("scard", key)

    def smembers(self, key: str) -> Any:
        return self.run("smembers", key)

    def sismember(self, key: str, member: Any) -> Any:
        return self.run("sismember", key, member)

    def zadd(self, key: str, member_scores: dict[str, float]) -> Any:
        return self.run("zadd", key, member_scores)

    def zrem(self, key: str, member: Any) -> int:
        members = _array(member)
        return int(self.run("zrem", key, *members)) if members else 0

    def zcard(self, key: str) -> Any:
        return self.run("zcard", key)

    def zrange(self, key: str, start: Any = 0, stop: Any = -1, by_score: bool = False,
               by_lex: bool = False, reverse: bool = False, with_scores: bool = False) -> Any:
        return self.run("zrange", key, start, stop, byscore=by_score, bylex=by_lex, desc=reverse,
                        withscores=with_scores)

    def publish(self, topic: str, message: Any) -> Any:
        return self.run("publish", topic, message)

    def pub(self, *args: Any, **kwargs: Any) -> Any:
        return self.publish(*args, **kwargs)
