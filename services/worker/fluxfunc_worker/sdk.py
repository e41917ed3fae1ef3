"""The ``DFF`` object user scripts see: ``API``, ``ENV``, ``CACHE``, ``STORE``,
``RESP``, ``FUNC``, ``SRC``/``CONN``; ``RSRC``, ``RESP_FILE``, ``RESP_LARGE_DATA`` (the
resource directory); ``THREAD`` (:mod:`~fluxfunc_worker.dffthread`); ``SYNC_API``,
``ASYNC_API``, ``CRON_JOB`` (:mod:`~fluxfunc_worker.dffentities`).

Importable as ``from fluxfunc_worker.sdk import DFF`` for editors and tests; inside a worker
child every script module gets its own ``DFF`` bound to its script id (the default scope of
``CACHE`` and ``STORE``, as in DataFlux Func).

Calls that need Redis or SQL go through :data:`backend`, set by the child process to an RPC
client that asks the parent worker over the child's socket. Why RPC and not connections of
the child's own: the worker keeps one set of Redis/SQL connections however many children it
runs and however often they are recycled; children start in tens of milliseconds because they
open no sockets; SQLite is written by one process only; and a child killed mid-call (timeout,
memory) cannot leave a half-used connection or a held lock behind.
"""

from __future__ import annotations

import contextvars
import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar, cast

from fluxfunc_common.contenttypes import mime_type
from fluxfunc_worker import callchain, dffaio, envwatch
from fluxfunc_worker.dffcache import CacheHelper
from fluxfunc_worker.dffentities import AsyncApiHelper, CronJobHelper, SyncApiHelper
from fluxfunc_worker.dffparams import ResourceInfo
from fluxfunc_worker.dffstore import StoreHelper
from fluxfunc_worker.dffthread import THREAD
from fluxfunc_worker.messages import JSONObject
from fluxfunc_worker.taskglobals import context_globals

F = TypeVar("F", bound=Callable[..., Any])

API_MARK = "__dff_api__"



class DFFError(Exception):
    """A DFF call could not be served (bad arguments, missing entity, backend failure)."""


class FuncCallError(DFFError):
    """``DFF.FUNC(..., wait=N)``: the called function did not succeed."""


class Backend(Protocol):
    """What DFF needs from the worker: one synchronous call per operation."""

    def call(self, method: str, params: dict[str, object]) -> object: ...


@dataclass
class TaskContext:
    """The running task, as DFF calls need it (set by the child runtime per run)."""

    task_id: str
    func_id: str
    script_id: str
    origin: str = "direct"
    origin_id: str | None = None
    trigger_time: float | None = None
    cron_expr: str | None = None
    http_request: JSONObject | None = None  # _DFF_HTTP_REQUEST: method, headers, query, body …
    call_chain: list[str] = field(default_factory=list)
    trace_id: str | None = None
    queue: str = "default"
    attempt: int = 1
    masks: set[str] = field(default_factory=set)
    eta: float | None = None
    start_time: float = 0.0


backend: Backend | None = None
task: TaskContext | None = None  # the sync task this child runs (one at a time)
# the async task of the running coroutine (a child runs many on its event loop): per context
async_task: contextvars.ContextVar[TaskContext | None] = contextvars.ContextVar("dff_task", default=None)


def current() -> TaskContext | None:
    """The task the calling code runs for: its coroutine's async task, else the sync one."""
    return async_task.get() or task


THREAD.in_async = lambda: async_task.get() is not None


def _call(method: str, **params: object) -> Any:
    """One DFF call to the worker; its JSON answer (parameters and answers per method:
    :mod:`~fluxfunc_worker.dffparams`)."""
    if backend is None:
        raise DFFError(f"DFF.{method.split('.')[0].upper()} works only inside a fluxfunc worker")
    return backend.call(method, params)


def _origin() -> tuple[str, str | None] | None:
    """Where the running task came from (the entity helpers' default entry)."""
    ctx = current()
    return None if ctx is None else (ctx.origin, ctx.origin_id)


class FuncResponse:
    """What ``DFF.RESP`` returns: the HTTP answer a sync call should give."""

    def __init__(
        self,
        data: Any = None,
        status_code: int = 200,
        content_type: str | None = None,
        headers: dict[str, str] | None = None,
        allow_304: bool = False,
        download: bool | str = False,
    ) -> None:
        if isinstance(data, bytes | bytearray):
            try:
                data = bytes(data).decode("utf-8")
            except UnicodeDecodeError:
                raise DFFError("DFF.RESP: binary data is not supported; return text or base64") from None
        self.data = data
        self.status_code = int(status_code)
        self.content_type = mime_type(content_type)
        self.headers = {str(k): str(v) for k, v in (headers or {}).items()}
        self.allow_304 = bool(allow_304)
        self.download: bool | str = download if isinstance(download, str) else bool(download)

    def to_dict(self) -> dict[str, object]:
        """The wire form (the ``response`` of a run report)."""
        return {
            "statusCode": self.status_code,
            "contentType": self.content_type,
            "headers": self.headers,
            "data": self.data,
            "allow304": self.allow_304,
            "download": self.download,
        }


# --- the resource directory: DFF.RSRC, DFF.RESP_FILE, DFF.RESP_LARGE_DATA ------------------------
_resources: ResourceInfo | None = None  # asked once per child


def _resource_settings() -> ResourceInfo:
    global _resources
    if _resources is None:
        _resources = cast(ResourceInfo, _call("resources"))
    return _resources


def resource_path(path: str) -> str:
    """``DFF.RSRC``: the absolute path of ``path`` under the resource directory (a leading
    ``/`` is ignored, as in DataFlux Func); a path that would leave it → DFFError."""
    from fluxfunc_common import resources  # lazily: most scripts never need it
    from fluxfunc_common.errors import FluxfuncError

    root = Path(_resource_settings()["root"])
    try:
        return str(resources.resolve(root, str(path).lstrip("/")))
    except FluxfuncError as exc:
        raise DFFError(f"DFF.RSRC({str(path)[:100]!r}): {exc.message}") from None


class FuncResponseFile(FuncResponse):
    """``DFF.RESP_FILE``: answer a sync call with a file of the resource directory."""

    def __init__(self, file_path: str, status_code: int = 200, headers: dict[str, str] | None = None,
                 allow_304: bool = False, auto_delete: bool = False, download: bool | str = True) -> None:
        super().__init__(None, status_code=status_code, headers=headers, allow_304=allow_304,
                         download=download)
        if not os.path.isfile(resource_path(file_path)):
            raise DFFError(f"No such file in the resource directory: {file_path}")
        self.file_path = str(file_path).lstrip("/")
        self.auto_delete = bool(auto_delete)
        self.large_data = False

    def to_dict(self) -> dict[str, object]:
        return {**super().to_dict(), "filePath": self.file_path, "autoDelete": self.auto_delete,
                "largeData": self.large_data}


class FuncResponseLargeData(FuncResponseFile):
    """``DFF.RESP_LARGE_DATA``: data written to ``.downloads/`` and served once (the sync
    answer, or the one-time URL of a wrapped answer)."""

    def __init__(self, data: Any, content_type: str | None = None) -> None:
        from fluxfunc_common import resources

        ext = content_type or ("json" if isinstance(data, dict | list | tuple) else "txt")
        text = data if isinstance(data, str) else json.dumps(data, ensure_ascii=False, default=str)
        conf = _resource_settings()
        name = resources.stamped_name(f"api-resp.{ext}", time.time() + conf["largeDataSeconds"])
        rel = f"{resources.DOWNLOADS}/{name}"
        target = Path(resource_path(rel))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        super().__init__(rel, auto_delete=True, download=False)
        self.large_data = True


class _Scoped:
    def __init__(self, owner: DFFApi) -> None:
        self._owner = owner

    def _scope(self, scope: str | None) -> str:
        if scope:
            return scope
        if self._owner.script_id:
            return self._owner.script_id
        ctx = current()
        if ctx is not None:
            return ctx.script_id
        raise DFFError("no scope: pass scope= outside a running task")


class EnvHelper:
    """``DFF.ENV``: ``DFF.ENV(name)`` / ``DFF.ENV.get(name)`` is a variable's value converted by
    its valueType (``default``, None unless given, when it does not exist); ``keys()`` lists
    every variable's name. Password values are masked in the task's print output."""

    def __call__(self, name: str, default: Any = None) -> Any:
        return self.get(name, default)

    def get(self, name: str, default: Any = None) -> Any:
        found = _call("env", name=str(name))
        envwatch.record(str(name), found)
        if found is None:
            return default
        ctx = current()
        if found.get("mask") and ctx is not None and found.get("value"):
            ctx.masks.add(str(found["value"]))
        return found.get("value")

    def keys(self) -> list[str]:
        names: list[str] = _call("env.keys")
        return names


class _Connectors:
    """``DFF.CONN(id)`` / ``DFF.SRC(id)``: a connector's helper, from the one pool of this
    process (:mod:`fluxfunc_worker.dffconn`, loaded on first use; docs/connectors.md)."""

    pool: Any = None

    def __call__(self, connector_id: str, *args: Any, **kwargs: Any) -> Any:
        if _Connectors.pool is None:
            from fluxfunc_worker.dffconn import Connectors

            _Connectors.pool = Connectors(_call, _mask)
        return _Connectors.pool(connector_id, *args, **kwargs)


def _mask(secret: str) -> None:
    ctx = current()
    if ctx is not None:
        ctx.masks.add(secret)


def close_connectors() -> None:
    """Close every connector client of this process (the child retires)."""
    if _Connectors.pool is not None:
        _Connectors.pool.close_all()


class DFFApi:
    """The ``DFF`` global of one script module."""

    def __init__(self, script_id: str | None = None) -> None:
        self.script_id = script_id
        scoped = _Scoped(self)
        self.CACHE = CacheHelper(_call, scoped._scope)
        self.STORE = StoreHelper(_call, scoped._scope)
        self.ENV = EnvHelper()
        self.SRC = self.CONN = _Connectors()
        self.RESP = FuncResponse
        self.RESP_FILE = FuncResponseFile
        self.RESP_LARGE_DATA = FuncResponseLargeData
        self.RSRC = resource_path
        self.THREAD = THREAD
        self.SYNC_API = self.AUTH_LINK = SyncApiHelper(_call, _origin)
        self.ASYNC_API = self.BATCH = AsyncApiHelper(_call, _origin)
        self.CRON_JOB = self.CRONTAB_CONFIG = CronJobHelper(_call, _origin)
        # awaitable forms for async def functions: await DFF.aio.FUNC(...), DFF.aio.CACHE.get(...)
        self.aio = self.AIO = dffaio.Awaitable(self, "DFF.aio")

    # --- exporting ----------------------------------------------------------------------
    def API(self, title: str | None = None, **options: Any) -> Callable[[F], F]:
        """Mark a function as callable. Unknown options are tolerated (DataFlux extras)."""
        config = dict(options, title=title)

        def mark(func: F) -> F:
            setattr(func, API_MARK, config)
            return func

        return mark

    def __getattr__(self, name: str) -> Any:
        """DataFlux Func's lower-case aliases: ``DFF.api``, ``DFF.log``, ``DFF.env`` …"""
        if name.islower() and not name.startswith("_") and name.upper() != name:
            try:
                return getattr(self, name.upper())
            except AttributeError:
                pass
        raise AttributeError(f"DFF has no member {name!r}")

    # --- configuration and context --------------------------------------------------------
    def TASK(self) -> dict[str, object]:
        """The ``_DFF_*`` context values of the task the calling code runs for. In an
        ``async def`` the module-level ``_DFF_*`` globals are those of the task that started
        last in the child (several share its modules); this is the calling task's own."""
        ctx = current()
        if ctx is None:
            raise DFFError("DFF.TASK works only inside a running task")
        return context_globals(ctx)

    def LOG(self, *args: Any, **kwargs: Any) -> None:
        print(*args, **kwargs)

    def REDIRECT(self, url: str) -> FuncResponse:
        return FuncResponse("", status_code=302, headers={"Location": url})

    # --- calling other functions ---------------------------------------------------------
    def FUNC(
        self, func_id: str, kwargs: Mapping[str, object] | None = None, queue: str | int | None = None,
        timeout: float | None = None, expires: float | None = None, *, wait: float | None = None,
    ) -> Any:
        """Enqueue ``func_id`` as a child task; its task id, or its result with ``wait=N``.
        ``queue``/``timeout``/``expires`` (seconds it may wait in the queue) override the
        function's own; a short ``func_id`` is relative (:func:`resolve_func_id`)."""
        ctx = current()
        here = self.script_id or (ctx.script_id if ctx is not None else None)
        func_id = resolve_func_id(str(func_id), here)
        chain = child_chain(ctx, func_id)
        return _call("func", func_id=func_id, kwargs=dict(kwargs or {}), wait=wait,
                     call_chain=chain, queue=None if queue is None else str(queue),
                     timeout=timeout, expires=expires)


def resolve_func_id(func_id: str, script_id: str | None) -> str:
    """A full func id from a short one, relative to the calling script: ``"func"`` is a
    function of the same script, ``"script.func"`` (and ``"__script.func"``, the form of
    DataFlux Func's relative imports) one of the same script set; ``"set__script.func"``
    stays as it is."""
    if not script_id:
        return func_id
    script, dot, name = func_id.partition(".")
    if not dot:
        return f"{script_id}.{func_id}"
    script_set = script_id.split("__", 1)[0]
    if script.startswith("__"):
        return f"{script_set}{script}.{name}"
    if "__" not in script:
        return f"{script_set}__{script}.{name}"
    return func_id


def child_chain(parent: TaskContext | None, func_id: str) -> list[str]:
    """The callChain of a child task; refuses cycles and chains longer than the limit here,
    before asking (the worker checks again: :mod:`~fluxfunc_worker.callchain`)."""
    if parent is None:
        return []
    try:
        return callchain.child_chain(parent.call_chain, parent.func_id, func_id)
    except callchain.CallChainError as exc:
        raise DFFError(str(exc)) from None


def api_config(func: object) -> dict[str, object] | None:
    """The ``@DFF.API`` options of a function (the script's own, any JSON), or None when it
    is not exported."""
    config = getattr(func, API_MARK, None)
    return cast(dict[str, object], config) if isinstance(config, dict) else None


DFF = DFFApi()
