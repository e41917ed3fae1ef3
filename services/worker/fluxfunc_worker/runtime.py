"""The script runtime inside a worker child: load published scripts, run one task, and turn
what happened into an outcome the parent can complete.

* Scripts are compiled once per child and cached by publish version; the module objects
  built from them live until a publish changes their script or one they import
  (:mod:`~fluxfunc_worker.modcache`, which also records the import graph).
* ``import demo__lib`` goes through :class:`~fluxfunc_worker.modcache.ScriptFinder`, which
  loads published code the same way.
* Each module keeps its namespace between tasks (like a Celery or arq worker process); the
  ``_DFF_*`` context globals are refreshed before every run in the called script's module and
  the modules of the scripts it imports (the import graph), not in every module of the child.
* ``print`` is captured per task (:class:`PrintCapture`), tracebacks show the user's frames
  only (file names like ``<demo__basic>``).
* A draft run (``draft`` in the run message: the console's run of an unpublished draft) calls
  the function of a module built from the script's draft
  (:meth:`~fluxfunc_worker.modcache.ScriptCache.draft`), and the child retires after it.

Imported by the child process only: standard library, orjson and the sdk.
"""

from __future__ import annotations

import asyncio
import builtins
import inspect
import json
import sys
import time
import traceback
import types
from collections.abc import Callable, Mapping
from typing import Any, cast

import orjson

from fluxfunc_worker import envwatch, sdk
from fluxfunc_worker.dffthread import THREAD
from fluxfunc_worker.messages import DoneMessage, RunMessage, RunReport
from fluxfunc_worker.modcache import SCRIPT_NAME, ScriptCache, ScriptFinder, ScriptNotFound, tracking_import
from fluxfunc_worker.printcapture import PrintCapture
from fluxfunc_worker.taskglobals import context_globals


def split_func_id(func_id: str) -> tuple[str, str]:
    """``demo__basic.plus`` → (``demo__basic``, ``plus``)."""
    script_id, sep, name = func_id.partition(".")
    if not sep or not name or not SCRIPT_NAME.match(script_id):
        raise ValueError(f"invalid func id {func_id!r} (expected <set>__<script>.<function>)")
    return script_id, name


def _is_script_frame(filename: str) -> bool:
    return filename.startswith("<") and filename.endswith(">") and bool(SCRIPT_NAME.match(filename[1:-1]))


def user_traceback(exc: BaseException) -> str:
    """The traceback of a user exception with only the scripts' own frames."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if _is_script_frame(f.filename)]
    lines = ["Traceback (most recent call last):\n"]
    lines += traceback.format_list(frames)
    lines += traceback.format_exception_only(type(exc), exc)
    return "".join(lines)


def describe_exception(exc: BaseException) -> str:
    """``ExcType: message`` (the ``exception`` field of a result)."""
    message = str(exc)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def encode_result(value: Any) -> bytes:
    """JSON bytes of a return value; TypeError with a clear message when it has no JSON form."""
    try:
        return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY)
    except TypeError:
        pass
    try:  # integers beyond 64 bits and other stdlib-only cases
        return json.dumps(value, ensure_ascii=False).encode()
    except (TypeError, ValueError) as exc:
        raise TypeError(f"return value is not JSON-serialisable ({exc}); "
                        "return dict/list/str/number/bool/None or DFF.RESP") from None


class Runner:
    """Runs tasks one at a time in this child process."""

    def __init__(self, cache: ScriptCache, *, memory_limit_mb: int | None = None,
                 print_sink: Callable[[str], None] | None = None) -> None:
        self.cache = cache
        self.memory_limit_mb = memory_limit_mb
        self.print_sink = print_sink
        self._loop: asyncio.AbstractEventLoop | None = None

    def run(self, message: RunMessage) -> tuple[RunReport, bytes | None]:
        """One ``run`` message → (outcome fields, result JSON bytes or None)."""
        ctx = self.prepare(message)
        capture = PrintCapture(sink=self.print_sink, masks=ctx.masks)
        sdk.task = ctx
        THREAD.start(ctx.task_id, message.get("timeout"))
        saved_stdout = sys.stdout
        sys.stdout = capture
        started = time.time()
        try:
            value = self.invoke(ctx, message.get("kwargs") or {}, message.get("draft"))
            if inspect.isawaitable(value):
                value = self._event_loop().run_until_complete(_awaited(value))
            outcome, result = succeeded(value)
        except Exception as exc:
            outcome, result = self.failed(exc), None
        finally:
            threads_done = THREAD.finish()
            sys.stdout = saved_stdout
            sdk.task = None
        if not threads_done:  # a DFF.THREAD call outlived the task: this process must not
            cast(DoneMessage, outcome)["retire"] = "threads"
        if "draft" in message:  # nothing a draft's code did may outlive its run in this process
            cast(DoneMessage, outcome).setdefault("retire", "draft")
        return ended(outcome, capture, ctx, started), result

    def prepare(self, message: RunMessage) -> sdk.TaskContext:
        """Before a run: drop what a publish or an env change made stale; the run's context."""
        self.cache.set_gen(message.get("gen"), message.get("changed"))
        if envwatch.stale(_env_answers):
            self.cache.drop_modules()
        return _context(message)

    def failed(self, exc: Exception) -> RunReport:
        """The report of a run whose function raised ``exc``."""
        if isinstance(exc, NotExported | ScriptNotFound):
            return {"status": "failure", "exception": describe_exception(exc), "traceback": None}
        if isinstance(exc, MemoryError):
            limit = f" (max_memory_mb={self.memory_limit_mb})" if self.memory_limit_mb else ""
            return {"status": "failure", "memory": True, "traceback": user_traceback(exc),
                    "exception": "MemoryError: the function exceeded the worker child's memory "
                                 f"limit{limit}"}
        return {"status": "failure", "exception": describe_exception(exc),
                "traceback": user_traceback(exc)}

    def invoke(self, ctx: sdk.TaskContext, kwargs: Mapping[str, object], draft: str | None = None) -> Any:
        """Call the task's function (its ``_DFF_*`` globals refreshed): its value, or the
        coroutine of an ``async def``. ``draft``: a draft run, of the draft with that MD5."""
        func = self.resolve(ctx.func_id) if draft is None else self.resolve_draft(ctx.func_id, draft)
        ctx_globals = context_globals(ctx)
        for module in self.cache.reachable(ctx.script_id):  # not all N modules: O(imports)
            module.__dict__.update(ctx_globals)
        return func(**kwargs)

    def resolve(self, func_id: str) -> Callable[..., Any]:
        script_id, name = split_func_id(func_id)
        return _exported(self.cache.module(script_id), func_id, name)

    def resolve_draft(self, func_id: str, md5: str) -> Callable[..., Any]:
        """The function of a draft run, from a module built from its script's draft (which
        the worker hands over only while its MD5 is ``md5``), never the published one."""
        script_id, name = split_func_id(func_id)
        source = sdk._call("script.draft", scriptId=script_id, md5=md5)
        return _exported(self.cache.draft(script_id, str(source)), func_id, name)

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None or self._loop.is_closed():
            self._loop = asyncio.new_event_loop()
        return self._loop


def _exported(module: types.ModuleType, func_id: str, name: str) -> Callable[..., Any]:
    """The ``@DFF.API`` function ``name`` of ``module``; NotExported when there is none."""
    func = module.__dict__.get(name)
    if not callable(func) or sdk.api_config(func) is None:
        raise NotExported(f"{func_id!r} is not an exported function (decorate it with @DFF.API)")
    return func  # type: ignore[no-any-return]


def succeeded(value: Any) -> tuple[RunReport, bytes | None]:
    """The report and result JSON of a function that returned ``value`` (TypeError when it
    has no JSON form)."""
    if isinstance(value, sdk.FuncResponse):
        encode_result(value.data)
        return {"status": "success", "response": value.to_dict()}, None
    return {"status": "success"}, encode_result(value)


def ended(outcome: RunReport, capture: PrintCapture, ctx: sdk.TaskContext, started: float) -> RunReport:
    """``outcome`` completed with the run's print output and times."""
    outcome["printLogs"] = capture.getvalue(ctx.masks)
    outcome["startTime"] = started
    outcome["endTime"] = time.time()
    return outcome


def _env_answers(names: list[str]) -> dict[str, object]:
    """The worker's current answers for env variables (``env.many``)."""
    found = sdk._call("env.many", names=names)
    return found if isinstance(found, dict) else {}


async def _awaited(value: Any) -> Any:
    return await value


class NotExported(Exception):
    """The func id names no ``@DFF.API`` function."""


def _context(message: RunMessage) -> sdk.TaskContext:
    func_id = message["func"]
    return sdk.TaskContext(
        task_id=message["id"],
        func_id=func_id,
        script_id=func_id.partition(".")[0],
        origin=message.get("origin") or "direct",
        origin_id=message.get("originId"),
        trigger_time=message.get("triggerTime"),
        cron_expr=message.get("cronExpr"),
        http_request=message.get("httpRequest"),
        call_chain=list(message.get("callChain") or []),
        trace_id=message.get("traceId"),
        queue=message.get("queue") or "default",
        attempt=int(message.get("attempt") or 1),
        eta=message.get("eta"),
        start_time=time.time(),
    )


def install_finder(cache: ScriptCache) -> ScriptFinder:
    """Put the script finder first on ``sys.meta_path`` and let ``import`` statements of
    scripts record the import graph (:func:`~fluxfunc_worker.modcache.tracking_import`)."""
    finder = ScriptFinder(cache)
    sys.meta_path.insert(0, finder)
    builtins.__import__ = tracking_import(cache)
    return finder
