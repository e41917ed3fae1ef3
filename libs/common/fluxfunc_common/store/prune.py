"""Pruning task records (the Beat janitor's ``prune_task_records``) in bounded index ranges.

Two rules, as ever: every record triggered before ``older_than`` goes, and per originId only
the newest ``limits.get(originId, keep_per_origin)`` stay (NULL is one bucket). Neither scans
the table (docs/scaling.md):

- by age: the oldest :data:`BATCH` rows at a time, each batch one DELETE over a range of
  ``ix_task_records_time``, until none is left or the round's :data:`BUDGET` is spent;
- per originId: the first round of a process, and a round where ``keep_per_origin`` went
  down, count every originId in one pass over ``ix_task_records_origin_id``; every other round
  looks only at the originIds written since the previous round (a range of
  ``ix_task_records_write_time``, with :data:`WRITE_SLACK` for writers' clocks and in-flight
  commits) and those whose own limit went down. An originId's excess is located with an
  OFFSET on ``ix_task_records_origin_id`` and deleted oldest first in batches.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from fluxfunc_common.store.sql import Param, SqlPart

BATCH = 5000  # rows per DELETE
BUDGET = 500_000  # rows per round at most; the rest goes in the next rounds
WRITE_SLACK = 300.0  # s: writers' clocks and commits may lag the janitor's by this much
_UPTO = "trigger_time <= ? AND (trigger_time < ? OR id <= ?)"  # at or before (t, id), ascending


@dataclass
class _Round:
    """What one prune round may still delete."""

    left: int

    @property
    def spent(self) -> bool:
        return self.left <= 0


@dataclass(frozen=True)
class _Rule:
    """How many records each originId keeps (``limits`` override ``keep``)."""

    keep: int
    limits: dict[str, int]

    def limit(self, origin_id: str | None) -> int:
        found = self.keep if origin_id is None else self.limits.get(origin_id, self.keep)
        return max(found, 0)

    @property
    def floor(self) -> int:
        return min([self.limit(None), *(self.limit(o) for o in self.limits)])

    def lowered(self, before: _Rule) -> set[str | None]:
        """The originIds whose limit went down since ``before`` (same ``keep`` or a higher one)."""
        named: set[str | None] = {*self.limits, *before.limits}
        return {o for o in named if self.limit(o) < before.limit(o)}


class SqlPrune(SqlPart):
    """``prune_task_records`` of :class:`~fluxfunc_common.store.base.TaskRecordStore`."""

    _prune_rule: _Rule | None = None
    _prune_mark: float | None = None  # janitor clock at the start of the last complete round

    async def prune_task_records(self, *, older_than: float, keep_per_origin: int,
                                 limits: Mapping[str, int] | None = None) -> int:
        rule = _Rule(keep_per_origin, dict(limits or {}))
        started = self.clock.time()
        budget = _Round(BUDGET)
        removed = await self._delete_oldest("trigger_time < ?", [older_than], budget)
        last, mark = self._prune_rule, self._prune_mark
        if last is None or mark is None or rule.keep < last.keep:
            origins = await self._crowded_origins(rule)
        else:
            origins = set(await self._written_origins(mark - WRITE_SLACK)) | rule.lowered(last)
        for origin_id in sorted(origins, key=lambda o: (o is not None, o or "")):
            if budget.spent:
                break
            removed += await self._trim_origin(origin_id, rule.limit(origin_id), budget)
        if budget.spent:  # unfinished: the next round starts over with every originId
            self._prune_rule, self._prune_mark = None, None
        else:
            self._prune_rule, self._prune_mark = rule, started
        return removed

    async def _crowded_origins(self, rule: _Rule) -> set[str | None]:
        """The originIds with more records than the lowest limit: one pass over the originId
        index (the first round of a process, or after ``keep_per_origin`` went down)."""
        async with self.db.session() as s:
            rows = await s.fetchall(
                "SELECT origin_id FROM task_records GROUP BY origin_id HAVING COUNT(*) > ?",
                (rule.floor,))
        return {None if r[0] is None else str(r[0]) for r in rows}

    async def _written_origins(self, since: float) -> list[str | None]:
        """The originIds of rows written at or after ``since`` (a range of the write index)."""
        # ``+origin_id``: SQLite would otherwise walk the whole originId index for DISTINCT.
        async with self.db.session() as s:
            rows = await s.fetchall(
                "SELECT DISTINCT +origin_id FROM task_records WHERE write_time >= ?", (since,))
        return [None if r[0] is None else str(r[0]) for r in rows]

    async def _trim_origin(self, origin_id: str | None, keep: int, budget: _Round) -> int:
        """Delete all but the newest ``keep`` records of one originId (NULL is one bucket)."""
        cond, params = (("origin_id IS NULL", []) if origin_id is None
                        else ("origin_id = ?", [origin_id]))
        if keep > 0:
            async with self.db.session() as s:
                nth = await s.fetchall(
                    f"SELECT trigger_time, id FROM task_records WHERE {cond} "
                    "ORDER BY trigger_time DESC, id DESC LIMIT 1 OFFSET ?",
                    [*params, keep],
                )
            if not nth:
                return 0
            at, last_id = nth[0]
            cond, params = f"{cond} AND {_UPTO}", [*params, at, at, last_id]
        return await self._delete_oldest(cond, params, budget)

    async def _delete_oldest(self, cond: str, params: Sequence[Param], budget: _Round) -> int:
        """Delete the rows matching ``cond``, oldest first, :data:`BATCH` per statement."""
        removed = 0
        while not budget.spent:
            async with self.db.session() as s:
                nth = await s.fetchall(
                    f"SELECT trigger_time, id FROM task_records WHERE {cond} "
                    "ORDER BY trigger_time, id LIMIT 1 OFFSET ?",
                    [*params, min(BATCH, budget.left) - 1],
                )
                if nth:
                    at, last_id = nth[0]
                    done = await s.execute(f"DELETE FROM task_records WHERE {cond} AND {_UPTO}",
                                           [*params, at, at, last_id])
                else:
                    done = await s.execute(f"DELETE FROM task_records WHERE {cond}", params)
            removed += done
            budget.left -= done
            if not nth:
                break
        return removed
