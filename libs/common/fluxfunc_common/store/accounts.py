"""Console users and the audit log (:class:`~fluxfunc_common.store.base.AccountStore`): the
``users`` and ``audit`` tables (migration 0005). The audit log is listed newest first with a
keyset on its time-ordered id and pruned in bounded batches by the Beat's janitor."""

from __future__ import annotations

from fluxfunc_common import ids
from fluxfunc_common.errors import Conflict, NotFound
from fluxfunc_common.store.sql import Param, Row, SqlPart, where_clause
from fluxfunc_common.store.types import AuditEntry, AuditQuery, User

_USER_COLUMNS = "username, role, password_hash, created, last_sign_in, disabled"
_AUDIT_COLUMNS = "id, time, username, via, method, route, entity_id, status"
PRUNE_BATCH = 1000  # rows per janitor round: a bounded delete, never a long table lock


def _user(row: Row) -> User:
    username, role, password_hash, created, last_sign_in, disabled = row
    return User(str(username), str(role), str(password_hash), float(created),
                None if last_sign_in is None else float(last_sign_in), bool(disabled))


def _entry(row: Row) -> AuditEntry:
    id_, time, username, via, method, route, entity_id, status = row
    return AuditEntry(str(id_), float(time), str(username), str(via), str(method), str(route),
                      None if entity_id is None else str(entity_id), int(status))


class SqlAccounts(SqlPart):
    """Add, read, list, change, delete users; record, list and prune audit entries."""

    async def add_user(self, username: str, role: str, password_hash: str) -> User:
        sql = f"INSERT INTO users ({_USER_COLUMNS}) VALUES (?, ?, ?, ?, NULL, 0)"
        created = self.clock.time()
        try:
            async with self.db.session() as s:
                await s.execute(sql, (username, role, password_hash, created))
        except Exception as exc:
            if self.dialect.is_duplicate(exc):
                raise Conflict(f"user {username!r} already exists") from None
            raise
        return User(username, role, password_hash, created)

    async def find_user(self, username: str) -> User | None:
        async with self.db.session() as s:
            rows = await s.fetchall(f"SELECT {_USER_COLUMNS} FROM users WHERE username = ?",
                                    (username,))
        return _user(rows[0]) if rows else None

    async def list_users(self) -> list[User]:
        async with self.db.session() as s:
            rows = await s.fetchall(f"SELECT {_USER_COLUMNS} FROM users ORDER BY username")
        return [_user(row) for row in rows]

    async def count_users(self) -> int:
        async with self.db.session() as s:
            rows = await s.fetchall("SELECT COUNT(*) FROM users")
        return int(rows[0][0])

    async def update_user(self, username: str, *, role: str | None = None,
                          disabled: bool | None = None, password_hash: str | None = None,
                          last_sign_in: float | None = None) -> User:
        changes: dict[str, Param] = {"role": role, "password_hash": password_hash,
                                     "last_sign_in": last_sign_in,
                                     "disabled": None if disabled is None else int(disabled)}
        sets = {k: v for k, v in changes.items() if v is not None}
        if sets:
            sql = f"UPDATE users SET {', '.join(f'{k} = ?' for k in sets)} WHERE username = ?"
            async with self.db.session() as s:
                await s.execute(sql, (*sets.values(), username))
        user = await self.find_user(username)
        if user is None:
            raise NotFound(f"user {username!r} not found")
        return user

    async def delete_user(self, username: str) -> None:
        async with self.db.session() as s:
            if not await s.execute("DELETE FROM users WHERE username = ?", (username,)):
                raise NotFound(f"user {username!r} not found")

    async def add_audit(self, entry: AuditEntry) -> AuditEntry:
        entry_id = entry.id or "audit-" + ids.ulid(int(entry.time * 1000))
        sql = f"INSERT INTO audit ({_AUDIT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
        async with self.db.session() as s:
            await s.execute(sql, (entry_id, entry.time, entry.username, entry.via, entry.method,
                                  entry.route, entry.entity_id, entry.status))
        return AuditEntry(entry_id, entry.time, entry.username, entry.via, entry.method,
                          entry.route, entry.entity_id, entry.status)

    async def list_audit(self, query: AuditQuery) -> list[AuditEntry]:
        where: list[str] = []
        params: list[Param] = []
        for column, value in (("username", query.username), ("route", query.route)):
            if value is not None:
                where.append(f"{column} = ?")
                params.append(value)
        if query.before is not None:
            where.append("id < ?")
            params.append(query.before)
        sql = (f"SELECT {_AUDIT_COLUMNS} FROM audit{where_clause(where)} "
               f"ORDER BY id DESC LIMIT {int(query.limit)}")
        async with self.db.session() as s:
            rows = await s.fetchall(sql, params)
        return [_entry(row) for row in rows]

    async def prune_audit(self, older_than: float, *, batch: int = PRUNE_BATCH) -> int:
        async with self.db.session() as s:
            rows = await s.fetchall(f"SELECT id FROM audit WHERE time < ? ORDER BY time "
                                    f"LIMIT {int(batch)}", (older_than,))
            if not rows:
                return 0
            marks = ", ".join("?" for _ in rows)
            return await s.execute(f"DELETE FROM audit WHERE id IN ({marks})",
                                   [str(r[0]) for r in rows])
