"""Static analysis of a user script: what ``publish`` learns from the code WITHOUT running it.

The code is compiled (a syntax error is a :class:`ScriptError` naming line and column), then
the module's top-level ``def``/``async def`` decorated with ``@DFF.API(...)`` (or bare
``@DFF.API``) become entries of the func catalogue, in the shape documented in
``docs/internals.md``. Decorator options must be literals; anything else is ignored with a
warning, because evaluating it would mean running user code inside the Server.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from typing import TypedDict

from fluxfunc_common.errors import ScriptError
from fluxfunc_common.models import decorator as api_options

MAX_FUNC_ID = 191  # the store's id column


class ParamRow(TypedDict, total=False):
    """``kwargsSpec`` of one parameter: ``{"required": true}`` or ``{"default": "<source>"}``."""

    required: bool
    default: str


class FuncRow(TypedDict):
    """A func catalogue entry as publish writes it (docs/internals.md); read back as a
    :class:`fluxfunc_common.models.Func`."""

    id: str
    scriptId: str
    scriptSetId: str
    name: str
    title: str
    description: str | None
    definition: str
    args: list[str]
    kwargsSpec: dict[str, ParamRow]
    varKwargs: bool
    isAsync: bool
    extraConfig: dict[str, object]  # FuncOptions in its catalogue names
    category: str | None
    tags: list[str]


@dataclass
class Analysis:
    """The catalogue entries of one script and the warnings met on the way."""

    funcs: list[FuncRow] = field(default_factory=list)
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
    by_name: dict[str, FuncRow] = {}
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
           warnings: list[str]) -> FuncRow:
    options = _options(node.name, decorator, warnings)
    args, spec = _signature(node, warnings)
    title = options.pop("title", None)
    if not isinstance(title, str) or not title:
        title = node.name
    tags = options.pop("tags", None)
    category = options.pop("category", None)
    # no timeout= → null: the deployment's tasks.default_timeout applies (FuncOptions)
    extra: dict[str, object] = {"timeout": None, "expires": None, "cacheResult": None,
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
        "tags": list(tags) if isinstance(tags, list) else [],
    }


def _options(name: str, decorator: ast.expr, warnings: list[str]) -> dict[str, object]:
    """Literal decorator options, normalised; non-literal or ill-typed ones are dropped."""
    if not isinstance(decorator, ast.Call):
        return {}
    raw: list[tuple[str, ast.expr]] = []
    if decorator.args:
        raw.append(("title", decorator.args[0]))
        if len(decorator.args) > 1:
            warnings.append(f"{name}: extra positional arguments of DFF.API ignored")
    raw.extend((kw.arg, kw.value) for kw in decorator.keywords if kw.arg is not None)
    out: dict[str, object] = {}
    for key, node in raw:
        if key in api_options.IGNORED:
            warnings.append(f"{name}: option {key!r} is not supported and was ignored")
            continue
        if key not in api_options.RULES:
            warnings.append(f"{name}: unknown option {key!r} ignored")
            continue
        try:
            value = ast.literal_eval(node)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            warnings.append(f"{name}: option {key!r} is not a literal and was ignored")
            continue
        api_options.check_range(name, key, value)
        problem = api_options.problem(key, value)
        if problem:
            warnings.append(f"{name}: option {key!r} {problem}; ignored")
            continue
        out[api_options.RULES[key].key] = api_options.normalised(name, key, value, warnings)
    return out


def _signature(node: ast.FunctionDef | ast.AsyncFunctionDef,
               warnings: list[str]) -> tuple[list[str], dict[str, ParamRow]]:
    """Names callable by keyword, and which are required / their default's source text."""
    a = node.args
    if a.posonlyargs:
        warnings.append(f"{node.name}: positional-only parameters cannot be passed as kwargs")
    positional = a.posonlyargs + a.args
    defaults: list[ast.expr | None] = [None] * (len(positional) - len(a.defaults)) + list(a.defaults)
    pairs = list(zip(positional, defaults, strict=True))[len(a.posonlyargs):]
    pairs += list(zip(a.kwonlyargs, a.kw_defaults, strict=True))
    spec: dict[str, ParamRow] = {}
    for arg, default in pairs:
        spec[arg.arg] = {"required": True} if default is None else {"default": ast.unparse(default)}
    return list(spec), spec
