"""``DFF.CACHE``, parent side: runs the cache commands of :mod:`fluxfunc_worker.dffcache` on
the worker's Redis client, each key mapped into its scope by ``keys.cache(scope, key)``.

Answers are JSON values shaped as DataFlux Func returns them: text (never bytes), lists for
sets and list ranges, dicts for hashes and multi-gets, keys named as the script named them.
Blocking pops are polled by the child (``pop_first``, one non-blocking try per call): no
connection is held while a script waits, and nothing is popped for a child that is gone.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, get_args

from fluxfunc_common.keys import Keys
from fluxfunc_worker.dffparams import CacheCommand, CacheParams

_GLOB_METACHARS = re.compile(r"([*?\[\]\\])")

Command = Callable[[CacheParams], Awaitable[object]]


def _text(value: object) -> object:
    """bytes → str, recursively through lists, tuples, sets and dicts."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, list | tuple | set):
        return _texts(value)
    if isinstance(value, dict):
        return {_text(k): _text(v) for k, v in value.items()}
    return value


def _texts(values: Iterable[object]) -> list[object]:
    return [_text(v) for v in values]


class CacheCalls:
    """``cache.<command>`` RPC methods; :attr:`commands` maps command names to handlers."""

    def __init__(self, redis: Any, keys: Keys) -> None:
        self.redis = redis  # redis.asyncio.Redis (its stubs type every command's reply as Any)
        self.keys = keys
        self.commands: dict[CacheCommand, Command] = {
            name: getattr(self, f"_{name}") for name in get_args(CacheCommand)
        }

    # --- key names ----------------------------------------------------------------------------
    def _key(self, p: CacheParams, name: str | None = None) -> str:
        """The full name of the call's ``key`` (or of ``name``) in its scope."""
        return self.keys.cache(str(p["scope"]), str(p["key"] if name is None else name))

    def _many(self, p: CacheParams) -> list[str]:
        return [self.keys.cache(str(p["scope"]), str(k)) for k in p["keys"]]

    def _origin(self, p: CacheParams, full: object) -> str:
        return str(_text(full))[len(self.keys.cache_prefix(str(p["scope"]))):]

    async def _matching(self, p: CacheParams) -> list[str]:
        """The full names of the scope's keys matching the glob ``pattern`` (SCAN, not KEYS)."""
        prefix = _GLOB_METACHARS.sub(r"\\\1", self.keys.cache_prefix(str(p["scope"])))
        matches = self.redis.scan_iter(match=prefix + str(p["pattern"]), count=1000)
        found = {str(_text(k)) async for k in matches}
        return sorted(found)

    # --- generic ------------------------------------------------------------------------------
    async def _type(self, p: CacheParams) -> object:
        kind = _text(await self.redis.type(self._key(p)))
        return None if kind == "none" else kind

    async def _keys(self, p: CacheParams) -> object:
        return [self._origin(p, k) for k in await self._matching(p)]

    async def _exists(self, p: CacheParams) -> object:
        return bool(await self.redis.exists(self._key(p)))

    async def _expire(self, p: CacheParams) -> object:
        return bool(await self.redis.expire(self._key(p), max(1, int(p["expires"] or 0))))

    async def _expireat(self, p: CacheParams) -> object:
        return bool(await self.redis.expireat(self._key(p), int(p["timestamp"])))

    async def _ttl(self, p: CacheParams) -> object:
        return int(await self.redis.ttl(self._key(p)))

    async def _pttl(self, p: CacheParams) -> object:
        return int(await self.redis.pttl(self._key(p)))

    async def _delete(self, p: CacheParams) -> object:
        keys = self._many(p)
        return int(await self.redis.delete(*keys)) if keys else 0

    # --- strings ------------------------------------------------------------------------------
    async def _set(self, p: CacheParams) -> object:
        expires = p.get("expires")
        px = max(1, int(float(expires) * 1000)) if expires else None  # 0.5 s is half a second
        done = await self.redis.set(self._key(p), str(p["value"]), px=px,
                                    nx=bool(p.get("not_exists")), xx=bool(p.get("exists")))
        return bool(done)

    async def _mset(self, p: CacheParams) -> object:
        scope = str(p["scope"])
        pairs = {self.keys.cache(scope, str(k)): str(v) for k, v in dict(p["pairs"]).items()}
        return bool(await self.redis.mset(pairs)) if pairs else False

    async def _get(self, p: CacheParams) -> object:
        return _text(await self.redis.get(self._key(p)))

    async def _mget(self, p: CacheParams) -> object:
        names = [str(k) for k in p["keys"]]
        if not names:
            return {}
        values = await self.redis.mget(self._many(p))
        return dict(zip(names, _texts(values), strict=True))

    async def _getset(self, p: CacheParams) -> object:
        return _text(await self.redis.getset(self._key(p), str(p["value"])))

    async def _incrby(self, p: CacheParams) -> object:
        return int(await self.redis.incrby(self._key(p), int(p.get("step", 1))))

    # --- hashes -------------------------------------------------------------------------------
    async def _hset(self, p: CacheParams) -> object:
        return int(await self.redis.hset(self._key(p), str(p["field"]), str(p["value"])))

    async def _hsetnx(self, p: CacheParams) -> object:
        return int(await self.redis.hsetnx(self._key(p), str(p["field"]), str(p["value"])))

    async def _hmset(self, p: CacheParams) -> object:
        mapping = {str(f): str(v) for f, v in dict(p["mapping"]).items()}
        if not mapping:
            return False
        await self.redis.hset(self._key(p), mapping=mapping)
        return True

    async def _hget(self, p: CacheParams) -> object:
        return _text(await self.redis.hget(self._key(p), str(p["field"])))

    async def _hmget(self, p: CacheParams) -> object:
        fields = [str(f) for f in p["fields"]]
        if not fields:
            return {}
        return dict(zip(fields, _texts(await self.redis.hmget(self._key(p), fields)), strict=True))

    async def _hgetall(self, p: CacheParams) -> object:
        pattern = str(p.get("pattern") or "*")
        if pattern == "*":
            return _text(await self.redis.hgetall(self._key(p)))
        found: dict[object, object] = {}
        async for field, value in self.redis.hscan_iter(self._key(p), match=pattern, count=1000):
            found[_text(field)] = _text(value)
        return found

    async def _variadic(self, command: Callable[..., Awaitable[Any]], p: CacheParams,
                        given: Iterable[object]) -> int:
        """A command taking the key and one or more values (``HDEL``, ``LPUSH``, ``SADD``, …):
        the values as text; none at all changes nothing and counts 0, as Redis can't be asked."""
        values = [str(v) for v in given]
        return int(await command(self._key(p), *values)) if values else 0

    async def _hincrby(self, p: CacheParams) -> object:
        return int(await self.redis.hincrby(self._key(p), str(p["field"]), int(p["amount"])))

    async def _hdel(self, p: CacheParams) -> object:
        return await self._variadic(self.redis.hdel, p, p["fields"])

    # --- lists --------------------------------------------------------------------------------
    async def _lpush(self, p: CacheParams) -> object:
        return await self._variadic(self.redis.lpush, p, p["values"])

    async def _rpush(self, p: CacheParams) -> object:
        return await self._variadic(self.redis.rpush, p, p["values"])

    async def _lpop(self, p: CacheParams) -> object:
        return _text(await self.redis.lpop(self._key(p)))

    async def _rpop(self, p: CacheParams) -> object:
        return _text(await self.redis.rpop(self._key(p)))

    async def _pop_first(self, p: CacheParams) -> object:
        """One try of ``BLPOP``/``BRPOP``: ``[key, value]`` from the first non-empty list (in
        the order given, as Redis does), else None."""
        pop = self.redis.lpop if p.get("side") == "left" else self.redis.rpop
        for name, full in zip([str(k) for k in p["keys"]], self._many(p), strict=True):
            value = await pop(full)
            if value is not None:
                return [name, _text(value)]
        return None

    async def _rpoplpush(self, p: CacheParams) -> object:
        dest = self.keys.cache(str(p["dest_scope"]), str(p["dest_key"]))
        return _text(await self.redis.lmove(self._key(p), dest, "RIGHT", "LEFT"))

    async def _llen(self, p: CacheParams) -> object:
        return int(await self.redis.llen(self._key(p)))

    async def _lrange(self, p: CacheParams) -> object:
        return _text(await self.redis.lrange(self._key(p), int(p["start"]), int(p["stop"])))

    async def _ltrim(self, p: CacheParams) -> object:
        return bool(await self.redis.ltrim(self._key(p), int(p["start"]), int(p["stop"])))

    # --- sets and sorted sets -----------------------------------------------------------------
    async def _sadd(self, p: CacheParams) -> object:
        return await self._variadic(self.redis.sadd, p, p["members"])

    async def _srem(self, p: CacheParams) -> object:
        return await self._variadic(self.redis.srem, p, p["members"])

    async def _scard(self, p: CacheParams) -> object:
        return int(await self.redis.scard(self._key(p)))

    async def _smembers(self, p: CacheParams) -> object:
        return sorted(str(v) for v in _texts(await self.redis.smembers(self._key(p))))

    async def _sismember(self, p: CacheParams) -> object:
        return bool(await self.redis.sismember(self._key(p), str(p["member"])))

    async def _zadd(self, p: CacheParams) -> object:
        scores = {str(m): float(s) for m, s in dict(p["scores"]).items()}
        return int(await self.redis.zadd(self._key(p), scores)) if scores else 0

    async def _zrem(self, p: CacheParams) -> object:
        members = [str(m) for m in p["members"]]
        return int(await self.redis.zrem(self._key(p), *members)) if members else 0

    async def _zcard(self, p: CacheParams) -> object:
        return int(await self.redis.zcard(self._key(p)))

    async def _zrange(self, p: CacheParams) -> object:
        found = await self.redis.zrange(self._key(p), int(p["start"]), int(p["stop"]),
                                        desc=bool(p.get("reverse")), withscores=bool(p.get("with_scores")))
        return _text(found)

    # --- publish and patterns -----------------------------------------------------------------
    async def _publish(self, p: CacheParams) -> object:
        return int(await self.redis.publish(self._key(p, p["topic"]), str(p["message"])))

    async def _get_pattern(self, p: CacheParams) -> object:
        found = await self._matching(p)
        if not found:
            return None
        values = _texts(await self.redis.mget(found))
        return {self._origin(p, k): v for k, v in zip(found, values, strict=True)}

    async def _delete_pattern(self, p: CacheParams) -> object:
        found = await self._matching(p)
        return int(await self.redis.delete(*found)) if found else None
