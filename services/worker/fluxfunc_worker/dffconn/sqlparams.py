"""DataFlux Func's ``?`` placeholders, bound through the driver (never pasted into the SQL).

``?`` takes one parameter: a scalar becomes one driver placeholder; a list/tuple/set becomes
``%s, %s, …`` (``IN (?)``), a list of lists ``(%s, %s), (%s, %s)`` (multi-row ``VALUES ?``); a
dict becomes ``col = %s, …`` (``SET ?``) with its keys quoted as identifiers. ``??`` takes an
identifier (a table or column name), quoted. ``?`` inside a quoted string (``'…'``, ``"…"``,
backticks) is left alone, and a literal ``%`` is doubled for the driver. Without parameters the
SQL goes to the driver untouched, as in DataFlux Func.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

QuoteIdent = Callable[[str], str]
_QUOTES = "'\"`"


class SqlParamError(ValueError):
    """The SQL and its parameters do not match."""


def mysql_ident(name: str) -> str:
    return "`" + str(name).replace("`", "``") + "`"


def postgresql_ident(name: str) -> str:
    return '"' + str(name).replace('"', '""') + '"'


def _value(param: object, out: list[object], ident: QuoteIdent) -> str:
    if isinstance(param, dict):
        parts = []
        for key, value in param.items():
            out.append(value)
            parts.append(f"{ident(str(key))} = %s")
        return ", ".join(parts)
    if isinstance(param, (list, tuple, set)):
        parts = []
        for item in param:
            if isinstance(item, (list, tuple, set)):
                out.extend(item)
                parts.append("(" + ", ".join(["%s"] * len(item)) + ")")
            else:
                out.append(item)
                parts.append("%s")
        return ", ".join(parts)
    out.append(param)
    return "%s"


def _quoted_end(sql: str, start: int) -> int:
    """The index just past the quoted string opening at ``start``."""
    quote, i = sql[start], start + 1
    while i < len(sql):
        if sql[i] == "\\" and quote != "`":
            i += 2
            continue
        if sql[i] == quote:
            if i + 1 < len(sql) and sql[i + 1] == quote:  # a doubled quote stays inside
                i += 2
                continue
            return i + 1
        i += 1
    return len(sql)


def bind(sql: str, sql_params: object, ident: QuoteIdent) -> tuple[str, list[object] | None]:
    """(driver SQL with ``%s``, its parameters); ``(sql, None)`` without parameters."""
    if sql_params is None or (isinstance(sql_params, (list, tuple)) and not sql_params):
        return sql, None
    params: Sequence[object] = sql_params if isinstance(sql_params, (list, tuple)) else [sql_params]
    out: list[str] = []
    values: list[object] = []
    used, i = 0, 0
    while i < len(sql):
        ch = sql[i]
        if ch in _QUOTES:
            end = _quoted_end(sql, i)
            out.append(sql[i:end].replace("%", "%%"))
            i = end
            continue
        if ch == "?":
            if used >= len(params):
                raise SqlParamError(f"the SQL has more `?` than the {len(params)} sql_params")
            double = sql.startswith("??", i)
            out.append(ident(str(params[used])) if double else _value(params[used], values, ident))
            used, i = used + 1, i + (2 if double else 1)
            continue
        out.append("%%" if ch == "%" else ch)
        i += 1
    if used != len(params):
        raise SqlParamError(f"{len(params)} sql_params for {used} `?` in the SQL")
    return "".join(out), values
