"""The embedded backend's connection layer: one aiosqlite connection in WAL mode.

Every statement goes through one asyncio.Lock: the connection has a single thread anyway, and
the lock keeps a coroutine from reading another's open transaction. Other processes on the same
file wait on ``busy_timeout``; transactions start with ``BEGIN IMMEDIATE`` so they take the
write lock up front instead of failing on upgrade.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sqlite3
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path

import aiosqlite

from fluxfunc_common.clock import Clock
from fluxfunc_common.errors import ConfigError, Unavailable
from fluxfunc_common.settings import StoreSettings
from fluxfunc_common.store.sql import Database, Dialect, Param, Row

BUSY_TIMEOUT_MS = 10_000
# Every connection's settings. WAL with synchronous=NORMAL is the durability level: a commit
# is in the WAL, synced at the next checkpoint (power loss may undo the latest commits).
PRAGMAS = (
    f"busy_timeout = {BUSY_TIMEOUT_MS}", "journal_mode = WAL", "synchronous = NORMAL",
    # 16 MiB of page cache (default 2 MiB): a batch of deletes touches a few thousand index
    # pages across ten indexes; with the default cache SQLite re-reads most of them per batch.
    "cache_size = -16384",
    # The WAL checkpoint interval stays SQLite's (1,000 pages, ~4 MB): a longer one saves the
    # janitor a few fsyncs but widens what a power loss could undo for every writer.
    "journal_size_limit = 67108864",  # the WAL file shrinks back to 64 MiB after a big write
)


class SqliteDialect(Dialect):
    name = "sqlite"

    def upsert(self, table: str, columns: Sequence[str], keys: Sequence[str]) -> str:
        sets = ", ".join(f"{c} = excluded.{c}" for c in columns if c not in keys)
        marks = ", ".join("?" * len(columns))
        return (f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks}) "
                f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET {sets}")

    def insert_ignore(self, table: str, columns: Sequence[str]) -> str:
        marks = ", ".join("?" * len(columns))
        return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks}) ON CONFLICT DO NOTHING"

    def json_number(self, column: str, key: str) -> str:
        return (f"CASE WHEN json_type({column}, '$.{key}') IN ('integer', 'real') "
                f"THEN json_extract({column}, '$.{key}') END")

    def is_duplicate(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.IntegrityError) and "UNIQUE" in str(exc)

    def is_missing_table(self, exc: BaseException) -> bool:
        return isinstance(exc, sqlite3.OperationalError) and "no such table" in str(exc)

    def ddl(self, statement: str) -> str:
        # SQLite spells ``DROP INDEX name ON table`` (the MySQL form migrations use) without ON.
        dropped = re.fullmatch(r"DROP INDEX (\w+) ON \w+", statement.strip(), re.IGNORECASE)
        return f"DROP INDEX IF EXISTS {dropped.group(1)}" if dropped else super().ddl(statement)


class SqliteSession:
    """:class:`~fluxfunc_common.store.sql.Session` over the aiosqlite connection."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self.conn = conn

    async def execute(self, sql: str, params: Sequence[Param] = ()) -> int:
        async with self.conn.execute(sql, tuple(params)) as cur:
            return cur.rowcount

    async def executemany(self, sql: str, rows: Sequence[Sequence[Param]]) -> int:
        async with self.conn.executemany(sql, [tuple(r) for r in rows]) as cur:
            return cur.rowcount

    async def fetchall(self, sql: str, params: Sequence[Param] = ()) -> list[Row]:
        async with self.conn.execute(sql, tuple(params)) as cur:
            return [tuple(r) for r in await cur.fetchall()]


def sqlite_path(url: str) -> str:
    """``sqlite:///./x.db`` → ``./x.db``; ``sqlite:////abs/x.db`` → ``/abs/x.db``."""
    rest = url.removeprefix("sqlite://").split("?", 1)[0]
    path = rest[1:] if rest.startswith("/") else rest
    if not path:
        raise ConfigError(f"store.url {url!r} names no SQLite file (e.g. sqlite:///./fluxfunc.db)")
    return path


class SqliteDatabase(Database):
    """The store's :class:`~fluxfunc_common.store.sql.Database` on a SQLite file."""

    dialect = SqliteDialect()

    def __init__(self, conn: aiosqlite.Connection, path: str, clock: Clock | None = None) -> None:
        super().__init__(f"sqlite:///{path}", clock)
        self._conn = conn
        self._lock = asyncio.Lock()
        self._session = SqliteSession(conn)

    @classmethod
    async def open(cls, settings: StoreSettings, clock: Clock | None = None) -> SqliteDatabase:
        """Open (creating the file and its directory) or raise Unavailable naming the path."""
        path = sqlite_path(settings.url)
        try:
            if path != ":memory:":
                Path(path).parent.mkdir(parents=True, exist_ok=True)
            conn = await aiosqlite.connect(path, isolation_level=None)
        except (OSError, sqlite3.Error) as exc:
            raise Unavailable(f"cannot open SQLite database {path}: {_reason(exc)}") from None
        try:
            for pragma in PRAGMAS:
                await conn.execute(f"PRAGMA {pragma}")
        except sqlite3.Error as exc:
            await conn.close()
            raise Unavailable(f"cannot open SQLite database {path}: {_reason(exc)}") from None
        return cls(conn, path, clock)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[SqliteSession]:
        async with self._lock, self._mapped_errors():
            yield self._session

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[SqliteSession]:
        async with self._lock, self._mapped_errors():
            try:
                await self._session.execute("BEGIN IMMEDIATE")
                yield self._session
                await self._session.execute("COMMIT")
            except BaseException:
                # aiosqlite runs statements in order, so this follows even a cancelled BEGIN.
                with contextlib.suppress(sqlite3.Error):
                    await self._session.execute("ROLLBACK")
                raise

    def migration_session(self) -> contextlib.AbstractAsyncContextManager[SqliteSession]:
        # BEGIN IMMEDIATE makes a second starting process wait; SQLite DDL is transactional.
        return self.transaction()

    @asynccontextmanager
    async def _mapped_errors(self) -> AsyncIterator[None]:
        try:
            yield
        except sqlite3.OperationalError as exc:
            text = str(exc)
            if "locked" in text or "busy" in text or "disk I/O" in text or "unable to open" in text:
                raise Unavailable(f"database unavailable at {self.where}: {text}") from None
            raise

    async def ping(self) -> None:
        try:
            async with self.session() as s:
                await s.fetchall("SELECT 1")
        except (sqlite3.Error, ValueError) as exc:  # ValueError: connection already closed
            raise Unavailable(f"database unreachable at {self.where}: {_reason(exc)}") from None

    async def close(self) -> None:
        await self._conn.close()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__
