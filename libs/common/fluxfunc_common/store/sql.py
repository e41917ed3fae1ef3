"""The SQL logic both backends share, written once over a small adapter.

A backend supplies a :class:`Dialect` (the few spellings that differ: upsert, table options,
row locks, how its driver reports a duplicate key) and three async context managers that yield
a :class:`Session`: ``session()`` (autocommit statements), ``transaction()`` and
``migration_session()`` (a transaction or a lock that two starting processes queue on). All SQL
here uses ``?`` placeholders; the MySQL session rewrites them to ``%s``.
"""

from __future__ import annotations

import base64
import builtins
import hashlib
import json
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from contextlib import AbstractAsyncContextManager
from fnmatch import fnmatchcase
from typing import Any, Protocol

import orjson

from fluxfunc_common.clock import Clock, SystemClock
from fluxfunc_common.errors import BadRequest, Conflict, NotFound
from fluxfunc_common.store.base import (
    INDEXED,
    TASK_RECORD_FILTERS,
    Credential,
    CredentialKind,
    Entity,
    Page,
    Store,
    TaskRecordQuery,
)
from fluxfunc_common.store.migrations import all_migrations

Row = tuple[Any, ...]
_CLAIM_VARIABLES = 990  # distinct cron ids + fire times per claim chunk (old SQLite allows 999)


Claim = tuple[str, int, str]


def _claim_chunks(claims: list[Claim]) -> list[list[Claim]]:
    """Split claims so each chunk's read-back SELECT stays under the variable limit."""
    chunks: list[list[Claim]] = []
    crons: set[str] = set()
    times: set[int] = set()
    for claim in claims:
        grows = (claim[0] not in crons) + (claim[1] not in times)
        if not chunks or len(crons) + len(times) + grows > _CLAIM_VARIABLES:
            chunks.append([])
            crons, times = set(), set()
        chunks[-1].append(claim)
        crons.add(claim[0])
        times.add(claim[1])
    return chunks


class Session(Protocol):
    """One connection's worth of statements (``?`` placeholders)."""

    async def execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run a statement; the affected row count."""
        ...

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> int:
        """Run a statement once per row (MySQL: one multi-row INSERT)."""
        ...

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> builtins.list[Row]:
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

    def ddl(self, statement: str) -> str:
        """A migration statement as this backend runs it (table options appended)."""
        if self.table_options and statement.upper().startswith("CREATE TABLE"):
            return f"{statement} {self.table_options}"
        return statement


def dumps(value: Any) -> str:
    """Compact JSON text (``default=str`` for anything unusual)."""
    try:
        return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:  # e.g. integers beyond 64 bits
        return json.dumps(value, separators=(",", ":"), default=str, ensure_ascii=False)


def loads(text: str | bytes) -> Any:
    """Parse JSON text from a ``data``/``value_json`` column."""
    return orjson.loads(text)


def column(field: str) -> str:
    """camelCase field → snake_case column (``scriptSetId`` → ``script_set_id``)."""
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in field)


def label(entity: Entity) -> str:
    """``script_sets`` → ``script set`` (for messages)."""
    return entity.value[:-1].replace("_", " ")


_SCHEMA_VERSION_DDL = (
    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL PRIMARY KEY, "
    "name VARCHAR(191) NOT NULL, applied_at DOUBLE NOT NULL)"
)
_RECORD_COLUMNS = ("id", "func_id", "origin", "origin_id", "status", "queue", "attempt",
                   "trigger_time", "start_time", "end_time", "data")


class SqlStore(Store):
    """:class:`Store` on any SQL backend; subclasses only open connections."""

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

    # --- lifecycle -------------------------------------------------------------------------
    async def migrate(self) -> int:
        async with self.migration_session() as s:
            await s.execute(self.dialect.ddl(_SCHEMA_VERSION_DDL))
            current = await self._version(s)
            for migration in all_migrations():
                if migration.version <= current:
                    continue
                for statement in migration.statements:
                    await self._apply(s, statement)
                await s.execute(
                    "INSERT INTO schema_version (version, name, applied_at) VALUES (?, ?, ?)",
                    (migration.version, migration.name, self.clock.time()),
                )
                current = migration.version
            return current

    async def _apply(self, s: Session, statement: str) -> None:
        try:
            await s.execute(self.dialect.ddl(statement))
        except Exception as exc:
            if not self.dialect.is_existing_object(exc):
                raise

    async def _version(self, s: Session) -> int:
        try:
            rows = await s.fetchall("SELECT MAX(version) FROM schema_version")
        except Exception as exc:
            if self.dialect.is_missing_table(exc):
                return 0
            raise
        return int(rows[0][0] or 0) if rows else 0

    async def schema_version(self) -> int:
        async with self.session() as s:
            return await self._version(s)

    # --- generic entities --------------------------------------------------------------------
    @staticmethod
    def _indexed(entity: Entity, data: dict[str, Any]) -> builtins.list[Any]:
        values = [data.get(f) for f in INDEXED[entity]]
        return [None if v is None else str(v) for v in values]

    def _insert_sql(self, entity: Entity) -> str:
        cols = ["id", *map(column, INDEXED[entity]), "data", "create_time", "update_time"]
        marks = ", ".join("?" * len(cols))
        return f"INSERT INTO {entity.value} ({', '.join(cols)}) VALUES ({marks})"

    def _insert_row(self, entity: Entity, data: dict[str, Any]) -> builtins.list[Any]:
        return [str(data["id"]), *self._indexed(entity, data), dumps(data),
                data["createTime"], data["updateTime"]]

    async def create(self, entity: Entity, data: dict[str, Any]) -> dict[str, Any]:
        if not data.get("id"):
            raise BadRequest(f"{label(entity)} needs an id")
        now = self.clock.time()
        row = {**data, "createTime": now, "updateTime": now}
        try:
            async with self.session() as s:
                await s.execute(self._insert_sql(entity), self._insert_row(entity, row))
        except Exception as exc:
            if self.dialect.is_duplicate(exc):
                raise Conflict(f"{label(entity)} {data['id']!r} already exists") from None
            raise
        return row

    async def find(self, entity: Entity, entity_id: str) -> dict[str, Any] | None:
        async with self.session() as s:
            rows = await s.fetchall(f"SELECT data FROM {entity.value} WHERE id = ?", (entity_id,))
        return loads(rows[0][0]) if rows else None

    async def list(
        self,
        entity: Entity,
        *,
        filters: dict[str, Any] | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page:
        where, params = self._filters(filters or {}, ("id", *INDEXED[entity]), label(entity))
        if cursor:
            where.append("id > ?")
            params.append(cursor)
        limit = max(1, limit)
        sql = f"SELECT data FROM {entity.value}{_where(where)} ORDER BY id LIMIT ?"
        async with self.session() as s:
            rows = await s.fetchall(sql, [*params, limit + 1])
        items = [loads(r[0]) for r in rows[:limit]]
        return Page(items, items[-1]["id"] if len(rows) > limit else None)

    @staticmethod
    def _filters(
        filters: dict[str, Any], allowed: Sequence[str], what: str
    ) -> tuple[builtins.list[str], builtins.list[Any]]:
        where: builtins.list[str] = []
        params: builtins.list[Any] = []
        for key, value in filters.items():
            if key not in allowed:
                raise BadRequest(f"cannot filter {what}s by {key!r} (only {', '.join(allowed)})")
            if value is None:
                where.append(f"{column(key)} IS NULL")
            else:
                where.append(f"{column(key)} = ?")
                params.append(str(value))
        return where, params

    async def update(self, entity: Entity, entity_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        fixed = {"id", "createTime"}
        async with self.transaction() as s:
            current = await self._locked(s, entity, entity_id)
            merged = {**current, **{k: v for k, v in changes.items() if k not in fixed}}
            merged["updateTime"] = self.clock.time()
            await self._rewrite(s, entity, merged)
        return merged

    async def _locked(self, s: Session, entity: Entity, entity_id: str) -> dict[str, Any]:
        sql = f"SELECT data FROM {entity.value} WHERE id = ?{self.dialect.for_update}"
        rows = await s.fetchall(sql, (entity_id,))
        if not rows:
            raise NotFound(f"{label(entity)} {entity_id!r} not found")
        found: dict[str, Any] = loads(rows[0][0])
        return found

    async def _rewrite(self, s: Session, entity: Entity, data: dict[str, Any]) -> None:
        sets = ", ".join(f"{column(f)} = ?" for f in (*INDEXED[entity], "data", "updateTime"))
        params = [*self._indexed(entity, data), dumps(data), data["updateTime"], data["id"]]
        await s.execute(f"UPDATE {entity.value} SET {sets} WHERE id = ?", params)

    async def delete(self, entity: Entity, entity_id: str) -> None:
        async with self.session() as s:
            count = await s.execute(f"DELETE FROM {entity.value} WHERE id = ?", (entity_id,))
        if not count:
            raise NotFound(f"{label(entity)} {entity_id!r} not found")

    async def changed_since(self, entity: Entity, since: float) -> builtins.list[dict[str, Any]]:
        sql = f"SELECT data FROM {entity.value} WHERE update_time >= ? ORDER BY update_time, id"
        async with self.session() as s:
            rows = await s.fetchall(sql, (since,))
        return [loads(r[0]) for r in rows]

    # --- scripts ----------------------------------------------------------------------------------
    async def publish_script(
        self,
        script_id: str,
        code: str,
        funcs: Sequence[dict[str, Any]],
        *,
        draft: Mapping[str, Any] | None = None,
        create: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        now = self.clock.time()
        try:
            async with self.transaction() as s:
                script = await self._draft_locked(s, script_id, draft or {}, create, now)
                script.pop("codeMd5", None)  # written by earlier releases; codeMD5 is the name
                script.update(
                    publishedCode=code,
                    codeMD5=hashlib.md5(code.encode()).hexdigest(),
                    publishVersion=int(script.get("publishVersion") or 0) + 1,
                    publishTime=now,
                    updateTime=now,
                )
                await self._rewrite(s, Entity.SCRIPT, script)
                await s.execute("DELETE FROM funcs WHERE script_id = ?", (script_id,))
                rows = [self._insert_row(Entity.FUNC, self._func(script, f, now)) for f in funcs]
                if rows:
                    await s.executemany(self._insert_sql(Entity.FUNC), rows)
        except Exception as exc:
            if self.dialect.is_duplicate(exc):
                raise Conflict(f"a func of script {script_id!r} already exists elsewhere") from None
            raise
        return script

    async def _draft_locked(
        self, s: Session, script_id: str, draft: Mapping[str, Any], create: Mapping[str, Any] | None,
        now: float,
    ) -> dict[str, Any]:
        """The script row locked for a publish, with ``draft`` applied; inserted from ``create``
        first when it does not exist and ``create`` is given."""
        if create is not None:
            sql = f"SELECT 1 FROM {Entity.SCRIPT.value} WHERE id = ?{self.dialect.for_update}"
            if not await s.fetchall(sql, (script_id,)):
                row = {**create, "id": script_id, "createTime": now, "updateTime": now}
                await s.execute(self._insert_sql(Entity.SCRIPT), self._insert_row(Entity.SCRIPT, row))
        script = await self._locked(s, Entity.SCRIPT, script_id)
        script.update({k: v for k, v in draft.items() if k not in ("id", "createTime")})
        return script

    @staticmethod
    def _func(script: dict[str, Any], func: dict[str, Any], now: float) -> dict[str, Any]:
        return {"scriptId": script["id"], "scriptSetId": script.get("scriptSetId"), **func,
                "createTime": now, "updateTime": now}

    async def published_code(self, script_id: str) -> tuple[str, int] | None:
        script = await self.find(Entity.SCRIPT, script_id)
        if not script or script.get("publishedCode") is None:
            return None
        return str(script["publishedCode"]), int(script.get("publishVersion") or 0)

    # --- beat ---------------------------------------------------------------------------------------
    async def claim_cron_fire(self, cron_id: str, fire_ms: int, task_id: str) -> bool:
        sql = "INSERT INTO cron_fires (cron_id, fire_ms, task_id, created) VALUES (?, ?, ?, ?)"
        try:
            async with self.session() as s:
                await s.execute(sql, (cron_id, int(fire_ms), task_id, self.clock.time()))
        except Exception as exc:
            if self.dialect.is_duplicate(exc):
                return False
            raise
        return True

    async def claim_cron_fires(self, claims: Sequence[tuple[str, int, str]]) -> builtins.list[bool]:
        """One INSERT-or-ignore per chunk; only when some row already existed, a SELECT of who
        holds each (cron_id, fire_ms) of that chunk."""
        out: builtins.list[bool] = []
        insert = self.dialect.insert_ignore("cron_fires", ("cron_id", "fire_ms", "task_id", "created"))
        now = self.clock.time()
        for chunk in _claim_chunks([(str(c), int(m), str(t)) for c, m, t in claims]):
            async with self.transaction() as s:
                inserted = await s.executemany(insert, [(c, m, t, now) for c, m, t in chunk])
                if inserted == len(chunk):
                    out += [True] * len(chunk)
                    continue
                crons = sorted({c for c, _, _ in chunk})
                times = sorted({m for _, m, _ in chunk})
                rows = await s.fetchall(
                    f"SELECT cron_id, fire_ms, task_id FROM cron_fires WHERE fire_ms IN "
                    f"({', '.join('?' * len(times))}) AND cron_id IN ({', '.join('?' * len(crons))})",
                    [*times, *crons])
            holder = {(str(r[0]), int(r[1])): str(r[2]) for r in rows}
            out += [holder.get((c, m)) == t for c, m, t in chunk]
        return out

    async def prune_cron_fires(self, older_than_ms: int, *, keep_latest: bool = False) -> int:
        sql = "DELETE FROM cron_fires WHERE fire_ms < ?"
        if keep_latest:
            # the derived table is materialised first (MySQL refuses a subquery on the target)
            sql += (" AND (cron_id, fire_ms) NOT IN (SELECT cron_id, newest FROM "
                    "(SELECT cron_id, MAX(fire_ms) AS newest FROM cron_fires GROUP BY cron_id) AS latest)")
        async with self.session() as s:
            return await s.execute(sql, (int(older_than_ms),))

    # --- DFF.STORE --------------------------------------------------------------------------------
    async def kv_get(self, scope: str, key: str) -> Any:
        sql = "SELECT value_json, expire_at FROM func_store WHERE scope = ? AND store_key = ?"
        async with self.session() as s:
            rows = await s.fetchall(sql, (scope, key))
        if not rows or (rows[0][1] is not None and rows[0][1] <= self.clock.time()):
            return None
        return loads(rows[0][0])

    async def kv_set(self, scope: str, key: str, value: Any, expires: float | None = None, *,
                     not_exists: bool = False) -> bool:
        now = self.clock.time()
        if not_exists and await self.kv_get(scope, key) is not None:
            return False
        sql = self.dialect.upsert(
            "func_store", ("scope", "store_key", "value_json", "expire_at", "update_time"),
            ("scope", "store_key"),
        )
        expire_at = None if expires is None else now + expires
        async with self.session() as s:
            await s.execute(sql, (scope, key, dumps(value), expire_at, now))
        return True

    async def kv_mget(self, scope: str, keys: Sequence[str]) -> dict[str, Any]:
        found: dict[str, Any] = dict.fromkeys(keys)
        unique = list(found)
        for i in range(0, len(unique), 500):
            chunk = unique[i:i + 500]
            sql = (f"SELECT store_key, value_json FROM func_store WHERE scope = ? AND store_key IN "
                   f"({', '.join('?' * len(chunk))}) AND (expire_at IS NULL OR expire_at > ?)")
            async with self.session() as s:
                rows = await s.fetchall(sql, (scope, *chunk, self.clock.time()))
            found.update((str(r[0]), loads(r[1])) for r in rows)
        return found

    async def kv_items(self, scope: str, pattern: str = "*") -> dict[str, Any]:
        sql = ("SELECT store_key, value_json FROM func_store WHERE scope = ? "
               "AND (expire_at IS NULL OR expire_at > ?) ORDER BY store_key")
        async with self.session() as s:
            rows = await s.fetchall(sql, (scope, self.clock.time()))
        # glob matched here, not with LIKE: exact and case-sensitive on every backend
        return {str(r[0]): loads(r[1]) for r in rows if fnmatchcase(str(r[0]), pattern)}

    async def kv_delete(self, scope: str, key: str) -> None:
        async with self.session() as s:
            await s.execute("DELETE FROM func_store WHERE scope = ? AND store_key = ?", (scope, key))

    async def purge_expired_kv(self) -> int:
        sql = "DELETE FROM func_store WHERE expire_at IS NOT NULL AND expire_at <= ?"
        async with self.session() as s:
            return await s.execute(sql, (self.clock.time(),))

    # --- task records ---------------------------------------------------------------------------
    def _record_row(self, r: dict[str, Any]) -> tuple[Any, ...]:
        trigger = r.get("triggerTime") or r.get("endTime") or self.clock.time()
        return (str(r["id"]), r.get("funcId") or "", r.get("origin") or "direct",
                r.get("originId"), r.get("status") or "", r.get("queue") or "default",
                int(r.get("attempt") or 1), float(trigger), r.get("startTime"), r.get("endTime"),
                dumps(r))

    async def insert_task_records(self, records: Sequence[dict[str, Any]]) -> None:
        if not records:
            return
        sql = self.dialect.upsert("task_records", _RECORD_COLUMNS, ("id",))
        rows = [self._record_row(r) for r in records]
        async with self.transaction() as s:
            await s.executemany(sql, rows)

    async def get_task_record(self, task_id: str) -> dict[str, Any] | None:
        async with self.session() as s:
            rows = await s.fetchall("SELECT data FROM task_records WHERE id = ?", (task_id,))
        return loads(rows[0][0]) if rows else None

    async def list_task_records(self, query: TaskRecordQuery) -> Page:
        where, params = self._filters(query.filters, TASK_RECORD_FILTERS, "task record")
        if query.since is not None:
            where.append("trigger_time >= ?")
            params.append(query.since)
        if query.until is not None:
            where.append("trigger_time < ?")
            params.append(query.until)
        if query.cursor:
            at, last_id = _decode_cursor(query.cursor)
            where.append("(trigger_time < ? OR (trigger_time = ? AND id < ?))")
            params += [at, at, last_id]
        limit = max(1, query.limit)
        sql = (f"SELECT data, trigger_time, id FROM task_records{_where(where)} "
               "ORDER BY trigger_time DESC, id DESC LIMIT ?")
        async with self.session() as s:
            rows = await s.fetchall(sql, [*params, limit + 1])
        items = [loads(r[0]) for r in rows[:limit]]
        last = rows[limit - 1] if len(rows) > limit else None
        return Page(items, _encode_cursor(float(last[1]), str(last[2])) if last else None)

    async def prune_task_records(
        self, *, older_than: float, keep_per_origin: int, limits: dict[str, int] | None = None
    ) -> int:
        limits = limits or {}
        async with self.session() as s:
            removed = await s.execute("DELETE FROM task_records WHERE trigger_time < ?", (older_than,))
            floor = min([keep_per_origin, *limits.values()])
            crowded = await s.fetchall(
                "SELECT origin_id, COUNT(*) FROM task_records GROUP BY origin_id HAVING COUNT(*) > ?",
                (max(floor, 0),),
            )
        for origin_id, count in crowded:
            keep = keep_per_origin if origin_id is None else limits.get(origin_id, keep_per_origin)
            if count > keep:
                removed += await self._trim_origin(origin_id, max(keep, 0))
        return removed

    async def _trim_origin(self, origin_id: str | None, keep: int) -> int:
        """Delete all but the newest ``keep`` records of one originId (NULL is one bucket)."""
        cond, params = ("origin_id IS NULL", []) if origin_id is None else ("origin_id = ?", [origin_id])
        async with self.session() as s:
            if keep == 0:
                return await s.execute(f"DELETE FROM task_records WHERE {cond}", params)
            nth = await s.fetchall(
                f"SELECT trigger_time, id FROM task_records WHERE {cond} "
                "ORDER BY trigger_time DESC, id DESC LIMIT 1 OFFSET ?",
                [*params, keep - 1],
            )
            if not nth:
                return 0
            at, last_id = nth[0]
            return await s.execute(
                f"DELETE FROM task_records WHERE {cond} "
                "AND (trigger_time < ? OR (trigger_time = ? AND id < ?))",
                [*params, at, at, last_id],
            )

    # --- admin tokens and access keys ----------------------------------------------------------------
    async def add_admin_token(self, token_id: str, token_hash: str, name: str) -> None:
        sql = "INSERT INTO admin_tokens (id, token_hash, name, created, revoked) VALUES (?, ?, ?, ?, 0)"
        try:
            async with self.session() as s:
                await s.execute(sql, (token_id, token_hash, name, self.clock.time()))
        except Exception as exc:
            if self.dialect.is_duplicate(exc):
                raise Conflict(f"admin token {token_id!r} already exists") from None
            raise

    async def admin_token_exists(self, token_hash: str) -> bool:
        sql = "SELECT 1 FROM admin_tokens WHERE token_hash = ? AND revoked = 0"
        async with self.session() as s:
            return bool(await s.fetchall(sql, (token_hash,)))

    async def revoke_admin_token(self, token_id: str) -> None:
        async with self.session() as s:
            found = await s.fetchall("SELECT 1 FROM admin_tokens WHERE id = ?", (token_id,))
            if not found:
                raise NotFound(f"admin token {token_id!r} not found")
            await s.execute("UPDATE admin_tokens SET revoked = 1 WHERE id = ?", (token_id,))

    async def add_access_key(self, ak_id: str, secret_encrypted: str, name: str) -> None:
        sql = "INSERT INTO access_keys (id, secret_encrypted, name, created) VALUES (?, ?, ?, ?)"
        try:
            async with self.session() as s:
                await s.execute(sql, (ak_id, secret_encrypted, name, self.clock.time()))
        except Exception as exc:
            if self.dialect.is_duplicate(exc):
                raise Conflict(f"access key {ak_id!r} already exists") from None
            raise

    async def access_key_secret(self, ak_id: str) -> str | None:
        async with self.session() as s:
            rows = await s.fetchall("SELECT secret_encrypted FROM access_keys WHERE id = ?", (ak_id,))
        return str(rows[0][0]) if rows else None

    async def list_credentials(self, kind: CredentialKind) -> builtins.list[Credential]:
        sql = ("SELECT id, name, created, revoked FROM admin_tokens" if kind is CredentialKind.TOKEN
               else "SELECT id, name, created, 0 FROM access_keys")
        async with self.session() as s:
            rows = await s.fetchall(sql + " ORDER BY created, id", ())
        return [Credential(str(i), str(n), float(c), bool(r)) for i, n, c, r in rows]

    async def revoke_access_key(self, ak_id: str) -> None:
        async with self.session() as s:
            if not await s.execute("DELETE FROM access_keys WHERE id = ?", (ak_id,)):
                raise NotFound(f"access key {ak_id!r} not found")

    async def set_access_key_secret(self, ak_id: str, secret_encrypted: str) -> None:
        async with self.session() as s:
            await s.execute("UPDATE access_keys SET secret_encrypted = ? WHERE id = ?",
                            (secret_encrypted, ak_id))


def _where(conditions: Sequence[str]) -> str:
    return f" WHERE {' AND '.join(conditions)}" if conditions else ""


def _encode_cursor(trigger_time: float, task_id: str) -> str:
    return base64.urlsafe_b64encode(f"{trigger_time!r}~{task_id}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, task_id = raw.split("~", 1)
        return float(at), task_id
    except (ValueError, UnicodeDecodeError):
        raise BadRequest(f"invalid cursor {cursor!r}") from None
