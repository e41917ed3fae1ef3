"""The ``DFF`` object user scripts see (SPEC §3): ``API``, ``ENV``, ``CACHE``, ``STORE``,
``RESP``, ``FUNC``, ``SRC``/``CONN``.

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

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from fluxfunc_common.contenttypes import mime_type

F = TypeVar("F", bound=Callable[..., Any])

API_MARK = "__dff_api__"
MAX_CALL_CHAIN = 5



class DFFError(Exception):
    """A DFF call could not be served (bad arguments, missing entity, backend failure)."""


class FuncCallError(DFFError):
    """``DFF.FUNC(..., wait=N)``: the called function did not succeed."""


class Backend(Protocol):
    """What DFF needs from the worker: one synchronous call per operation."""

    def call(self, method: str, params: dict[str, Any]) -> Any: ...


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
    http_request: dict[str, Any] | None = None
    call_chain: list[str] = field(default_factory=list)
    trace_id: str | None = None
    queue: str = "default"
    attempt: int = 1
    masks: set[str] = field(default_factory=set)


backend: Backend | None = None
task: TaskContext | None = None


def _call(method: str, **params: Any) -> Any:
    if backend is None:
        raise DFFError(f"DFF.{method.split('.')[0].upper()} works only inside a fluxfunc worker")
    return backend.call(method, params)


class FuncResponse:
    """What ``DFF.RESP`` returns: the HTTP answer a sync call should give."""

    def __init__(
        self,
        data: Any = None,
        status_code: int = 200,
        content_type: str | None = None,
        headers: dict[str, str] | None = None,
        **_legacy: Any,  # allow_304, download: accepted, not used
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

    def to_dict(self) -> dict[str, Any]:
        return {
            "statusCode": self.status_code,
            "contentType": self.content_type,
            "headers": self.headers,
            "data": self.data,
        }


class _Scoped:
    def __init__(self, owner: DFFApi) -> None:
        self._owner = owner

    def _scope(self, scope: str | None) -> str:
        if scope:
            return scope
        if self._owner.script_id:
            return self._owner.script_id
        if task is not None:
            return task.script_id
        raise DFFError("no scope: pass scope= outside a running task")


class CacheHelper(_Scoped):
    """``DFF.CACHE``: Redis values scoped per script (strings back, as in DataFlux Func)."""

    def get(self, key: str, scope: str | None = None) -> str | None:
        value: str | None = _call("cache.get", scope=self._scope(scope), key=str(key))
        return value

    def set(
        self, key: str, value: Any, expires: float | None = None, not_exists: bool = False,
        scope: str | None = None,
    ) -> bool:
        return bool(_call("cache.set", scope=self._scope(scope), key=str(key), value=_to_text(value),
                          expires=expires, not_exists=not_exists))

    def delete(self, key: str, scope: str | None = None) -> int:
        return int(_call("cache.delete", scope=self._scope(scope), key=str(key)))

    def incr(self, key: str, step: int = 1, scope: str | None = None) -> int:
        return int(_call("cache.incr", scope=self._scope(scope), key=str(key), step=int(step)))

    def expire(self, key: str, expires: float, scope: str | None = None) -> bool:
        return bool(_call("cache.expire", scope=self._scope(scope), key=str(key), expires=expires))


def _to_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bytes | bytearray):
        return bytes(value).decode("utf-8", "replace")
    if isinstance(value, bool) or value is None or isinstance(value, dict | list | tuple):
        import json

        return json.dumps(value, ensure_ascii=False)
    return str(value)


class StoreHelper(_Scoped):
    """``DFF.STORE``: persistent JSON values in the SQL store, scoped per script."""

    def get(self, key: str, scope: str | None = None) -> Any:
        return _call("store.get", scope=self._scope(scope), key=str(key))

    def set(self, key: str, value: Any, expires: float | None = None, scope: str | None = None) -> None:
        _call("store.set", scope=self._scope(scope), key=str(key), value=value, expires=expires)

    def delete(self, key: str, scope: str | None = None) -> None:
        _call("store.delete", scope=self._scope(scope), key=str(key))


class _NoConnectors:
    """``DFF.SRC``/``DFF.CONN``: connectors are not part of fluxfunc."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise DFFError("connectors (DFF.SRC / DFF.CONN) are not supported in fluxfunc; "
                       "use a client library and DFF.ENV for its credentials")


class DFFApi:
    """The ``DFF`` global of one script module."""

    def __init__(self, script_id: str | None = None) -> None:
        self.script_id = script_id
        self.CACHE = CacheHelper(self)
        self.STORE = StoreHelper(self)
        self.SRC = self.CONN = _NoConnectors()
        self.RESP = FuncResponse

    # --- exporting ----------------------------------------------------------------------
    def API(self, title: str | None = None, **options: Any) -> Callable[[F], F]:
        """Mark a function as callable. Unknown options are tolerated (DataFlux extras)."""
        config = dict(options, title=title)

        def mark(func: F) -> F:
            setattr(func, API_MARK, config)
            return func

        return mark

    # --- configuration and context --------------------------------------------------------
    def ENV(self, name: str, default: Any = None) -> Any:
        """An env variable's value, converted by its valueType (None when missing)."""
        found = _call("env", name=str(name))
        if found is None:
            return default
        if found.get("mask") and task is not None and found.get("value"):
            task.masks.add(str(found["value"]))
        return found.get("value")

    def LOG(self, *args: Any, **kwargs: Any) -> None:
        print(*args, **kwargs)

    def REDIRECT(self, url: str) -> FuncResponse:
        return FuncResponse("", status_code=302, headers={"Location": url})

    # --- calling other functions ---------------------------------------------------------
    def FUNC(
        self, func_id: str, kwargs: dict[str, Any] | None = None, wait: float | None = None,
        **_options: Any,
    ) -> Any:
        """Enqueue ``func_id`` as a child task; its task id, or its result with ``wait=N``."""
        chain = child_chain(task, func_id)
        return _call("func", func_id=func_id, kwargs=dict(kwargs or {}), wait=wait,
                     call_chain=chain)


def child_chain(parent: TaskContext | None, func_id: str) -> list[str]:
    """The callChain of a child task; refuses cycles and chains longer than the limit."""
    if parent is None:
        return []
    chain = [*parent.call_chain, parent.func_id]
    if func_id in chain:
        raise DFFError(f"circular call refused: {' -> '.join([*chain, func_id])}")
    if len(chain) >= MAX_CALL_CHAIN:
        raise DFFError(f"call chain too long (limit {MAX_CALL_CHAIN}): {' -> '.join([*chain, func_id])}")
    return chain


def api_config(func: Any) -> dict[str, Any] | None:
    """The ``@DFF.API`` options of a function, or None when it is not exported."""
    config = getattr(func, API_MARK, None)
    return config if isinstance(config, dict) else None


DFF = DFFApi()
