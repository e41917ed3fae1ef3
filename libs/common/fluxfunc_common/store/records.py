"""Task records (:class:`~fluxfunc_common.store.base.TaskRecordStore`): the ``task_records``
table, the filterable fields as columns and the whole record as JSON; listed newest first with
an opaque (triggerTime, id) keyset cursor, every filter answered by an index ending in
(trigger_time, id) (docs/store-schema.md); pruned by age and per originId (``prune.py``)."""

from __future__ import annotations

import base64
from collections.abc import Sequence

from fluxfunc_common.errors import BadRequest
from fluxfunc_common.store.base import TaskRecordQuery
from fluxfunc_common.store.prune import SqlPrune
from fluxfunc_common.store.sql import (
    Param,
    dumps,
    equality_filters,
    loads,
    where_clause,
)
from fluxfunc_common.store.types import TASK_RECORD_FILTERS, Page, TaskRecord

_COLUMNS = ("id", "func_id", "origin", "origin_id", "status", "queue", "attempt",
            "trigger_time", "start_time", "end_time", "data", "write_time")
# Rows strictly before the cursor's (trigger_time, id) in newest-first order, spelled so that
# SQLite and MariaDB both answer it with an index range on trigger_time (MariaDB does not range
# a row-value comparison): the scan starts at the cursor, the OR only filters its first key.
AFTER_CURSOR = "trigger_time <= ? AND (trigger_time < ? OR id < ?)"


# The index that answers a set of filters, best first: its leading columns are all equality
# filters, then (trigger_time, id). Named in the query (MySQL ``FORCE INDEX``, SQLite
# ``INDEXED BY``) because MariaDB's ORDER BY … LIMIT heuristic otherwise often walks the time
# index and filters, which is unbounded for a rare value.
INDEXES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("funcId", "status"), "ix_task_records_func_status"),
    (("origin", "status"), "ix_task_records_origin_status"),
    (("originId",), "ix_task_records_origin_id"),  # at most an originId's record limit
    (("funcId",), "ix_task_records_func_id"),
    (("status",), "ix_task_records_status"),
    (("queue",), "ix_task_records_queue"),
    (("origin",), "ix_task_records_origin"),
    ((), "ix_task_records_time"),
)


def index_for(filters: Sequence[str]) -> str:
    """The index :func:`list_sql` names for these filter fields."""
    return next(name for fields, name in INDEXES if set(fields) <= set(filters))


class SqlRecords(SqlPrune):
    """Batch upsert, read, keyset-paged list; pruning comes from :class:`SqlPrune`."""

    def _row(self, r: TaskRecord) -> tuple[Param, ...]:
        trigger = r.get("triggerTime") or r.get("endTime") or self.clock.time()
        return (str(r["id"]), r.get("funcId") or "", r.get("origin") or "direct",
                r.get("originId"), r.get("status") or "", r.get("queue") or "default",
                int(r.get("attempt") or 1), float(trigger), r.get("startTime"), r.get("endTime"),
                dumps(r), self.clock.time())

    async def insert_task_records(self, records: Sequence[TaskRecord]) -> None:
        if not records:
            return
        sql = self.dialect.upsert("task_records", _COLUMNS, ("id",))
        rows = [self._row(r) for r in records]
        async with self.db.transaction() as s:
            await s.executemany(sql, rows)

    async def get_task_record(self, task_id: str) -> TaskRecord | None:
        async with self.db.session() as s:
            rows = await s.fetchall("SELECT data FROM task_records WHERE id = ?", (task_id,))
        found: TaskRecord | None = loads(rows[0][0]) if rows else None
        return found

    async def list_task_records(self, query: TaskRecordQuery) -> Page[TaskRecord]:
        limit = max(1, query.limit)
        sql, params = list_sql(query, self.dialect.name)
        async with self.db.session() as s:
            rows = await s.fetchall(sql, params)
        items: list[TaskRecord] = [loads(r[0]) for r in rows[:limit]]
        last = rows[limit - 1] if len(rows) > limit else None
        return Page(items, encode_cursor(float(last[1]), str(last[2])) if last else None)


def list_sql(query: TaskRecordQuery, dialect: str) -> tuple[str, list[Param]]:
    """The SELECT of one page (``limit + 1`` rows: the extra one says another page follows)
    for the ``dialect`` (``sqlite`` or ``mysql``)."""
    where, params = equality_filters(query.filters, TASK_RECORD_FILTERS, "task record")
    if query.since is not None:
        where.append("trigger_time >= ?")
        params.append(query.since)
    if query.until is not None:
        where.append("trigger_time < ?")
        params.append(query.until)
    if query.cursor:
        at, last_id = _decode_cursor(query.cursor)
        where.append(AFTER_CURSOR)
        params += [at, at, last_id]
    index = index_for(list(query.filters))
    hint = f"INDEXED BY {index}" if dialect == "sqlite" else f"FORCE INDEX ({index})"
    sql = (f"SELECT data, trigger_time, id FROM task_records {hint}{where_clause(where)} "
           "ORDER BY trigger_time DESC, id DESC LIMIT ?")
    return sql, [*params, max(1, query.limit) + 1]


def encode_cursor(trigger_time: float, task_id: str) -> str:
    """The opaque cursor of the page after the row (trigger_time, id)."""
    return base64.urlsafe_b64encode(f"{trigger_time!r}~{task_id}".encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[float, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        at, task_id = raw.split("~", 1)
        return float(at), task_id
    except (ValueError, UnicodeDecodeError):
        raise BadRequest(f"invalid cursor {cursor!r}") from None
