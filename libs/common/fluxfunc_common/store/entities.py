"""Management entities (:class:`~fluxfunc_common.store.base.EntityStore`): one table per
:class:`~fluxfunc_common.store.types.Entity` holding the id, the INDEXED fields as columns
and the whole entity as JSON in ``data``."""

from __future__ import annotations

import builtins
from collections.abc import Mapping

from fluxfunc_common.errors import BadRequest, Conflict, NotFound
from fluxfunc_common.store.sql import (
    Param,
    Session,
    SqlPart,
    column,
    dumps,
    equality_filters,
    loads,
    where_clause,
)
from fluxfunc_common.store.types import INDEXED, Entity, Page


def label(entity: Entity) -> str:
    """``script_sets`` → ``script set`` (for messages)."""
    return entity.value[:-1].replace("_", " ")


def _indexed(entity: Entity, data: Mapping[str, object]) -> list[Param]:
    values = [data.get(f) for f in INDEXED[entity]]
    return [None if v is None else str(v) for v in values]


def insert_sql(entity: Entity) -> str:
    """The INSERT of one entity row (values from :func:`insert_row`)."""
    cols = ["id", *map(column, INDEXED[entity]), "data", "create_time", "update_time"]
    marks = ", ".join("?" * len(cols))
    return f"INSERT INTO {entity.value} ({', '.join(cols)}) VALUES ({marks})"


def _stamp(value: object) -> Param:
    """createTime/updateTime as a column value (the store writes epoch seconds)."""
    return value if isinstance(value, (int, float, str)) else None


def insert_row(entity: Entity, data: Mapping[str, object]) -> list[Param]:
    """The values of :func:`insert_sql` for ``data`` (holding id, createTime, updateTime)."""
    return [str(data["id"]), *_indexed(entity, data), dumps(data),
            _stamp(data["createTime"]), _stamp(data["updateTime"])]


async def locked(s: Session, for_update: str, entity: Entity, entity_id: str) -> dict[str, object]:
    """The entity read (row-locked where the backend can) inside a transaction; NotFound."""
    sql = f"SELECT data FROM {entity.value} WHERE id = ?{for_update}"
    rows = await s.fetchall(sql, (entity_id,))
    if not rows:
        raise NotFound(f"{label(entity)} {entity_id!r} not found")
    found: dict[str, object] = loads(rows[0][0])
    return found


async def rewrite(s: Session, entity: Entity, data: Mapping[str, object]) -> None:
    """Write ``data`` over the existing row of its id (indexed columns, JSON, updateTime)."""
    sets = ", ".join(f"{column(f)} = ?" for f in (*INDEXED[entity], "data", "updateTime"))
    params = [*_indexed(entity, data), dumps(data), _stamp(data["updateTime"]), str(data["id"])]
    await s.execute(f"UPDATE {entity.value} SET {sets} WHERE id = ?", params)


class SqlEntities(SqlPart):
    """CRUD, paging and incremental sync of management entities."""

    async def create(self, entity: Entity, data: Mapping[str, object]) -> dict[str, object]:
        if not data.get("id"):
            raise BadRequest(f"{label(entity)} needs an id")
        now = self.clock.time()
        row = {**data, "createTime": now, "updateTime": now}
        try:
            async with self.db.session() as s:
                await s.execute(insert_sql(entity), insert_row(entity, row))
        except Exception as exc:
            if self.dialect.is_duplicate(exc):
                raise Conflict(f"{label(entity)} {data['id']!r} already exists") from None
            raise
        return row

    async def find(self, entity: Entity, entity_id: str) -> dict[str, object] | None:
        async with self.db.session() as s:
            rows = await s.fetchall(f"SELECT data FROM {entity.value} WHERE id = ?", (entity_id,))
        return loads(rows[0][0]) if rows else None

    async def get(self, entity: Entity, entity_id: str) -> dict[str, object]:
        found = await self.find(entity, entity_id)
        if found is None:
            raise NotFound(f"{label(entity)} {entity_id!r} not found")
        return found

    async def list(self, entity: Entity, *, filters: Mapping[str, object] | None = None,
                   limit: int = 50, cursor: str | None = None) -> Page[dict[str, object]]:
        where, params = equality_filters(filters or {}, ("id", *INDEXED[entity]), label(entity))
        if cursor:
            where.append("id > ?")
            params.append(cursor)
        limit = max(1, limit)
        sql = f"SELECT data FROM {entity.value}{where_clause(where)} ORDER BY id LIMIT ?"
        async with self.db.session() as s:
            rows = await s.fetchall(sql, [*params, limit + 1])
        items: builtins.list[dict[str, object]] = [loads(r[0]) for r in rows[:limit]]
        return Page(items, str(items[-1]["id"]) if len(rows) > limit else None)

    async def update(self, entity: Entity, entity_id: str,
                     changes: Mapping[str, object]) -> dict[str, object]:
        fixed = {"id", "createTime"}
        async with self.db.transaction() as s:
            current = await locked(s, self.dialect.for_update, entity, entity_id)
            merged = {**current, **{k: v for k, v in changes.items() if k not in fixed}}
            merged["updateTime"] = self.clock.time()
            await rewrite(s, entity, merged)
        return merged

    async def delete(self, entity: Entity, entity_id: str) -> None:
        async with self.db.session() as s:
            count = await s.execute(f"DELETE FROM {entity.value} WHERE id = ?", (entity_id,))
        if not count:
            raise NotFound(f"{label(entity)} {entity_id!r} not found")

    async def changed_since(self, entity: Entity, since: float) -> builtins.list[dict[str, object]]:
        sql = f"SELECT data FROM {entity.value} WHERE update_time >= ? ORDER BY update_time, id"
        async with self.db.session() as s:
            rows = await s.fetchall(sql, (since,))
        return [loads(r[0]) for r in rows]
