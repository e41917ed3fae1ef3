"""The parent side of ``DFF``: serves the children's RPC calls that need Redis or SQL.

A child sends an :class:`~fluxfunc_worker.messages.RpcCall` (a method and its parameters,
typed in :mod:`~fluxfunc_worker.dffparams`); :meth:`DffCalls.__call__` answers with a JSON
value or raises :class:`~fluxfunc_worker.rpc.RpcError` (``kind="func"`` becomes
``FuncCallError`` in the child, anything else ``DFFError``). Methods:

=================  ==========================================================================
``script``         published code + version of a script (cached per publish generation)
``script.draft``   the draft code of a draft run's own script, if its MD5 is still the run's
``cache.*``        DataFlux Func's cache command set on ``keys.cache(scope, key)``
                   (:mod:`fluxfunc_worker.cachecalls`)
``store.*``        ``set/mset/get/mget/getall/keys/delete`` on the SQL key/value store
``env.keys``       the names of all env variables
``env``            an env variable's value; password values are decrypted and marked for
                   masking in the task's print output
``env.many``       the answers of ``env`` for several names (module-level reads, checked
                   before each run: :mod:`~fluxfunc_worker.envwatch`)
``resources``      the resource directory's absolute path and large-data lifetime
``func``           ``DFF.FUNC``: a child task built by ``tasks.build_envelope`` from the
                   catalogue row, enqueued (on the queue asked for, else the func's own,
                   else the caller's); with ``wait`` its result is awaited
``entity.*``       ``DFF.SYNC_API``/``ASYNC_API``/``CRON_JOB`` (:mod:`~fluxfunc_worker.entitycalls`)
``cron.*``         ``DFF.CRON_JOB``'s expression and pause (same module)
``conn``           ``DFF.CONN``: a connector's decrypted config (:mod:`~fluxfunc_worker.dffconn.calls`)
=================  ==========================================================================
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol, cast

from fluxfunc_common import resources
from fluxfunc_common.crypto import Cipher, cipher_for
from fluxfunc_common.envelope import Origin, TaskStatus
from fluxfunc_common.errors import FluxfuncError, QueueFull
from fluxfunc_common.keys import Keys
from fluxfunc_common.models import EnvVariable, Func
from fluxfunc_common.redisconn import RedisClients
from fluxfunc_common.settings import Settings
from fluxfunc_common.store import ConnectorStore, Entity, EntityStore, KvStore
from fluxfunc_common.store.kv import is_internal_scope
from fluxfunc_common.streams import StreamProtocol
from fluxfunc_common.tasks import build_envelope
from fluxfunc_worker.cachecalls import CacheCalls, Command
from fluxfunc_worker.callchain import CallChainError, child_chain
from fluxfunc_worker.callchecks import call_limits, refuse_bad_kwargs
from fluxfunc_worker.dffconn.calls import ConnCalls
from fluxfunc_worker.dffparams import (
    CacheParams,
    DraftParams,
    EntityParams,
    EnvAnswer,
    EnvManyParams,
    EnvParams,
    FuncParams,
    ResourceInfo,
    ScriptParams,
    StoreParams,
)
from fluxfunc_worker.entitycalls import EntityCalls
from fluxfunc_worker.messages import RunMessage
from fluxfunc_worker.published import PublishedScripts
from fluxfunc_worker.rpc import RpcError

ENV_CACHE_SECONDS = 1.0
WAIT_POLL_MIN = 0.01
WAIT_POLL_MAX = 0.2

Params = Mapping[str, object]  # a call's parameters as they arrived (read as its TypedDict)
Method = Callable[[Params, RunMessage | None], Awaitable[object]]


class ScriptApiStore(KvStore, EntityStore, ConnectorStore, Protocol):
    """What scripts reach in the store: ``DFF.STORE`` and the env variables."""


def _cache_method(command: Command) -> Method:
    async def method(p: Params, job: RunMessage | None) -> object:
        return await command(cast(CacheParams, p))

    return method


def _entity_method(call: Callable[[EntityParams], Awaitable[object]]) -> Method:
    async def method(p: Params, job: RunMessage | None) -> object:
        return await call(cast(EntityParams, p))

    return method


def _child_queue(fp: FuncParams, func: Func, job: RunMessage | None) -> str | None:
    """The queue of a ``DFF.FUNC`` child, as in DataFlux Func: the one asked for, else the
    called func's own, else the queue of the task that calls it."""
    return fp.get("queue") or func.options.queue or (job["queue"] if job else None) or None


def _store(p: Params) -> StoreParams:
    sp = cast(StoreParams, p)
    if is_internal_scope(str(sp["scope"])):
        raise RpcError(f"DFF.STORE scope {sp['scope']!r} is reserved for fluxfunc itself")
    return sp


class DffCalls:
    """The RPC handler given to the pool."""

    def __init__(self, settings: Settings, clients: RedisClients, store: ScriptApiStore,
                 streams: StreamProtocol, published: PublishedScripts) -> None:
        self.settings = settings
        self.redis = clients.main
        self.keys: Keys = clients.keys
        self.store = store
        self.streams = streams
        self.published = published
        self._cipher: Cipher | None = None
        self._env: dict[str, tuple[float, EnvAnswer | None]] = {}
        self._methods: dict[str, Method] = {
            "script": self.script, "script.draft": self.script_draft,
            "store.get": self.store_get, "store.set": self.store_set, "store.delete": self.store_delete,
            "store.mset": self.store_mset, "store.mget": self.store_mget,
            "store.getall": self.store_getall, "store.keys": self.store_keys,
            "env": self.env, "env.keys": self.env_keys, "env.many": self.env_many, "func": self.func,
            "resources": self.resources,
        }
        cache = CacheCalls(self.redis, self.keys)
        for name, command in cache.commands.items():
            self._methods[f"cache.{name}"] = _cache_method(command)
        entities = EntityCalls(settings, store, self.redis, self.keys, streams, published)
        for method, call in entities.methods().items():
            self._methods[method] = _entity_method(call)
        self._methods["conn"] = ConnCalls(settings, store, self.redis, self.keys).conn  # DFF.CONN

    async def __call__(self, method: str, params: Params, job: RunMessage | None) -> object:
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
    async def script(self, p: Params, job: RunMessage | None) -> object:
        found = await self.published.code(str(cast(ScriptParams, p)["scriptId"]))
        return None if found is None else [found[0], found[1]]

    async def script_draft(self, p: Params, job: RunMessage | None) -> object:
        """A draft run's own draft code (docs/worker.md, Draft runs): only the task that is
        that draft run reads it, and only while the draft is the one it was asked for."""
        dp = cast(DraftParams, p)
        script_id, md5 = str(dp["scriptId"]), str(dp["md5"])
        if job is None or job.get("draft") != md5 or job["func"].partition(".")[0] != script_id:
            raise RpcError("script.draft: only a draft run reads its own script's draft")
        row = await self.store.find(Entity.SCRIPT, script_id)
        code = None if row is None else str(row.get("code") or "")
        if code is None or hashlib.md5(code.encode()).hexdigest() != md5:
            raise RpcError(f"the draft of {script_id} changed (or the script is gone) since "
                           "this run was asked for: run it again")
        return code

    # --- DFF.STORE (SQL) ----------------------------------------------------------------------
    async def store_get(self, p: Params, job: RunMessage | None) -> object:
        sp = _store(p)
        return await self.store.kv_get(str(sp["scope"]), str(sp["key"]))

    async def store_set(self, p: Params, job: RunMessage | None) -> object:
        sp = _store(p)
        expires = sp.get("expires")
        await self.store.kv_set(str(sp["scope"]), str(sp["key"]), sp.get("value"),
                                float(expires) if expires else None, not_exists=bool(sp.get("not_exists")))
        return None

    async def store_mset(self, p: Params, job: RunMessage | None) -> object:
        sp = _store(p)
        expires = sp.get("expires")
        for key, value in dict(sp["values"]).items():
            await self.store.kv_set(str(sp["scope"]), str(key), value, float(expires) if expires else None,
                                    not_exists=bool(sp.get("not_exists")))
        return None

    async def store_mget(self, p: Params, job: RunMessage | None) -> object:
        sp = _store(p)
        return await self.store.kv_mget(str(sp["scope"]), [str(k) for k in sp["keys"]])

    async def store_getall(self, p: Params, job: RunMessage | None) -> object:
        sp = _store(p)
        return await self.store.kv_items(str(sp["scope"]), str(sp.get("pattern") or "*"))

    async def store_keys(self, p: Params, job: RunMessage | None) -> object:
        sp = _store(p)
        return list(await self.store.kv_items(str(sp["scope"]), str(sp.get("pattern") or "*")))

    async def store_delete(self, p: Params, job: RunMessage | None) -> object:
        sp = _store(p)
        await self.store.kv_delete(str(sp["scope"]), str(sp["key"]))
        return None

    # --- DFF.ENV ---------------------------------------------------------------------------------
    async def env_keys(self, p: Params, job: RunMessage | None) -> object:
        """``DFF.ENV.keys()``: every env variable's name."""
        names: list[str] = []
        cursor: str | None = None
        while True:
            page = await self.store.list(Entity.ENV_VARIABLE, limit=500, cursor=cursor)
            names += [str(row["id"]) for row in page.items]
            if page.next_cursor is None:
                return names
            cursor = page.next_cursor

    async def env(self, p: Params, job: RunMessage | None) -> object:
        """``{"value", "mask"}`` or None; cached for a second (a task reading the same
        variable in a loop costs one SQL query)."""
        name = str(cast(EnvParams, p)["name"])
        cached = self._env.get(name)
        now = time.monotonic()
        if cached is not None and now - cached[0] < ENV_CACHE_SECONDS:
            return cached[1]
        row = await self.store.find(Entity.ENV_VARIABLE, name)
        value = None if row is None else self._env_value(EnvVariable.from_row(row))
        self._env[name] = (now, value)
        return value

    async def env_many(self, p: Params, job: RunMessage | None) -> object:
        """``{name: answer of env}`` for the names a child's scripts read at import
        (:mod:`~fluxfunc_worker.envwatch`)."""
        names = [str(n) for n in cast(EnvManyParams, p)["names"]]
        return {name: await self.env({"name": name}, job) for name in names}

    def forget_env(self, name: str | None = None) -> None:
        """An ``envVariableChanged`` event: the next read of ``name`` (all, without one)
        goes to the store."""
        if name is None:
            self._env.clear()
        else:
            self._env.pop(name, None)

    def _env_value(self, var: EnvVariable) -> EnvAnswer:
        if not var.is_password:
            return {"value": var.value, "mask": False}
        if not var.value_cipher:
            return {"value": None, "mask": True}
        if self._cipher is None:
            self._cipher = cipher_for(self.settings)
        return {"value": self._cipher.decrypt(var.value_cipher), "mask": True}

    # --- the resource directory ------------------------------------------------------------
    async def resources(self, p: Params, job: RunMessage | None) -> object:
        """Where the resource directory is, for ``DFF.RSRC``/``RESP_FILE``/``RESP_LARGE_DATA``."""
        conf = self.settings.resources
        info: ResourceInfo = {"root": str(resources.root_of(conf.path)),
                              "largeDataSeconds": conf.large_data_expires_seconds}
        return info

    # --- DFF.FUNC ----------------------------------------------------------------------------------
    async def func(self, p: Params, job: RunMessage | None) -> object:
        fp = cast(FuncParams, p)
        func_id = str(fp["func_id"])
        kwargs = fp.get("kwargs") or {}
        if not isinstance(kwargs, dict):
            raise RpcError("DFF.FUNC: kwargs must be a dict")
        func = await self.published.func(func_id)
        if func is None:
            raise RpcError(f"DFF.FUNC: no published function {func_id!r}")
        refuse_bad_kwargs(func, kwargs)
        try:  # the chain as the parent knows it, not as the (untrusted) child says it is
            chain = child_chain(job["callChain"], job["func"], func_id) if job else list(fp["call_chain"])
        except CallChainError as exc:
            raise RpcError(str(exc)) from None
        now = time.time()
        timeout, expires = call_limits(fp.get("timeout"), fp.get("expires"),
                                       self.settings.tasks.max_timeout)
        env = build_envelope(
            func, kwargs, origin=Origin.CHILD, now=now, settings=self.settings.tasks,
            origin_id=job["id"] if job else None, call_chain=chain,
            trace_id=job.get("traceId") if job else None, queue=_child_queue(fp, func, job),
            expires=now + expires if expires else None,
        )
        if timeout:
            env = env.model_copy(update={"timeout": timeout})
        try:
            enqueued = await self.streams.enqueue(env, max_len=self.settings.redis.queue_max_len)
        except QueueFull:
            raise RpcError(f"DFF.FUNC: queue {env.queue!r} is full") from None
        wait = fp.get("wait")
        if not wait:
            return enqueued.task_id
        return await self._wait(func_id, enqueued.task_id, float(wait))

    async def _wait(self, func_id: str, task_id: str, wait: float) -> object:
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
