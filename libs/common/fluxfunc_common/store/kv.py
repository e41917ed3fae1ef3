"""``DFF.STORE`` (:class:`~fluxfunc_common.store.base.KvStore`): the ``func_store`` table of
JSON values per (scope, key). Expired rows are hidden from reads at once and deleted by
``purge_expired_kv``, which the Beat's janitor runs every round."""

from __future__ import annotations

from collections.abc import Sequence
from fnmatch import fnmatchcase

from fluxfunc_common.store.sql import SqlPart, dumps, loads

# Scopes of fluxfunc's own values (the package list, readiness probes, cron overrides): this
# prefix and what follows it are refused to scripts' DFF.STORE calls.
INTERNAL_SCOPE = "__fluxfunc__"


def is_internal_scope(scope: str) -> bool:
    """True for a scope only fluxfunc itself may read or write."""
    return scope.startswith(INTERNAL_SCOPE)

_MGET_CHUNK = 500  # keys per SELECT


class SqlKv(SqlPart):
    """Get/set/delete with an optional expiry, multi-get, glob listing, purge of expired rows."""

    async def kv_get(self, scope: str, key: str) -> object:
        sql = "SELECT value_json, expire_at FROM func_store WHERE scope = ? AND store_key = ?"
        async with self.db.session() as s:
            rows = await s.fetchall(sql, (scope, key))
        if not rows or (rows[0][1] is not None and rows[0][1] <= self.clock.time()):
            return None
        value: object = loads(rows[0][0])
        return value

    async def kv_set(self, scope: str, key: str, value: object, expires: float | None = None, *,
                     not_exists: bool = False) -> bool:
        now = self.clock.time()
        if not_exists and await self.kv_get(scope, key) is not None:
            return False
        sql = self.dialect.upsert(
            "func_store", ("scope", "store_key", "value_json", "expire_at", "update_time"),
            ("scope", "store_key"),
        )
        expire_at = None if expires is None else now + expires
        async with self.db.session() as s:
            await s.execute(sql, (scope, key, dumps(value), expire_at, now))
        return True

    async def kv_mget(self, scope: str, keys: Sequence[str]) -> dict[str, object]:
        found: dict[str, object] = dict.fromkeys(keys)
        unique = list(found)
        for i in range(0, len(unique), _MGET_CHUNK):
            chunk = unique[i:i + _MGET_CHUNK]
            sql = (f"SELECT store_key, value_json FROM func_store WHERE scope = ? AND store_key IN "
                   f"({', '.join('?' * len(chunk))}) AND (expire_at IS NULL OR expire_at > ?)")
            async with self.db.session() as s:
                rows = await s.fetchall(sql, (scope, *chunk, self.clock.time()))
            found.update((str(r[0]), loads(r[1])) for r in rows)
        return found

    async def kv_items(self, scope: str, pattern: str = "*") -> dict[str, object]:
        sql = ("SELECT store_key, value_json FROM func_store WHERE scope = ? "
               "AND (expire_at IS NULL OR expire_at > ?) ORDER BY store_key")
        async with self.db.session() as s:
            rows = await s.fetchall(sql, (scope, self.clock.time()))
        # glob matched here, not with LIKE: exact and case-sensitive on every backend
        return {str(r[0]): loads(r[1]) for r in rows if fnmatchcase(str(r[0]), pattern)}

    async def kv_delete(self, scope: str, key: str) -> None:
        async with self.db.session() as s:
            await s.execute("DELETE FROM func_store WHERE scope = ? AND store_key = ?", (scope, key))

    async def purge_expired_kv(self) -> int:
        sql = "DELETE FROM func_store WHERE expire_at IS NOT NULL AND expire_at <= ?"
        async with self.db.session() as s:
            return await s.execute(sql, (self.clock.time(),))
