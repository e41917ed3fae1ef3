"""Connectors (:class:`~fluxfunc_common.store.base.ConnectorStore`): the ``connectors`` table,
one row per connector, the whole :class:`~fluxfunc_common.connectors.StoredConnector` as JSON
(secrets in its config already sealed by the caller)."""

from __future__ import annotations

from fluxfunc_common.connectors.types import StoredConnector
from fluxfunc_common.errors import Conflict, NotFound
from fluxfunc_common.store.sql import Session, SqlPart

INSERT = "INSERT INTO connectors (id, type, data, create_time, update_time) VALUES (?, ?, ?, ?, ?)"
UPDATE = "UPDATE connectors SET type = ?, data = ?, update_time = ? WHERE id = ?"


async def insert(s: Session, row: StoredConnector) -> None:
    """Insert ``row`` as it is (its times included) in the caller's session or transaction."""
    await s.execute(INSERT, (row.id, row.type.value, row.model_dump_json(by_alias=True),
                             row.create_time, row.update_time))


async def rewrite(s: Session, row: StoredConnector) -> int:
    """Write ``row`` over the stored one of its id; the number of rows changed."""
    return await s.execute(UPDATE, (row.type.value, row.model_dump_json(by_alias=True),
                                    row.update_time, row.id))


class SqlConnectors(SqlPart):
    """Create, read, list, replace and delete connectors."""

    async def create_connector(self, connector: StoredConnector) -> StoredConnector:
        now = self.clock.time()
        row = connector.model_copy(update={"create_time": now, "update_time": now})
        try:
            async with self.db.session() as s:
                await insert(s, row)
        except Exception as exc:
            if self.dialect.is_duplicate(exc):
                raise Conflict(f"connector {row.id!r} already exists") from None
            raise
        return row

    async def find_connector(self, connector_id: str) -> StoredConnector | None:
        async with self.db.session() as s:
            rows = await s.fetchall("SELECT data FROM connectors WHERE id = ?", (connector_id,))
        return StoredConnector.model_validate_json(rows[0][0]) if rows else None

    async def get_connector(self, connector_id: str) -> StoredConnector:
        found = await self.find_connector(connector_id)
        if found is None:
            raise NotFound(f"connector {connector_id!r} not found")
        return found

    async def list_connectors(self) -> list[StoredConnector]:
        async with self.db.session() as s:
            rows = await s.fetchall("SELECT data FROM connectors ORDER BY id", ())
        return [StoredConnector.model_validate_json(r[0]) for r in rows]

    async def replace_connector(self, connector: StoredConnector) -> StoredConnector:
        row = connector.model_copy(update={"update_time": self.clock.time()})
        async with self.db.session() as s:
            changed = await rewrite(s, row)
        if not changed and await self.find_connector(row.id) is None:  # MySQL: 0 when unchanged
            raise NotFound(f"connector {row.id!r} not found")
        return row

    async def delete_connector(self, connector_id: str) -> None:
        async with self.db.session() as s:
            if not await s.execute("DELETE FROM connectors WHERE id = ?", (connector_id,)):
                raise NotFound(f"connector {connector_id!r} not found")
