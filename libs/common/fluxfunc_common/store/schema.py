"""Schema lifecycle (:class:`~fluxfunc_common.store.base.SchemaStore`): numbered migrations
(``migrations/``), the applied version, liveness and closing."""

from __future__ import annotations

from fluxfunc_common.store.migrations import all_migrations
from fluxfunc_common.store.sql import Session, SqlPart

_SCHEMA_VERSION_DDL = (
    "CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL PRIMARY KEY, "
    "name VARCHAR(191) NOT NULL, applied_at DOUBLE NOT NULL)"
)


class SqlSchema(SqlPart):
    """Migrations under the backend's migration lock; ``ping``/``close`` of the database."""

    async def migrate(self) -> int:
        async with self.db.migration_session() as s:
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
        async with self.db.session() as s:
            return await self._version(s)

    async def ping(self) -> None:
        await self.db.ping()

    async def close(self) -> None:
        await self.db.close()
