"""The parent side of ``DFF``: serves the children's RPC calls that need Redis or SQL.

A child sends ``{"m": method, "p": params}``; :meth:`DffCalls.__call__` answers with a JSON
value or raises :class:`~fluxfunc_worker.pool.RpcError` (``kind="func"`` becomes
``FuncCallError`` in the child, anything else ``DFFError``). Methods:

=================  ==========================================================================
``script``         published code + version of a script (cached per publish generation)
``cache.*``        DataFlux Func's cache command set on ``keys.cache(scope, key)``
                   (:mod:`fluxfunc_worker.cachecalls`)
``store.*``        ``set/mset/get/mget/getall/keys/delete`` on the SQL key/value store
``env.keys``       the names of all env variables
``env``            an env variable's value; password values are decrypted and marked for
                   masking in the task's print output
``resources``      the resource directory's absolute path and large-data lifetime
``func``           ``DFF.FUNC``: a child task built by ``tasks.build_envelope`` from the
                   catalogue row, enqueued; with ``wait`` its result is awaited
=================  ==========================================================================
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from fluxfunc_common import resources
from fluxfunc_common.crypto import Cipher, cipher_for
from fluxfunc_common.envelope import Origin, TaskStatus
from fluxfunc_common.errors import FluxfuncError, QueueFull
from fluxfunc_common.keys import Keys
from fluxfunc_common.redisconn import RedisClients
from fluxfunc_common.settings import Settings
from fluxfunc_common.store import Entity, Store
from fluxfunc_common.streams import StreamProtocol
from fluxfunc_common.tasks import build_envelope
from fluxfunc_worker.cachecalls import CacheCalls, Command
from fluxfunc_worker.pool import RpcError
from fluxfunc_worker.published import PublishedScripts

ENV_CACHE_SECONDS = 1.0
WAIT_POLL_MIN = 0.01
WAIT_POLL_MAX = 0.2

Method = Callable[[dict[str, Any], dict[str, Any] | None], Awaitable[Any]]


def _ignore_job(command: Command) -> Method:
    async def method(p: dict[str, Any], job: dict[str, Any] | None) -> Any:
        return await command(p)

    return method


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
            "store.get": self.store_get, "store.set": self.store_set, "store.delete": self.store_delete,
            "store.mset": self.store_mset, "store.mget": self.store_mget,
            "store.getall": self.store_getall, "store.keys": self.store_keys,
            "env": self.env, "env.keys": self.env_keys, "func": self.func,
            "resources": self.resources,
        }
        cache = CacheCalls(self.redis, self.keys)
        for name, command in cache.commands.items():
            self._methods[f"cache.{name}"] = _ignore_job(command)

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

    # --- DFF.STORE (SQL) ----------------------------------------------------------------------
    async def store_get(self, p: dict[str, Any], job: dict[str, Any] | None) -> Any:
        return await self.store.kv_get(str(p["scope"]), str(p["key"]))

    async def store_set(self, p: dict[str, Any], job: dict[str, Any] | None) -> Any:
        expires = p.get("expires")
        await self.store.kv_set(str(p["scope"]), str(p["key"]), p.get("value"),
                                float(expires) if expires else None, not_exists=bool(p.get("not_exists")))
        return None

    async def store_mset(self, p: dict[str, Any], job: dict[str, Any] | None) -> Any:
        expires = p.get("expires")
        for key, value in dict(p["values"]).items():
            await self.store.kv_set(str(p["scope"]), str(key), value, float(expires) if expires else None,
                                    not_exists=bool(p.get("not_exists")))
        return None

    async def store_mget(self, p: dict[str, Any], job: dict[str, Any] | None) -> Any:
        return await self.store.kv_mget(str(p["scope"]), [str(k) for k in p["keys"]])

    async def store_getall(self, p: dict[str, Any], job: dict[str, Any] | None) -> Any:
        return await self.store.kv_items(str(p["scope"]), str(p.get("pattern") or "*"))

    async def store_keys(self, p: dict[str, Any], job: dict[str, Any] | None) -> Any:
        return list(await self.store.kv_items(str(p["scope"]), str(p.get("pattern") or "*")))

    async def store_delete(self, p: dict[str, Any], job: dict[str, Any] | None) -> Any:
        await self.store.kv_delete(str(p["scope"]), str(p["key"]))
        return None

    # --- DFF.ENV ---------------------------------------------------------------------------------
    async def env_keys(self, p: dict[str, Any], job: dict[str, Any] | None) -> Any:
        """``DFF.ENV.keys()``: every env variable's name."""
        names: list[str] = []
        cursor: str | None = None
        while True:
            page = await self.store.list(Entity.ENV_VARIABLE, limit=500, cursor=cursor)
            names += [str(row["id"]) for row in page.items]
            if page.next_cursor is None:
                return names
            cursor = page.next_cursor

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
            self._cipher = cipher_for(self.settings)
        return {"value": self._cipher.decrypt(str(cipher_text)), "mask": True}

    # --- the resource directory ------------------------------------------------------------
    async def resources(self, p: dict[str, Any], job: dict[str, Any] | None) -> Any:
        """Where the resource directory is, for ``DFF.RSRC``/``RESP_FILE``/``RESP_LARGE_DATA``."""
        conf = self.settings.resources
        return {"root": str(resources.root_of(conf.path)),
                "largeDataSeconds": conf.large_data_expires_seconds}

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
