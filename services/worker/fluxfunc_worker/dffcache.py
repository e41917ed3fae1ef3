"""``DFF.CACHE``, child side: DataFlux Func's cache command set with its argument names,
positional order and return shapes (its worker's ``FuncCacheHelper``).

Every key lives in a scope: the calling script's id unless ``scope=`` names another, so two
scripts' ``"counter"`` never meet and a script reads another's keys by naming its scope.
Values are stored as text and come back as text (``str``), as in DataFlux Func; numbers are
written as their decimal text, dicts and lists as JSON. Each method is one RPC call to the
parent worker (:mod:`fluxfunc_worker.cachecalls`), which runs the Redis command.

Departures from DataFlux Func, where its code is plainly broken: ``incr`` with a step works,
``mget``/``mset``/``zrange`` honour ``scope``, ``expireat`` sets an absolute time, and
``get_pattern``/``keys`` answer with the script's own key names (not Redis's full names).
There is no ``run`` (arbitrary Redis commands).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Unpack

from fluxfunc_worker.dffparams import CacheArgs, CacheCommand, Side

POLL_MIN = 0.02  # blocking pops: first pause between tries, doubling up to POLL_MAX
POLL_MAX = 0.5

Rpc = Callable[..., Any]  # sdk's call(method, **params): the parent's JSON answer
ScopeOf = Callable[[str | None], str]


def to_text(value: Any) -> str:
    """What Redis stores for a value: text as is, numbers as decimal text, the rest as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, bool) or value is None or isinstance(value, dict | list | tuple):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def _texts(value: Any) -> list[str]:
    """One value or a list/tuple/set of values (DataFlux Func's ``as_array``)."""
    items: Iterable[Any] = value if isinstance(value, list | tuple | set) else [value]
    return [to_text(v) for v in items]


def _keys(key: Any) -> list[str]:
    return [str(k) for k in key] if isinstance(key, list | tuple | set) else [str(key)]


class CacheHelper:
    """``DFF.CACHE``: see the module docstring; ``DFF.CACHE(key)`` is ``get``."""

    def __init__(self, rpc: Rpc, scope_of: ScopeOf) -> None:
        self._rpc = rpc
        self._scope_of = scope_of

    def _do(self, cmd: CacheCommand, scope: str | None, **params: Unpack[CacheArgs]) -> Any:
        return self._rpc(f"cache.{cmd}", scope=self._scope_of(scope), **params)

    def __call__(self, key: str, scope: str | None = None) -> str | None:
        return self.get(key, scope=scope)

    # --- generic --------------------------------------------------------------------------
    def type(self, key: str, scope: str | None = None) -> str | None:
        return self._do("type", scope, key=str(key))  # type: ignore[no-any-return]

    def keys(self, pattern: str = "*", scope: str | None = None) -> list[str]:
        return self._do("keys", scope, pattern=str(pattern))  # type: ignore[no-any-return]

    def exists(self, key: str, scope: str | None = None) -> bool:
        return bool(self._do("exists", scope, key=str(key)))

    def expire(self, key: str, expires: float | None = None, scope: str | None = None,
               expire: float | None = None) -> bool:
        seconds = expires or expire or 0
        return bool(self._do("expire", scope, key=str(key), expires=max(1, int(seconds))))

    def expireat(self, key: str, timestamp: float, scope: str | None = None) -> bool:
        return bool(self._do("expireat", scope, key=str(key), timestamp=int(timestamp)))

    def ttl(self, key: str, scope: str | None = None) -> int:
        return int(self._do("ttl", scope, key=str(key)))

    def pttl(self, key: str, scope: str | None = None) -> int:
        return int(self._do("pttl", scope, key=str(key)))

    def delete(self, key: str | list[str], scope: str | None = None) -> int:
        return int(self._do("delete", scope, keys=_keys(key)))

    # --- strings ----------------------------------------------------------------------------
    def set(self, key: str, value: Any, scope: str | None = None, expires: float | None = None,
            not_exists: bool = False, exists: bool = False, expire: float | None = None) -> bool | None:
        """True when written; None when ``not_exists``/``exists`` kept it from being written."""
        seconds = expires or expire
        done = self._do("set", scope, key=str(key), value=to_text(value),
                        expires=float(seconds) if seconds else None, not_exists=bool(not_exists),
                        exists=bool(exists))
        return True if done else None

    def mset(self, key_values: Mapping[str, object], scope: str | None = None) -> bool:
        pairs = {str(k): to_text(v) for k, v in key_values.items()}
        return bool(pairs) and bool(self._do("mset", scope, pairs=pairs))

    def get(self, key: str, scope: str | None = None) -> str | None:
        return self._do("get", scope, key=str(key))  # type: ignore[no-any-return]

    def mget(self, keys: str | list[str], scope: str | None = None) -> dict[str, str | None]:
        return self._do("mget", scope, keys=_keys(keys))  # type: ignore[no-any-return]

    def getset(self, key: str, value: Any, scope: str | None = None) -> str | None:
        return self._do("getset", scope, key=str(key), value=to_text(value))  # type: ignore[no-any-return]

    def incr(self, key: str, step: int = 1, scope: str | None = None) -> int:
        return int(self._do("incrby", scope, key=str(key), step=int(step)))

    def incrby(self, key: str, step: int, scope: str | None = None) -> int:
        return self.incr(key, step, scope=scope)

    # --- hashes -----------------------------------------------------------------------------
    def hkeys(self, key: str, pattern: str = "*", scope: str | None = None,
              with_values: bool = False) -> list[str] | dict[str, str]:
        found: dict[str, str] = self._do("hgetall", scope, key=str(key), pattern=str(pattern))
        return found if with_values else list(found)

    def hset(self, key: str, field: str, value: Any, scope: str | None = None,
             not_exists: bool = False) -> int:
        cmd: CacheCommand = "hsetnx" if not_exists else "hset"
        return int(self._do(cmd, scope, key=str(key), field=str(field), value=to_text(value)))

    def hmset(self, key: str, field_values: Mapping[str, object], scope: str | None = None) -> bool:
        mapping = {str(f): to_text(v) for f, v in field_values.items()}
        return bool(mapping) and bool(self._do("hmset", scope, key=str(key), mapping=mapping))

    def hsetnx(self, key: str, field: str, value: Any, scope: str | None = None) -> int:
        return self.hset(key, field, value, scope=scope, not_exists=True)

    def hget(self, key: str, field: str | None = None, scope: str | None = None) -> Any:
        """One field's value; without a field, the whole hash as a dict."""
        if field is None:
            return self.hgetall(key, scope=scope)
        return self._do("hget", scope, key=str(key), field=str(field))

    def hmget(self, key: str, fields: str | list[str], scope: str | None = None) -> dict[str, str | None]:
        return self._do("hmget", scope, key=str(key), fields=_keys(fields))  # type: ignore[no-any-return]

    def hgetall(self, key: str, scope: str | None = None) -> dict[str, str]:
        return self._do("hgetall", scope, key=str(key), pattern="*")  # type: ignore[no-any-return]

    def hincr(self, key: str, field: str, scope: str | None = None) -> int:
        return self.hincrby(key, field, 1, scope=scope)

    def hincrby(self, key: str, field: str, amount: int = 1, scope: str | None = None) -> int:
        return int(self._do("hincrby", scope, key=str(key), field=str(field), amount=int(amount)))

    def hdel(self, key: str, field: str | list[str], scope: str | None = None) -> int:
        return int(self._do("hdel", scope, key=str(key), fields=_keys(field)))

    # --- lists ------------------------------------------------------------------------------
    def lpush(self, key: str, value: Any, scope: str | None = None) -> int:
        return int(self._do("lpush", scope, key=str(key), values=_texts(value)))

    def rpush(self, key: str, value: Any, scope: str | None = None) -> int:
        return int(self._do("rpush", scope, key=str(key), values=_texts(value)))

    def lpop(self, key: str, scope: str | None = None) -> str | None:
        return self._do("lpop", scope, key=str(key))  # type: ignore[no-any-return]

    def rpop(self, key: str, scope: str | None = None) -> str | None:
        return self._do("rpop", scope, key=str(key))  # type: ignore[no-any-return]

    def blpop(self, key: str | list[str], timeout: float = 0, scope: str | None = None) -> list[str] | None:
        """``[key, value]``, or None after ``timeout`` seconds (0: as long as the task may run)."""
        return self._bpop("left", key, timeout, scope)

    def brpop(self, key: str | list[str], timeout: float = 0, scope: str | None = None) -> list[str] | None:
        return self._bpop("right", key, timeout, scope)

    def _bpop(self, side: Side, key: str | list[str], timeout: float, scope: str | None) -> list[str] | None:
        """Polled here, in the child: a value is only ever popped for a task still running."""
        deadline = time.monotonic() + float(timeout) if timeout and timeout > 0 else None
        delay = POLL_MIN
        while True:
            found: list[str] | None = self._do("pop_first", scope, keys=_keys(key), side=side)
            if found is not None:
                return found
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                return None
            time.sleep(delay if left is None else min(delay, left))
            delay = min(delay * 2, POLL_MAX)

    def rpoplpush(self, key: str, dest_key: str | None = None, scope: str | None = None,
                  dest_scope: str | None = None) -> str | None:
        """Move the tail of ``key`` to the head of ``dest_key`` (the same list by default)."""
        return self._do("rpoplpush", scope, key=str(key),  # type: ignore[no-any-return]
                        dest_key=str(dest_key or key), dest_scope=self._scope_of(dest_scope or scope))

    def llen(self, key: str, scope: str | None = None) -> int:
        return int(self._do("llen", scope, key=str(key)))

    def lrange(self, key: str, start: int = 0, stop: int = -1, scope: str | None = None) -> list[str]:
        return self._do("lrange", scope, key=str(key), start=int(start), stop=int(stop))  # type: ignore[no-any-return]

    def ltrim(self, key: str, start: int, stop: int, scope: str | None = None) -> bool:
        return bool(self._do("ltrim", scope, key=str(key), start=int(start), stop=int(stop)))

    def push(self, key: str, value: Any, scope: str | None = None) -> int:
        return self.lpush(key, value, scope=scope)

    def pop(self, key: str, scope: str | None = None) -> str | None:
        return self.rpop(key, scope=scope)

    def bpop(self, key: str | list[str], timeout: float = 0, scope: str | None = None) -> list[str] | None:
        return self.brpop(key, timeout, scope=scope)

    # --- sets -------------------------------------------------------------------------------
    def sadd(self, key: str, member: Any, scope: str | None = None) -> int:
        return int(self._do("sadd", scope, key=str(key), members=_texts(member)))

    def srem(self, key: str, member: Any, scope: str | None = None) -> int:
        return int(self._do("srem", scope, key=str(key), members=_texts(member)))

    def scard(self, key: str, scope: str | None = None) -> int:
        return int(self._do("scard", scope, key=str(key)))

    def smembers(self, key: str, scope: str | None = None) -> list[str]:
        return self._do("smembers", scope, key=str(key))  # type: ignore[no-any-return]

    def sismember(self, key: str, member: Any, scope: str | None = None) -> bool:
        return bool(self._do("sismember", scope, key=str(key), member=to_text(member)))

    # --- sorted sets ------------------------------------------------------------------------
    def zadd(self, key: str, member_scores: dict[str, float], scope: str | None = None) -> int:
        scores = {to_text(m): float(s) for m, s in member_scores.items()}
        return int(self._do("zadd", scope, key=str(key), scores=scores))

    def zrem(self, key: str, member: Any, scope: str | None = None) -> int:
        return int(self._do("zrem", scope, key=str(key), members=_texts(member)))

    def zcard(self, key: str, scope: str | None = None) -> int:
        return int(self._do("zcard", scope, key=str(key)))

    def zrange(self, key: str, start: int = 0, stop: int = -1, reverse: bool = False,
               with_scores: bool = False, scope: str | None = None) -> list[Any]:
        """Members by rank; with ``with_scores`` ``[member, score]`` pairs."""
        return self._do("zrange", scope, key=str(key), start=int(start),  # type: ignore[no-any-return]
                        stop=int(stop), reverse=bool(reverse), with_scores=bool(with_scores))

    # --- publish and patterns ---------------------------------------------------------------
    def publish(self, topic: str, message: Any, scope: str | None = None) -> int:
        return int(self._do("publish", scope, topic=str(topic), message=to_text(message)))

    def get_pattern(self, pattern: str = "*", scope: str | None = None) -> dict[str, str | None] | None:
        """``{key: value}`` of the scope's keys matching ``pattern``; None when none match."""
        return self._do("get_pattern", scope, pattern=str(pattern))  # type: ignore[no-any-return]

    def delete_pattern(self, pattern: str = "*", scope: str | None = None) -> int | None:
        """How many keys went; None when none matched."""
        return self._do("delete_pattern", scope, pattern=str(pattern))  # type: ignore[no-any-return]
