"""The script runtime inside a worker child: load published scripts, run one task, and turn
what happened into an outcome the parent can complete.

* Scripts are compiled once per child and cached by publish version; the module objects
  built from them live until the parent reports a new publish generation (``gen``), then
  every module is rebuilt from the (still cached) code objects, so a script that imports
  another never keeps a stale copy of it.
* ``import demo__lib`` goes through :class:`ScriptFinder`, which loads published code the
  same way.
* Each module keeps its namespace between tasks (like a Celery or arq worker process); the
  ``_DFF_*`` context globals are refreshed before every run.
* ``print`` is captured per task (:class:`PrintCapture`), tracebacks show the user's frames
  only (file names like ``<demo__basic>``).

Imported by the child process only: standard library, orjson and the sdk.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.abc
import importlib.machinery
import inspect
import json
import linecache
import re
import sys
import time
import traceback
import types
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from fluxfunc_worker import sdk

SCRIPT_NAME = re.compile(r"^[A-Za-z0-9_]+__[A-Za-z0-9_]+$")
MAX_PRINT_LINES = 1000
MAX_PRINT_BYTES = 64 * 1024
MAX_LINE_CHARS = 3000

CodeFetcher = Callable[[str], "tuple[str, int] | None"]


class ScriptNotFound(Exception):
    """The script has never been published."""


def split_func_id(func_id: str) -> tuple[str, str]:
    """``demo__basic.plus`` → (``demo__basic``, ``plus``)."""
    script_id, sep, name = func_id.partition(".")
    if not sep or not name or not SCRIPT_NAME.match(script_id):
        raise ValueError(f"invalid func id {func_id!r} (expected <set>__<script>.<function>)")
    return script_id, name


def script_filename(script_id: str) -> str:
    return f"<{script_id}>"


class ScriptCache:
    """Compiled code by (script id, publish version); live modules for the current gen."""

    def __init__(self, fetch: CodeFetcher) -> None:
        self._fetch = fetch
        self._code: dict[str, tuple[int, types.CodeType]] = {}
        self._modules: dict[str, types.ModuleType] = {}
        self._loading: set[str] = set()
        self.gen: int | None = None

    def set_gen(self, gen: int | None) -> None:
        """A new publish generation: forget the modules (code objects stay cached)."""
        if gen != self.gen:
            self.gen = gen
            self.drop_modules()

    def drop_modules(self) -> None:
        for name in self._modules:
            sys.modules.pop(name, None)
        self._modules.clear()

    @property
    def modules(self) -> dict[str, types.ModuleType]:
        return self._modules

    def module(self, script_id: str) -> types.ModuleType:
        """The live module of a script, executing its code on first use in this gen."""
        found = self._modules.get(script_id)
        if found is not None:
            return found
        if script_id in self._loading:
            raise ImportError(f"circular import of script {script_id!r}")
        code = self._compiled(script_id)
        module = types.ModuleType(script_id)
        module.__file__ = script_filename(script_id)
        module.__dict__["DFF"] = sdk.DFFApi(script_id)
        if sdk.task is not None:
            module.__dict__.update(context_globals(sdk.task))
        self._loading.add(script_id)
        sys.modules[script_id] = module
        try:
            exec(code, module.__dict__)
        except BaseException:
            sys.modules.pop(script_id, None)
            raise
        finally:
            self._loading.discard(script_id)
        self._modules[script_id] = module
        return module

    def _compiled(self, script_id: str) -> types.CodeType:
        fetched = self._fetch(script_id)
        if fetched is None:
            raise ScriptNotFound(f"script {script_id!r} is not published")
        source, version = fetched
        cached = self._code.get(script_id)
        if cached is not None and cached[0] == version:
            return cached[1]
        filename = script_filename(script_id)
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        code = compile(source, filename, "exec", dont_inherit=True)
        self._code[script_id] = (version, code)
        return code


class ScriptFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """``import demo__lib``: names shaped like a script id load published scripts."""

    def __init__(self, cache: ScriptCache) -> None:
        self.cache = cache

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if path is not None or not SCRIPT_NAME.match(fullname):
            return None
        return importlib.machinery.ModuleSpec(fullname, self, origin=script_filename(fullname))

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        try:
            return self.cache.module(spec.name)
        except ScriptNotFound as exc:
            raise ModuleNotFoundError(str(exc), name=spec.name) from None

    def exec_module(self, module: types.ModuleType) -> None:
        """Already executed by create_module (through the cache)."""


def context_globals(ctx: sdk.TaskContext) -> dict[str, Any]:
    """The ``_DFF_*`` globals of one run (as DataFlux Func names them: the root task of a
    ``DFF.FUNC`` child is the task that called it, ``"ROOT"`` otherwise; there are no delayed
    cron fires nor a debugger, so ``_DFF_CRON_JOB_DELAY`` is 0 and ``_DFF_DEBUG`` False)."""
    cron_mode = "cronJob" if ctx.origin == "cronJob" else None
    delay = max(0.0, ctx.eta - ctx.trigger_time) if ctx.eta and ctx.trigger_time else 0
    return {
        "_DFF_DEBUG": False,
        "_DFF_ROOT_TASK_ID": (ctx.origin_id or "ROOT") if ctx.origin == "child" else "ROOT",
        "_DFF_START_TIME": int(ctx.start_time),
        "_DFF_START_TIME_MS": int(ctx.start_time * 1000),
        "_DFF_ETA": ctx.eta,
        "_DFF_DELAY": delay,
        "_DFF_CRON_JOB_DELAY": 0,
        "_DFF_CRON_JOB_EXEC_MODE": cron_mode,
        "_DFF_CRONTAB": ctx.cron_expr,
        "_DFF_CRONTAB_DELAY": 0,
        "_DFF_CRONTAB_EXEC_MODE": cron_mode,
        "_DFF_TASK_ID": ctx.task_id,
        "_DFF_FUNC_ID": ctx.func_id,
        "_DFF_SCRIPT_ID": ctx.script_id,
        "_DFF_SCRIPT_SET_ID": ctx.script_id.split("__", 1)[0],
        "_DFF_FUNC_NAME": ctx.func_id.partition(".")[2],
        "_DFF_FUNC_CHAIN": [*ctx.call_chain, ctx.func_id],
        "_DFF_ORIGIN": ctx.origin,
        "_DFF_ORIGIN_ID": ctx.origin_id,
        "_DFF_TRIGGER_TIME": ctx.trigger_time,
        "_DFF_TRIGGER_TIME_MS": int(ctx.trigger_time * 1000) if ctx.trigger_time else None,
        "_DFF_CRON_EXPR": ctx.cron_expr,
        "_DFF_HTTP_REQUEST": ctx.http_request,
        "_DFF_QUEUE": ctx.queue,
        "_DFF_ATTEMPT": ctx.attempt,
    }


class PrintCapture:
    """``sys.stdout`` during a run: keeps the first lines up to the line and byte limits.

    With a ``sink``, every complete line kept is also handed to it as it is printed (masked):
    the worker keeps them, so the output survives a child that dies in the middle of a task."""

    def __init__(self, max_lines: int = MAX_PRINT_LINES, max_bytes: int = MAX_PRINT_BYTES, *,
                 sink: Callable[[str], None] | None = None, masks: set[str] | None = None) -> None:
        self.max_lines = max_lines
        self.max_bytes = max_bytes
        self._parts: list[str] = []
        self._lines = 0
        self._bytes = 0
        self.truncated = False
        self._sink = sink
        self._masks = masks or set()
        self._unsent = 0  # index of the first part not handed to the sink yet

    def write(self, text: str) -> int:
        if self.truncated or not text:
            return len(text)
        newlines = text.count("\n")
        size = len(text.encode("utf-8", "replace"))
        full = self._lines >= self.max_lines  # every allowed line is complete: nothing more
        if full or self._lines + newlines > self.max_lines or self._bytes + size > self.max_bytes:
            self._take_part(text)
            self.truncated = True
            return len(text)
        self._parts.append(text)
        self._lines += newlines
        self._bytes += size
        if newlines and self._sink is not None:
            self._send()
        return len(text)

    def _send(self) -> None:
        """Hand the parts since the last send to the sink (print writes a line in two parts)."""
        text = "".join(self._parts[self._unsent:])
        self._unsent = len(self._parts)
        for secret in self._masks:
            text = text.replace(secret, "*****")
        if self._sink is not None:
            with contextlib.suppress(Exception):  # the output stays in the result anyway
                self._sink(text)

    def _take_part(self, text: str) -> None:
        room_lines = self.max_lines - self._lines
        room_bytes = self.max_bytes - self._bytes
        kept = "".join(text.splitlines(True)[:room_lines])
        kept = kept.encode("utf-8", "replace")[: max(room_bytes, 0)].decode("utf-8", "ignore")
        self._parts.append(kept)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    def getvalue(self, masks: set[str] | None = None) -> str | None:
        text = "".join(self._parts)
        if not text and not self.truncated:
            return None
        lines = [ln if len(ln) <= MAX_LINE_CHARS else ln[:MAX_LINE_CHARS] + "…" for ln in text.split("\n")]
        text = "\n".join(lines)
        for secret in masks or ():
            text = text.replace(secret, "*****")
        if self.truncated:
            text += f"\n… print output truncated (limit {self.max_lines} lines / {self.max_bytes} bytes)"
        return text


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

    def run(self, message: dict[str, Any]) -> tuple[dict[str, Any], bytes | None]:
        """One ``run`` message → (outcome fields, result JSON bytes or None)."""
        self.cache.set_gen(message.get("gen"))
        ctx = _context(message)
        capture = PrintCapture(sink=self.print_sink, masks=ctx.masks)
        sdk.task = ctx
        saved_stdout = sys.stdout
        sys.stdout = capture
        started = time.time()
        outcome: dict[str, Any]
        result: bytes | None = None
        try:
            value = self._call(ctx, message.get("kwargs") or {})
            if isinstance(value, sdk.FuncResponse):
                outcome = {"status": "success", "response": value.to_dict()}
                encode_result(value.data)
            else:
                result = encode_result(value)
                outcome = {"status": "success"}
        except (NotExported, ScriptNotFound) as exc:
            outcome = {"status": "failure", "exception": describe_exception(exc), "traceback": None}
        except MemoryError as exc:
            limit = f" (max_memory_mb={self.memory_limit_mb})" if self.memory_limit_mb else ""
            outcome = {"status": "failure", "memory": True, "traceback": user_traceback(exc),
                       "exception": "MemoryError: the function exceeded the worker child's memory "
                                    f"limit{limit}"}
        except Exception as exc:
            outcome = {"status": "failure", "exception": describe_exception(exc),
                       "traceback": user_traceback(exc)}
        finally:
            sys.stdout = saved_stdout
            sdk.task = None
        outcome["printLogs"] = capture.getvalue(ctx.masks)
        outcome["startTime"] = started
        outcome["endTime"] = time.time()
        return outcome, result

    def _call(self, ctx: sdk.TaskContext, kwargs: dict[str, Any]) -> Any:
        func = self.resolve(ctx.func_id)
        ctx_globals = context_globals(ctx)
        for module in self.cache.modules.values():
            module.__dict__.update(ctx_globals)
        value = func(**kwargs)
        if inspect.isawaitable(value):
            value = self._event_loop().run_until_complete(_awaited(value))
        return value

    def resolve(self, func_id: str) -> Callable[..., Any]:
        script_id, name = split_func_id(func_id)
        module = self.cache.module(script_id)
        func = module.__dict__.get(name)
        if not callable(func) or sdk.api_config(func) is None:
            raise NotExported(f"{func_id!r} is not an exported function (decorate it with @DFF.API)")
        return func  # type: ignore[no-any-return]

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None or self._loop.is_closed():
            self._loop = asyncio.new_event_loop()
        return self._loop


async def _awaited(value: Any) -> Any:
    return await value


class NotExported(Exception):
    """The func id names no ``@DFF.API`` function."""


def _context(message: dict[str, Any]) -> sdk.TaskContext:
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
    """Put the script finder first on ``sys.meta_path``."""
    finder = ScriptFinder(cache)
    sys.meta_path.insert(0, finder)
    return finder
