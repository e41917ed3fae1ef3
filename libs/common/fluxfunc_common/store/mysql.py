"""The production backend's connection layer: an aiomysql pool on MySQL or MariaDB (utf8mb4, autocommit).

Connection-level failures (server gone, refused, lost mid-query, deadlock, lock wait timeout)
surface as :class:`~fluxfunc_common.errors.Unavailable` naming the server without the password.
``migrate`` holds ``GET_LOCK`` for the database so two services starting at once apply each
migration once.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import lru_cache
from urllib.parse import unquote, urlsplit

import aiomysql
import pymysql

from fluxfunc_common.clock import Clock
from fluxfunc_common.errors import ConfigError, Unavailable
from fluxfunc_common.settings import StoreSettings
from fluxfunc_common.store.sql import Database, Dialect, Param, Row

CONNECT_TIMEOUT = 10
MIGRATE_LOCK_SECONDS = 120
# Server gone/refused/lost, too many connections, lock wait timeout, deadlock.
RETRYABLE_CODES = frozenset({1040, 1205, 1213, 2002, 2003, 2005, 2006, 2013, 2055})


class MysqlDialect(Dialect):
    name = "mysql"
    table_options = "ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin"
    for_update = " FOR UPDATE"

    def upsert(self, table: str, columns: Sequence[str], keys: Sequence[str]) -> str:
        # VALUES(col) works on MariaDB and MySQL (deprecated, not removed, in MySQL 8).
        sets = ", ".join(f"{c} = VALUES({c})" for c in columns if c not in keys)
        marks = ", ".join("?" * len(columns))
        return (f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks}) "
                f"ON DUPLICATE KEY UPDATE {sets}")

    def insert_ignore(self, table: str, columns: Sequence[str]) -> str:
        # ON DUPLICATE KEY UPDATE <key> = <key> ignores only duplicates (INSERT IGNORE would
        # also hide other errors); pymysql still sends executemany as one multi-row INSERT.
        marks = ", ".join("?" * len(columns))
        return (f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks}) "
                f"ON DUPLICATE KEY UPDATE {columns[0]} = {columns[0]}")

    def json_number(self, column: str, key: str) -> str:
        value = f"JSON_EXTRACT({column}, '$.{key}')"
        return f"CASE WHEN JSON_TYPE({value}) IN ('INTEGER', 'DOUBLE') THEN {value} + 0 END"

    def is_duplicate(self, exc: BaseException) -> bool:
        return isinstance(exc, pymysql.err.IntegrityError) and _code(exc) == 1062

    def is_missing_table(self, exc: BaseException) -> bool:
        return isinstance(exc, pymysql.err.MySQLError) and _code(exc) == 1146

    def is_existing_object(self, exc: BaseException) -> bool:
        # 1050 table exists, 1060 duplicate column, 1061 duplicate key name, 1091 already dropped.
        return isinstance(exc, pymysql.err.MySQLError) and _code(exc) in (1050, 1060, 1061, 1091)


def _code(exc: BaseException) -> int | None:
    return exc.args[0] if exc.args and isinstance(exc.args[0], int) else None


@lru_cache(maxsize=512)
def to_format_style(sql: str) -> str:
    """``?`` placeholders → ``%s`` (the store's SQL holds no literal ``?`` or ``%``)."""
    return sql.replace("?", "%s")


class MysqlSession:
    """:class:`~fluxfunc_common.store.sql.Session` over one pooled connection."""

    def __init__(self, conn: aiomysql.Connection) -> None:
        self.conn = conn

    async def execute(self, sql: str, params: Sequence[Param] = ()) -> int:
        async with self.conn.cursor() as cur:
            return int(await cur.execute(to_format_style(sql), tuple(params)))

    async def executemany(self, sql: str, rows: Sequence[Sequence[Param]]) -> int:
        async with self.conn.cursor() as cur:
            return int(await cur.executemany(to_format_style(sql), [tuple(r) for r in rows]) or 0)

    async def fetchall(self, sql: str, params: Sequence[Param] = ()) -> list[Row]:
        async with self.conn.cursor() as cur:
            await cur.execute(to_format_style(sql), tuple(params))
            return [tuple(r) for r in await cur.fetchall()]


@dataclass(frozen=True)
class MysqlTarget:
    """Where to connect, parsed from ``mysql://user:pass@host:3306/db``."""

    host: str
    port: int
    user: str
    password: str
    database: str

    @classmethod
    def parse(cls, url: str, *, what: str = "store.url") -> MysqlTarget:
        """Raises ConfigError naming ``what`` (the setting or option the URL came from)."""
        parts = urlsplit(url)
        database = unquote(parts.path.lstrip("/"))
        if parts.scheme not in ("mysql", "mariadb") or not database:
            raise ConfigError(f"{what} must look like mysql://user:pass@host:3306/db, got "
                              f"{parts.scheme}://…/{database}")
        try:
            port = parts.port or 3306
        except ValueError:
            raise ConfigError(f"{what} has an invalid port") from None
        return cls(parts.hostname or "127.0.0.1", port, unquote(parts.username or "root"),
                   unquote(parts.password or ""), database)

    @property
    def safe_url(self) -> str:
        """The URL without the password (for messages and logs)."""
        return f"mysql://{self.user}@{self.host}:{self.port}/{self.database}"


class MysqlDatabase(Database):
    """The store's :class:`~fluxfunc_common.store.sql.Database` on MySQL/MariaDB."""

    dialect = MysqlDialect()

    def __init__(self, pool: aiomysql.Pool, target: MysqlTarget, clock: Clock | None = None) -> None:
        super().__init__(target.safe_url, clock)
        self._pool = pool
        self.target = target

    @classmethod
    async def open(cls, settings: StoreSettings, clock: Clock | None = None) -> MysqlDatabase:
        """Open the pool (one connection at once) or raise Unavailable naming the server."""
        target = MysqlTarget.parse(settings.url)
        try:
            pool = await aiomysql.create_pool(
                minsize=1, maxsize=settings.pool_size, host=target.host, port=target.port,
                user=target.user, password=target.password, db=target.database,
                autocommit=True, charset="utf8mb4", connect_timeout=CONNECT_TIMEOUT,
                pool_recycle=3600,
            )
        except (pymysql.err.MySQLError, OSError) as exc:  # OSError covers TimeoutError
            raise Unavailable(f"database unreachable at {target.safe_url}: {_reason(exc)}") from None
        return cls(pool, target, clock)

    @asynccontextmanager
    async def session(self) -> AsyncIterator[MysqlSession]:
        try:
            async with self._pool.acquire() as conn:
                try:
                    yield MysqlSession(conn)
                except BaseException as exc:
                    if not isinstance(exc, Exception):
                        conn.close()  # cancelled mid-query: the protocol state is unknown
                    raise
        except (pymysql.err.OperationalError, pymysql.err.InterfaceError, OSError) as exc:
            if isinstance(exc, pymysql.err.OperationalError) and _code(exc) not in RETRYABLE_CODES:
                raise
            raise Unavailable(f"database unreachable at {self.where}: {_reason(exc)}") from None

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[MysqlSession]:
        async with self.session() as s:
            await s.conn.begin()
            try:
                yield s
                await s.conn.commit()
            except Exception:
                with contextlib.suppress(pymysql.err.MySQLError, OSError):
                    await s.conn.rollback()
                raise

    @asynccontextmanager
    async def migration_session(self) -> AsyncIterator[MysqlSession]:
        lock = f"fluxfunc.migrate.{self.target.database}"[:64]
        async with self.session() as s:
            got = await s.fetchall("SELECT GET_LOCK(?, ?)", (lock, MIGRATE_LOCK_SECONDS))
            if not got or got[0][0] != 1:
                raise Unavailable(f"another process holds the migration lock on {self.where}")
            try:
                yield s
            finally:
                with contextlib.suppress(pymysql.err.MySQLError, OSError):
                    await s.execute("SELECT RELEASE_LOCK(?)", (lock,))

    async def ping(self) -> None:
        try:
            async with self.session() as s:
                await s.fetchall("SELECT 1")
        except Unavailable:
            raise
        except (pymysql.err.MySQLError, OSError, RuntimeError) as exc:
            raise Unavailable(f"database unreachable at {self.where}: {_reason(exc)}") from None

    async def close(self) -> None:
        self._pool.close()
        await self._pool.wait_closed()


def _reason(exc: BaseException) -> str:
    if isinstance(exc, pymysql.err.MySQLError) and len(exc.args) >= 2:
        text = f"{exc.args[1]} ({exc.args[0]})"
    else:
        text = str(exc) or type(exc).__name__
    cause = exc.__cause__
    if cause is not None:  # aiomysql wraps the socket error: "[Errno 111] Connect call failed"
        text += f": {getattr(cause, 'strerror', None) or cause}"
    return text
