"""The connection layer every part of the store shares.

A backend (``sqlite.py``, ``mysql.py``) is a :class:`Database`: its connection or pool, a
:class:`Dialect` (the few spellings that differ: upsert, table options, row locks, how its
driver reports a duplicate key) and three async context managers that yield a
:class:`Session`: ``session()`` (autocommit statements), ``transaction()`` and
``migration_session()`` (a transaction or a lock that two starting processes queue on). The
parts of the store (``entities.py``, ``kv.py``, …) are :class:`SqlPart` subclasses that hold the
one :class:`Database`. All SQL uses ``?`` placeholders; the MySQL session rewrites them to ``%s``.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

import orjson

from fluxfunc_common.clock import Clock, SystemClock
from fluxfunc_common.errors import BadRequest

Row = tuple[Any, ...]  # one result row as the driver returns it
Param = str | int | float | bytes | None  # one ``?`` parameter


class Session(Protocol):
    """One connection's worth of statements (``?`` placeholders)."""

    async def execute(self, sql: str, params: Sequence[Param] = ()) -> int:
        """Run a statement; the affected row count."""
        ...

    async def executemany(self, sql: str, rows: Sequence[Sequence[Param]]) -> int:
        """Run a statement once per row (MySQL: one multi-row INSERT)."""
        ...

    async def fetchall(self, sql: str, params: Sequence[Param] = ()) -> list[Row]:
        """Run a query; all its rows."""
        ...


class Dialect:
    """What differs between SQLite and MySQL/MariaDB."""

    name = "sql"
    table_options = ""
    for_update = ""

    def upsert(self, table: str, columns: Sequence[str], keys: Sequence[str]) -> str:
        """INSERT that replaces the non-key columns of an existing row."""
        raise NotImplementedError

    def insert_ignore(self, table: str, columns: Sequence[str]) -> str:
        """INSERT that silently leaves an existing row (same unique key) as it is."""
        raise NotImplementedError

    def is_duplicate(self, exc: BaseException) -> bool:
        """Whether ``exc`` is a unique/primary key violation."""
        raise NotImplementedError

    def is_missing_table(self, exc: BaseException) -> bool:
        """Whether ``exc`` says a table does not exist."""
        raise NotImplementedError

    def is_existing_object(self, exc: BaseException) -> bool:
        """Whether ``exc`` says a table/index already exists (a re-run of a half-applied DDL)."""
        return False

    def json_number(self, column: str, key: str) -> str:
        """An expression: the number under top-level ``key`` of the JSON text in ``column``,
        NULL when absent or not a number."""
        raise NotImplementedError

    def ddl(self, statement: str) -> str:
        """A migration statement as this backend runs it (table options appended)."""
        if self.table_options and statement.upper().startswith("CREATE TABLE"):
            return f"{statement} {self.table_options}"
        return statement


class Database(ABC):
    """One backend's connection (or pool) and dialect, shared by every part of the store."""

    dialect: Dialect

    def __init__(self, where: str, clock: Clock | None = None) -> None:
        self.where = where  # the database, for messages (never with a password)
        self.clock: Clock = clock or SystemClock()

    @abstractmethod
    def session(self) -> AbstractAsyncContextManager[Session]:
        """Autocommit statements on one connection."""

    @abstractmethod
    def transaction(self) -> AbstractAsyncContextManager[Session]:
        """Statements in one transaction (committed on exit, rolled back on error)."""

    @abstractmethod
    def migration_session(self) -> AbstractAsyncContextManager[Session]:
        """A session only one process at a time holds (for ``migrate``)."""

    @abstractmethod
    async def ping(self) -> None:
        """Raise :class:`~fluxfunc_common.errors.Unavailable` when the database is unreachable."""

    @abstractmethod
    async def close(self) -> None:
        """Close the pool/connection."""


class SqlPart:
    """Base of the store's parts: statements over the shared :class:`Database`."""

    def __init__(self, db: Database) -> None:
        self.db = db

    @property
    def clock(self) -> Clock:
        """The database's clock (settable: tests move time for every part at once)."""
        return self.db.clock

    @clock.setter
    def clock(self, clock: Clock) -> None:
        self.db.clock = clock

    @property
    def dialect(self) -> Dialect:
        return self.db.dialect

    @property
    def where(self) -> str:
        return self.db.where


def dumps(value: object) -> str:
    """Compact JSON text (``default=str`` for anything unusual)."""
    try:
        return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:  # e.g. integers beyond 64 bits
        return json.dumps(value, separators=(",", ":"), default=str, ensure_ascii=False)


def loads(text: str | bytes) -> Any:
    """Parse JSON text from a ``data``/``value_json`` column (the caller knows its shape)."""
    return orjson.loads(text)


def column(field: str) -> str:
    """camelCase field → snake_case column (``scriptSetId`` → ``script_set_id``)."""
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in field)


def where_clause(conditions: Sequence[str]) -> str:
    """`` WHERE a AND b`` (empty without conditions)."""
    return f" WHERE {' AND '.join(conditions)}" if conditions else ""


def equality_filters(
    filters: Mapping[str, object], allowed: Sequence[str], what: str
) -> tuple[list[str], list[Param]]:
    """``column = ?`` (``IS NULL`` for None) per camelCase field; BadRequest for another field."""
    where: list[str] = []
    params: list[Param] = []
    for key, value in filters.items():
        if key not in allowed:
            raise BadRequest(f"cannot filter {what}s by {key!r} (only {', '.join(allowed)})")
        if value is None:
            where.append(f"{column(key)} IS NULL")
        else:
            where.append(f"{column(key)} = ?")
            params.append(str(value))
    return where, params
