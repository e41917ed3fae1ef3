"""Static analysis of a user script: what ``publish`` learns from the code WITHOUT running it.

The code is compiled (a syntax error is a :class:`ScriptError` naming line and column), then
the module's top-level ``def``/``async def`` decorated with ``@DFF.API(...)`` (or bare
``@DFF.API``) become entries of the func catalogue, in the shape documented in
``docs/internals.md``. Decorator options must be literals; anything else is ignored with a
warning, because evaluating it would mean running user code inside the Server.
"""

from __future__ import annotations

import ast
import math
from dataclasses import dataclass, field
from typing import Any

from fluxfunc_common.errors import ScriptError

DEFAULT_TIMEOUT = 30
MAX_SECONDS = 366 * 86_400  # the longest timeout, expires or cache_result a func may ask for
_SECONDS = frozenset({"timeout", "api_timeout", "expires", "cache_result"})
MAX_FUNC_ID = 191  # the store's id column

# DataFlux Func spellings → catalogue keys.
_EXTRA_KEYS = {
    "timeout": "timeout",
    "api_timeout": "timeout",
    "expires": "expires",
    "cache_result": "cacheResult",
    "queue": "queue",
    "fixed_cron_expr": "fixedCronExpr",
    "fixed_crontab": "fixedCronExpr",
    "delayed_crontab": "delayedCronExpr",
    "delayed_cron_job": "delayedCronExpr",
    "retries": "retries",
    "is_hidden": "isHidden",
}
_IGNORED = frozenset({"integration", "integration_config"})


@dataclass
class Analysis:
    """The catalogue entries of one script and the warnings met on the way."""

    funcs: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def script_set_id(script_id: str) -> str:
    """``demo__basic`` → ``demo``."""
    return script_id.split("__", 1)[0]


def check_syntax(script_id: str, code: str) -> ast.Module:
    """Compile ``code``; a SyntaxError becomes a 400 ScriptError with line/column."""
    try:
        compile(code, script_id, "exec", dont_inherit=True)
        return ast.parse(code, filename=script_id)
    except SyntaxError as exc:
        detail = {"line": exc.lineno, "col": exc.offset, "message": exc.msg,
                  "text": (exc.text or "").rstrip("\n") or None}
        raise ScriptError(f"{script_id}: syntax error at line {exc.lineno}: {exc.msg}",
                          detail) from None
    except ValueError as exc:  # e.g. source code containing NUL bytes
        raise ScriptError(f"{script_id}: cannot compile: {exc}") from None
    except (RecursionError, MemoryError):  # pathological nesting, e.g. 100 000 unary minuses
        raise ScriptError(f"{script_id}: cannot compile: the code nests too deeply") from None


def analyse(script_id: str, code: str) -> Analysis:
    """The ``@DFF.API`` functions of ``code`` as func catalogue entries (definition order)."""
    tree = check_syntax(script_id, code)
    out = Analysis()
    by_name: dict[str, dict[str, Any]] = {}
    for node in tree.body:
        if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        decorator = _api_decorator(node)
        if decorator is None:
            by_name.pop(node.name, None)  # a later plain def shadows an exported one
            continue
        if len(f"{script_id}.{node.name}") > MAX_FUNC_ID:
            raise ScriptError(f"{node.name}: func id longer than {MAX_FUNC_ID} characters")
        if node.name in by_name:
            out.warnings.append(f"{node.name}: defined twice, the last definition wins")
            del by_name[node.name]
        by_name[node.name] = _entry(script_id, node, decorator, out.warnings)
    out.funcs = list(by_name.values())
    return out


def _api_decorator(node: ast.FunctionDef | ast.AsyncFunctionDef) -> ast.expr | None:
    """The ``DFF.API`` / ``DFF.API(...)`` decorator of a function (or DataFlux Func's
    lower-case alias ``DFF.api``), if any."""
    for dec in node.decorator_list:
        target = dec.func if isinstance(dec, ast.Call) else dec
        if (isinstance(target, ast.Attribute) and target.attr in ("API", "api")
                and isinstance(target.value, ast.Name) and target.value.id == "DFF"):
            return dec
    return None


def _entry(script_id: str, node: ast.FunctionDef | ast.AsyncFunctionDef, decorator: ast.expr,
           warnings: list[str]) -> dict[str, Any]:
    options = _options(node.name, decorator, warnings)
    args, spec = _signature(node, warnings)
    title = options.pop("title", None)
    if not isinstance(title, str) or not title:
        title = node.name
    tags = options.pop("tags", None)
    category = options.pop("category", None)
    extra: dict[str, Any] = {"timeout": DEFAULT_TIMEOUT, "expires": None, "cacheResult": None,
                             "queue": None, "fixedCronExpr": None, "retries": 0}
    extra.update(options)
    return {
        "id": f"{script_id}.{node.name}",
        "scriptId": script_id,
        "scriptSetId": script_set_id(script_id),
        "name": node.name,
        "title": title,
        "description": ast.get_docstring(node),
        "definition": f"{node.name}({ast.unparse(node.args)})",
        "args": args,
        "kwargsSpec": spec,
        "varKwargs": node.args.kwarg is not None,
        "isAsync": isinstance(node, ast.AsyncFunctionDef),
        "extraConfig": extra,
        "category": category if isinstance(category, str) else None,
        "tags": tags or [],
    }


def _options(name: str, decorator: ast.expr, warnings: list[str]) -> dict[str, Any]:
    """Literal decorator options, normalised; non-literal or ill-typed ones are dropped."""
    if not isinstance(decorator, ast.Call):
        return {}
    raw: list[tuple[str, ast.expr]] = []
    if decorator.args:
        raw.append(("title", decorator.args[0]))
        if len(decorator.args) > 1:
            warnings.append(f"{name}: extra positional arguments of DFF.API ignored")
    raw.extend((kw.arg, kw.value) for kw in decorator.keywords if kw.arg is not None)
    out: dict[str, Any] = {}
    for key, node in raw:
        if key in _IGNORED:
            warnings.append(f"{name}: option {key!r} is not supported and was ignored")
            continue
        if key not in _EXTRA_KEYS and key not in ("title", "category", "tags"):
            warnings.append(f"{name}: unknown option {key!r} ignored")
            continue
        try:
            value = ast.literal_eval(node)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            warnings.append(f"{name}: option {key!r} is not a literal and was ignored")
            continue
        _check_range(name, key, value)
        problem = _check_option(key, value)
        if problem:
            warnings.append(f"{name}: option {key!r} {problem}; ignored")
            continue
        out[_EXTRA_KEYS.get(key, key)] = _normalise(key, value, name, warnings)
    return out


def _check_range(name: str, key: str, value: Any) -> None:
    """A duration beyond :data:`MAX_SECONDS` (or not finite) cannot be a wish: the publish is
    refused (400) rather than the func failing on its first call."""
    if key not in _SECONDS or not isinstance(value, int | float) or isinstance(value, bool):
        return
    if not math.isfinite(value) or value > MAX_SECONDS:
        raise ScriptError(f"{name}: option {key!r} = {value!r} is out of range (at most "
                          f"{MAX_SECONDS} seconds, 366 days)", {"func": name, "option": key})


def _check_option(key: str, value: Any) -> str | None:
    """Why ``value`` is not acceptable for ``key`` (None when it is)."""
    if value is None:
        return None if key not in ("retries",) else "must be an integer"
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if key in ("timeout", "api_timeout", "expires", "cache_result") and not (number and value > 0):
        return "must be a positive number"
    if key == "retries" and not (isinstance(value, int) and not isinstance(value, bool) and value >= 0):
        return "must be a non-negative integer"
    if key in ("title", "category", "fixed_cron_expr", "fixed_crontab") and not isinstance(value, str):
        return "must be a string"
    if key == "queue" and not (isinstance(value, str) and value) and not (
            isinstance(value, int) and not isinstance(value, bool)):
        return "must be a queue name"
    if key == "tags" and not (isinstance(value, list | tuple) and all(isinstance(t, str) for t in value)):
        return "must be a list of strings"
    if key in ("delayed_crontab", "delayed_cron_job") and not (
            isinstance(value, list | tuple) and all(isinstance(v, int) and v >= 0 for v in value)):
        return "must be a list of non-negative integer seconds"
    if key == "is_hidden" and not isinstance(value, bool):
        return "must be a boolean"
    return None


def _normalise(key: str, value: Any, name: str, warnings: list[str]) -> Any:
    if key == "queue" and isinstance(value, int):
        warnings.append(f"{name}: numbered queue {value} becomes queue name {str(value)!r}; "
                        "a worker must listen on it")
        return str(value)
    if key in ("fixed_cron_expr", "fixed_crontab") and value is not None:
        _check_cron(name, value)
    if isinstance(value, tuple):
        return list(value)
    return value


def _check_cron(name: str, expr: str) -> None:
    """A bad ``fixed_cron_expr`` would never fire: refuse the publish instead."""
    from fluxfunc_common import schedule

    try:
        schedule.validate(expr)
    except schedule.ScheduleError as exc:
        raise ScriptError(f"{name}: invalid fixed_cron_expr: {exc.message}",
                          {"func": name, "fixedCronExpr": expr}) from None


def _signature(node: ast.FunctionDef | ast.AsyncFunctionDef,
               warnings: list[str]) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """Names callable by keyword, and which are required / their default's source text."""
    a = node.args
    if a.posonlyargs:
        warnings.append(f"{node.name}: positional-only parameters cannot be passed as kwargs")
    positional = a.posonlyargs + a.args
    defaults: list[ast.expr | None] = [None] * (len(positional) - len(a.defaults)) + list(a.defaults)
    pairs = list(zip(positional, defaults, strict=True))[len(a.posonlyargs):]
    pairs += list(zip(a.kwonlyargs, a.kw_defaults, strict=True))
    spec: dict[str, dict[str, Any]] = {}
    for arg, default in pairs:
        spec[arg.arg] = {"required": True} if default is None else {"default": ast.unparse(default)}
    return list(spec), spec
