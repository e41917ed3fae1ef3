"""Admin tokens and access keys (:class:`~fluxfunc_common.store.base.CredentialStore`): the
``admin_tokens`` (SHA-256 of the token) and ``access_keys`` (secret encrypted with ``crypto``)
tables."""

from __future__ import annotations

from fluxfunc_common.errors import Conflict, NotFound
from fluxfunc_common.store.sql import Param, Row, SqlPart
from fluxfunc_common.store.types import Credential, CredentialKind


def _credential(row: Row) -> Credential:
    id_, name, created, revoked, role = row
    return Credential(str(id_), str(name), float(created), bool(revoked), str(role))


class SqlCredentials(SqlPart):
    """Add, check, list, revoke admin tokens; add, read, list, revoke, re-seal access keys."""

    async def _insert(self, sql: str, params: tuple[Param, ...], what: str) -> None:
        try:
            async with self.db.session() as s:
                await s.execute(sql, params)
        except Exception as exc:
            if self.dialect.is_duplicate(exc):
                raise Conflict(f"{what} {params[0]!r} already exists") from None
            raise

    async def add_admin_token(self, token_id: str, token_hash: str, name: str,
                              role: str = "admin") -> None:
        sql = ("INSERT INTO admin_tokens (id, token_hash, name, created, revoked, role) "
               "VALUES (?, ?, ?, ?, 0, ?)")
        await self._insert(sql, (token_id, token_hash, name, self.clock.time(), role), "admin token")

    async def find_admin_token(self, token_hash: str) -> Credential | None:
        sql = ("SELECT id, name, created, revoked, role FROM admin_tokens "
               "WHERE token_hash = ? AND revoked = 0")
        async with self.db.session() as s:
            rows = await s.fetchall(sql, (token_hash,))
        return _credential(rows[0]) if rows else None

    async def admin_token_exists(self, token_hash: str) -> bool:
        sql = "SELECT 1 FROM admin_tokens WHERE token_hash = ? AND revoked = 0"
        async with self.db.session() as s:
            return bool(await s.fetchall(sql, (token_hash,)))

    async def revoke_admin_token(self, token_id: str) -> None:
        async with self.db.session() as s:
            found = await s.fetchall("SELECT 1 FROM admin_tokens WHERE id = ?", (token_id,))
            if not found:
                raise NotFound(f"admin token {token_id!r} not found")
            await s.execute("UPDATE admin_tokens SET revoked = 1 WHERE id = ?", (token_id,))

    async def add_access_key(self, ak_id: str, secret_encrypted: str, name: str,
                             role: str = "admin") -> None:
        sql = ("INSERT INTO access_keys (id, secret_encrypted, name, created, role) "
               "VALUES (?, ?, ?, ?, ?)")
        await self._insert(sql, (ak_id, secret_encrypted, name, self.clock.time(), role), "access key")

    async def access_key_secret(self, ak_id: str) -> str | None:
        async with self.db.session() as s:
            rows = await s.fetchall("SELECT secret_encrypted FROM access_keys WHERE id = ?", (ak_id,))
        return str(rows[0][0]) if rows else None

    async def access_key(self, ak_id: str) -> tuple[str, str] | None:
        sql = "SELECT secret_encrypted, role FROM access_keys WHERE id = ?"
        async with self.db.session() as s:
            rows = await s.fetchall(sql, (ak_id,))
        return (str(rows[0][0]), str(rows[0][1])) if rows else None

    async def list_credentials(self, kind: CredentialKind) -> list[Credential]:
        sql = ("SELECT id, name, created, revoked, role FROM admin_tokens"
               if kind is CredentialKind.TOKEN else "SELECT id, name, created, 0, role FROM access_keys")
        async with self.db.session() as s:
            rows = await s.fetchall(sql + " ORDER BY created, id", ())
        return [_credential(row) for row in rows]

    async def revoke_access_key(self, ak_id: str) -> None:
        async with self.db.session() as s:
            if not await s.execute("DELETE FROM access_keys WHERE id = ?", (ak_id,)):
                raise NotFound(f"access key {ak_id!r} not found")

    async def set_access_key_secret(self, ak_id: str, secret_encrypted: str) -> None:
        async with self.db.session() as s:
            await s.execute("UPDATE access_keys SET secret_encrypted = ? WHERE id = ?",
                            (secret_encrypted, ak_id))
