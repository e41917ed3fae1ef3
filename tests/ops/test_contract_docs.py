"""The contract pages of docs/ cover what the code relies on: every Redis key and Lua script
(docs/redis-protocol.md), every table and column of the migrations (docs/store-schema.md) and
every setting with its default and environment variable (docs/configuration.md)."""

from __future__ import annotations

import inspect
import re
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Union, get_args, get_origin

from pydantic import BaseModel

from fluxfunc_common.keys import Keys
from fluxfunc_common.settings import ENV_PREFIX, Section, Settings

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
COMMON = ROOT / "libs" / "common" / "fluxfunc_common"
# Keys methods that do not name one key: a reverse lookup, scan patterns, a prefix.
NOT_KEYS = {"queue_name", "queue_pattern", "svc_pattern", "cache_prefix"}
PLACEHOLDER = re.compile(r"\{[^}]*\}")


def _shape(key: str) -> str:
    """A key name with every ``{placeholder}`` reduced to ``{}``."""
    return PLACEHOLDER.sub("{}", key)


def _key_names() -> dict[str, str]:
    """Method → key name with its arguments as placeholders, under namespace ``{ns}``."""
    keys = Keys("{ns}")
    out = {}
    for name, method in inspect.getmembers(keys, inspect.ismethod):
        if name.startswith("_") or name in NOT_KEYS:
            continue
        params = inspect.signature(method).parameters
        out[name] = method(*(f"{{{p}}}" for p in params))
    return out


def test_every_redis_key_is_documented() -> None:
    text = (DOCS / "redis-protocol.md").read_text()
    documented = {_shape(k) for k in re.findall(r"`(\{ns\}:[^`]*)`", text)}
    names = _key_names()
    assert len(names) > 25
    missing = {m: k for m, k in names.items() if _shape(k) not in documented}
    assert not missing, f"keys missing from docs/redis-protocol.md: {missing}"


def test_every_lua_script_is_documented() -> None:
    text = (DOCS / "redis-protocol.md").read_text()
    scripts = [p.stem for p in (COMMON / "lua").glob("*.lua") if p.stem != "_prelude"]
    assert len(scripts) > 10
    missing = [s for s in scripts if f"`{s}`" not in text]
    assert not missing, f"Lua scripts missing from docs/redis-protocol.md: {missing}"


def test_every_table_and_column_is_documented() -> None:
    text = (DOCS / "store-schema.md").read_text()
    sql = "\n".join(p.read_text() for p in sorted((COMMON / "store" / "migrations").glob("*.sql")))
    tables = re.findall(r"CREATE TABLE IF NOT EXISTS (\w+) \((.*?)\n\);", sql, flags=re.S)
    assert len(tables) > 8
    missing = []
    for table, body in tables:
        if f"`{table}`" not in text and f"## {table}" not in text:
            missing.append(table)
        columns = re.findall(r"^\s+(\w+) [A-Z]", body, flags=re.M)
        missing += [f"{table}.{c}" for c in columns if c != "PRIMARY" and f"`{c}`" not in text]
    assert not missing, f"missing from docs/store-schema.md: {missing}"


def _section_model(annotation: object) -> type[BaseModel] | None:
    """The settings section an annotation holds (also through ``X | None``)."""
    candidates = get_args(annotation) if get_origin(annotation) in (Union, types.UnionType) else (annotation,)
    for c in candidates:
        if isinstance(c, type) and issubclass(c, Section):
            return c
    return None


def _leaves(model: type[BaseModel], path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], object]]:
    """(path, default) of every setting; the default is ``...`` for a required one."""
    for name, info in model.model_fields.items():
        section = _section_model(info.annotation)
        if section is not None:
            yield from _leaves(section, (*path, name))
        elif info.is_required():
            yield (*path, name), ...
        else:
            yield (*path, name), info.get_default(call_default_factory=True)


def _render(value: object) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return "[" + ", ".join(map(str, value)) + "]"
    return str(value)


def test_every_setting_is_documented_with_its_default() -> None:
    rows = {}
    for line in (DOCS / "configuration.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 4 and cells[2].startswith(f"`{ENV_PREFIX}"):
            rows[cells[2].strip("`")] = cells[1].replace("`", "")
    leaves = list(_leaves(Settings))
    assert len(leaves) > 40
    problems = []
    for path, default in leaves:
        env = ENV_PREFIX + "__".join(path).upper()
        if env not in rows:
            problems.append(f"{'.'.join(path)}: no row with {env}")
        elif default is not ... and not rows[env].startswith(_render(default)):
            problems.append(f"{'.'.join(path)}: default documented {rows[env]!r}, is {_render(default)!r}")
    assert not problems, "docs/configuration.md: " + "; ".join(problems)
