"""The parent side of ``DFF``: serves the children's RPC calls that need Redis or SQL.

A child sends ``{"m": method, "p": params}``; :meth:`DffCalls.__call__` answers with a JSON
value or raises :class:`~fluxfunc_worker.pool.RpcError` (``kind="func"`` becomes
``FuncCallError`` in the child, anything else ``DFFError``). Methods:

=================  ==========================================================================
``script``         published code + version of a script (cached per publish generation)
``cache.*``        ``get/set/delete/incr/expire`` on ``keys.cache(scope, key)``
``store.*``        ``get/set/delete`` on the SQL key/value store
``env``            an env variable's value; password values are decrypted and marked for
                   masking in the task's print output
``func``           ``DFF.FUNC``: a child task built by ``tasks.build_envelope`` from the
                   catalogue row, enqueued; with ``wait`` its result is awaited
=================  ==========================================================================
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fluxfunc_common.crypto import Cipher
from fluxfunc_common.envelope import Origin, TaskStatus
from fluxfunc_common.errors import FluxfuncError, QueueFull
from fluxfunc_common.keys import Keys
from fluxfunc_common.redisconn import RedisClients
from fluxfunc_common.settings import Settings
from fluxfunc_common.store import Entity, Store
from fluxfunc_common.streams import StreamProtocol
from fluxfunc_common.tasks import build_envelope
from fluxfunc_worker.pool import RpcError
from fluxfunc_worker.published import PublishedScripts

ENV_CACHE_SECONDS = 1.0
WAIT_POLL_MIN = 0.01
WAIT_POLL_MAX = 0.2

Method = Callable[[dict[str, Any], dict[str, Any] | None], Awaitable[Any]]


class DffCalls:
    """The RPC handler given to the pool."""

    def __init__(self, settings: Settings, clients: RedisClients, store: Store,
                 streams: StreamProtocol, published: PublishedScripts) -> None:
        self.settings = settings
        self.redis = clients.main
        self.keys: Keys = clients.keys
        self.store = store
        self.streams = streams
        self.published = published
        self._cipher: Cipher | None = None
        self._env: dict[str, tuple[float, dict[str, Any] | None]] = {}
        self._methods: dict[str, Method] = {
            "script": self.script,
            "cache.get": self.cache_get, "cache.set": self.cache_set,
            "cache.delete": self.cache_delete, "cache.incr": self.cache_incr,
            "cache.expire": self.cache_expire,
            "store.get": self.store_get, "store.set": self.store_set, "store.delete": self.store_delete,
            "env": self.env, "func": self.func,
        }

    async def __call__(self, method: str, params: dict[str, Any], job: dict[str, Any] | None) -> Any:
        handler = self._methods.get(method)
        if handler is None:
            raise RpcError(f"unknown DFF call {method!r}")
        try:
            return await handler(params, job)
        except RpcError:
            raise
        except FluxfuncError as exc:
            raise RpcError(exc.message) from None
        except (KeyError, TypeError, ValueError) as exc:
            raise RpcError(f"DFF call {method}: bad arguments ({exc})") from None

    # --- scripts ----------------------------------------------------------------------------
    async def script(self, p: dict[str, Any], job: dict[str, Any] | None) -> Any:
        found = await self.published.code(str(p["scriptId"]))
        return None if found is None else [found[0], found[1]]

    # --- DFF.CACHE (Redis) ------------------------------------------------------------------
    def _cache_key(self, p: dict[str, Any]) -> str:
        return self.keys.cache(str(p["scope"]), str(p["key"]))

    async def cache_get(self, p: dict[str, Any], job: dict[str, Any] | None) -> Any:
        raw: bytes | str | None = await self.redis.get(self._cache_key(p))
        if isinstance(raw, bytes):
            return raw.decode("utf-8", "replace")
        return raw

    async def cache_set(self, p: dict[str, Any], job: dict[str, Any] | None) -> Any:
        expires = p.get("expires")
        px = max(1, int(float(expires) * 1000)) if expires else None
        done = await self.redis.set(self._cache_key(p), str(p["value"]), px=px,
                                    nx=bool(p.get("not_exists")))
        return bool(done)

    async def cache_delete(self, p: dict[str, Any], job: dict[str, Any] | None) -> Any:
        return int(await self.redis.delete(self._cache_key(p)))

    async def cache_incr(self, p: dict[str, Any], job: dict[str, Any] | None) -> Any:
        return int(await self.redis.incrby(self._cache_key(p), int(p.get("step", 1))))

    async def cache_expire(self, p: dict[str, Any], job: dict[str, Any] | None) -> Any:
        return bool(await self.redis.pexpire(self._cache_key(p), max(1, int(float(p["expires"]) * 1000))))

    # --- DFF.STORE (SQL) ----------------------------------------------------------------------
    async def store_get(self, p: dict[str, Any], job: dict[str, Any] | None) -> Any:
        return await self.store.kv_get(str(p["scope"]), str(p["key"]))

    async def store_set(self, p: dict[str, Any], job: dict[str, Any] | None) -> Any:
        expires = p.get("expires")
        await self.store.kv_set(str(p["scope"]), str(p["key"]), p.get("value"),
                                float(expires) if expires else None)
        return None

    async def store_delete(self, p: dict[str, Any], job: dict[str, Any] | None) -> Any:
        await self.store.kv_delete(str(p["scope"]), str(p["key"]))
        return None

    # --- DFF.ENV ---------------------------------------------------------------------------------
    async def env(self, p: dict[str, Any], job: dict[str, Any] | None) -> Any:
        """``{"value", "mask"}`` or None; cached for a second (a task reading the same
        variable in a loop costs one SQL query)."""
        name = str(p["name"])
        cached = self._env.get(name)
        now = time.monotonic()
        if cached is not None and now - cached[0] < ENV_CACHE_SECONDS:
            return cached[1]
        row = await self.store.find(Entity.ENV_VARIABLE, name)
        value = None if row is None else self._env_value(row)
        self._env[name] = (now, value)
        return value

    def _env_value(self, row: dict[str, Any]) -> dict[str, Any]:
        if row.get("valueType") != "password":
            return {"value": row.get("value"), "mask": False}
        cipher_text = row.get("valueCipher")
        if not cipher_text:
            return {"value": None, "mask": True}
        if self._cipher is None:
            self._cipher = Cipher(self.settings.require_secret())
        return {"value": self._cipher.decrypt(str(cipher_text)), "mask": True}

    # --- DFF.FUNC ----------------------------------------------------------------------------------
    async def func(self, p: dict[str, Any], job: dict[str, Any] | None) -> Any:
        func_id = str(p["func_id"])
        kwargs = p.get("kwargs") or {}
        if not isinstance(kwargs, dict):
            raise RpcError("DFF.FUNC: kwargs must be a dict")
        row = await self.published.func(func_id)
        if row is None:
            raise RpcError(f"DFF.FUNC: no published function {func_id!r}")
        check_kwargs(row, kwargs)
        parent = job or {}
        env = build_envelope(
            row, kwargs, origin=Origin.CHILD, now=time.time(), settings=self.settings.tasks,
            origin_id=parent.get("id"), call_chain=list(p.get("call_chain") or []),
            trace_id=parent.get("traceId"),
        )
        try:
            enqueued = await self.streams.enqueue(env, max_len=self.settings.redis.queue_max_len)
        except QueueFull:
            raise RpcError(f"DFF.FUNC: queue {env.queue!r} is full") from None
        wait = p.get("wait")
        if not wait:
            return enqueued.task_id
        return await self._wait(func_id, enqueued.task_id, float(wait))

    async def _wait(self, func_id: str, task_id: str, wait: float) -> Any:
        deadline = time.monotonic() + wait
        delay = WAIT_POLL_MIN
        while True:
            result = await self.streams.get_result(task_id)
            if result is not None:
                break
            left = deadline - time.monotonic()
            if left <= 0:
                raise RpcError(f"DFF.FUNC: {func_id} (task {task_id}) did not finish within {wait:g} s",
                               kind="func")
            await asyncio.sleep(min(delay, left))
            delay = min(delay * 2, WAIT_POLL_MAX)
        if result.status is not TaskStatus.SUCCESS:
            raise RpcError(f"DFF.FUNC: {func_id} (task {task_id}) ended {result.status.value}: "
                           f"{result.exception or ''}".rstrip(": "), kind="func")
        if result.response is not None:
            return result.response.data
        return result.result


def check_kwargs(func: dict[str, Any], kwargs: dict[str, Any]) -> None:
    """Refuse unknown or missing kwargs the way the Server does (before enqueueing)."""
    spec: dict[str, Any] = func.get("kwargsSpec") or {}
    if not func.get("varKwargs"):
        unknown = sorted(set(kwargs) - set(spec))
        if unknown:
            raise RpcError(f"DFF.FUNC: {func['id']} takes no argument(s) {', '.join(unknown)}")
    missing = sorted(k for k, v in spec.items() if v.get("required") and k not in kwargs)
    if missing:
        raise RpcError(f"DFF.FUNC: {func['id']} is missing argument(s) {', '.join(missing)}")
