"""Pruning task records (the Beat janitor's ``prune_task_records``) in bounded index ranges.

Two rules, as ever: every record triggered before ``older_than`` goes, and per originId only
the newest ``limits.get(originId, keep_per_origin)`` stay (NULL is one bucket). No round scans
the table (docs/scaling.md):

- by age: the oldest rows, :data:`BATCH` per DELETE over a range of ``ix_task_records_time``,
  until none is left or the round's :data:`BUDGET` is spent. On MySQL :data:`LANES` batches
  over adjacent, disjoint ranges run at once on separate connections: a deleted row's entries
  in ``ix_task_records_origin_id`` sit at the front of each originId's range, one index page
  per originId, and with an index larger than the buffer pool those pages are read from disk
  one at a time per statement — concurrent statements overlap the reads;
- per originId: every round looks at the originIds written since the previous complete round
  (a range of ``ix_task_records_write_time``, with :data:`WRITE_SLACK` for writers' clocks and
  in-flight commits) and those whose own limit went down. Where that previous round is unknown
  (a new database, one migrated from an older version) or ``keep_per_origin`` went down, a
  *sweep* also walks the originId index, at most :data:`SWEEP_ROWS` entries a round, counting
  each originId once. An originId's excess is located with an OFFSET on
  ``ix_task_records_origin_id`` and deleted oldest first in batches.

Where the rounds stand (the previous round's start, its rule, the sweep's position) is one
row of ``prune_state`` (migration 0006), so a restarted Beat or a new leader carries on
instead of counting every originId again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from fluxfunc_common.errors import Unavailable
from fluxfunc_common.store.sql import Param, SqlPart, dumps, loads

BATCH = 5000  # rows per DELETE
BUDGET = 500_000  # rows per round at most; the rest goes in the next rounds
LANES = {"mysql": 4}  # concurrent DELETEs per dialect (SQLite has one writer: 1)
SWEEP_ROWS = 50_000  # originId index entries a round's sweep counts at most
WRITE_SLACK = 300.0  # s: writers' clocks and commits may lag the janitor's by this much
STATE_NAME = "task_records"
_UPTO = "trigger_time <= ? AND (trigger_time < ? OR id <= ?)"  # at or before (t, id), ascending
_AFTER = "trigger_time >= ? AND (trigger_time > ? OR id > ?)"  # strictly after (t, id)
Bound = tuple[float, str]  # (trigger_time, id) of a batch's last row


@dataclass
class _Round:
    """What one prune round may still delete."""

    left: int

    @property
    def spent(self) -> bool:
        return self.left <= 0

    def sizes(self, lanes: int) -> list[int]:
        """The batch sizes of the next step: up to ``lanes`` batches within the budget."""
        out: list[int] = []
        left = self.left
        while left > 0 and len(out) < lanes:
            out.append(min(BATCH, left))
            left -= out[-1]
        return out


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


@dataclass(frozen=True)
class _State:
    """The persisted progress: the last complete round's start and rule, and the sweep's next
    originId (``""``: from the first; None: no sweep under way)."""

    mark: float | None = None
    rule: _Rule | None = None
    sweep: str | None = ""

    def to_json(self) -> str:
        rule = None if self.rule is None else {"keep": self.rule.keep, "limits": self.rule.limits}
        return dumps({"mark": self.mark, "rule": rule, "sweep": self.sweep})

    @classmethod
    def from_json(cls, text: str) -> _State:
        raw = loads(text)
        rule = raw.get("rule")
        return cls(raw.get("mark"), None if rule is None else _Rule(int(rule["keep"]), dict(rule["limits"])),
                   raw.get("sweep"))


@dataclass
class _Plan:
    """The originIds a round trims, and where the sweep stands after it."""

    origins: set[str | None] = field(default_factory=set)
    sweep: str | None = None


class SqlPrune(SqlPart):
    """``prune_task_records`` of :class:`~fluxfunc_common.store.base.TaskRecordStore`."""

    _lanes: int | None = None

    async def prune_task_records(self, *, older_than: float, keep_per_origin: int,
                                 limits: Mapping[str, int] | None = None) -> int:
        rule = _Rule(keep_per_origin, dict(limits or {}))
        started = self.clock.time()
        budget = _Round(BUDGET)
        removed = await self._delete_oldest("trigger_time < ?", [older_than], budget)
        state = await self._load_state()
        plan = await self._plan(rule, state)
        for origin_id in sorted(plan.origins, key=lambda o: (o is not None, o or "")):
            if budget.spent:
                break
            removed += await self._trim_origin(origin_id, rule.limit(origin_id), budget)
        if not budget.spent:  # a spent budget saves nothing: the next round sees these again
            await self._save_state(_State(started, rule, plan.sweep))
        return removed

    async def _plan(self, rule: _Rule, state: _State) -> _Plan:
        sweep = state.sweep
        if state.rule is None or rule.keep < state.rule.keep:
            sweep = ""  # every originId may be over: count them all, a slice a round
        plan = _Plan(sweep=sweep)
        if state.mark is not None:
            plan.origins |= set(await self._written_origins(state.mark - WRITE_SLACK))
        if state.rule is not None:
            plan.origins |= rule.lowered(state.rule)
        if sweep is not None:
            found, plan.sweep = await self._sweep(sweep, rule.floor)
            plan.origins |= found
        return plan

    async def _sweep(self, start: str, floor: int) -> tuple[set[str | None], str | None]:
        """The originIds from ``start`` on (about :data:`SWEEP_ROWS` index entries) with more
        than ``floor`` records, and where the next slice starts (None: the sweep is done).
        The first slice also holds the NULL bucket."""
        hint = self._hint("ix_task_records_origin_id")
        async with self.db.session() as s:
            nxt = await s.fetchall(
                f"SELECT origin_id FROM task_records {hint} WHERE origin_id > ? "
                "ORDER BY origin_id LIMIT 1 OFFSET ?", (start, SWEEP_ROWS))
            upper, params = ("AND origin_id < ?", [start, nxt[0][0]]) if nxt else ("", [start])
            rows = await s.fetchall(
                f"SELECT origin_id FROM task_records {hint} WHERE origin_id >= ? {upper} "
                "GROUP BY origin_id HAVING COUNT(*) > ?", [*params, floor])
        found: set[str | None] = {str(r[0]) for r in rows}
        if start == "":
            found.add(None)
        return found, str(nxt[0][0]) if nxt else None

    def _hint(self, index: str) -> str:
        return f"INDEXED BY {index}" if self.dialect.name == "sqlite" else f"FORCE INDEX ({index})"

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
        """Delete the rows matching ``cond``, oldest first: batches of :data:`BATCH` rows over
        adjacent ranges, up to :data:`LANES` of them at once."""
        removed = 0
        lanes = await self._lane_count()
        while not budget.spent:
            bounds = await self._bounds(cond, params, budget.sizes(lanes))
            ranges = list(zip([None, *bounds[:-1]], bounds, strict=True))
            results = await asyncio.gather(*(self._delete_range(cond, params, lo, hi, lanes > 1)
                                             for lo, hi in ranges), return_exceptions=True)
            done = [await self._alone_if_failed(result, cond, params, lo, hi)
                    for (lo, hi), result in zip(ranges, results, strict=True)]
            removed += sum(done)
            budget.left -= sum(done)
            if bounds[-1] is None:
                break
        return removed

    async def _alone_if_failed(self, result: int | BaseException, cond: str,
                               params: Sequence[Param], lo: Bound | None, hi: Bound | None) -> int:
        """A lane's count; a lane that failed as unavailable (InnoDB can still pick one of two
        lanes' DELETEs as a deadlock victim and roll it back) runs again, alone."""
        if isinstance(result, Unavailable):
            return await self._delete_range(cond, params, lo, hi, False)
        if isinstance(result, BaseException):
            raise result
        return result

    async def _bounds(self, cond: str, params: Sequence[Param],
                      sizes: Sequence[int]) -> list[Bound | None]:
        """The last row of each of the next batches (oldest first); None for a batch that
        takes every row left."""
        bounds: list[Bound | None] = []
        async with self.db.session() as s:
            for size in sizes:
                lo = bounds[-1] if bounds else None
                where, args = (cond, list(params)) if lo is None else (
                    f"{cond} AND {_AFTER}", [*params, lo[0], lo[0], lo[1]])
                nth = await s.fetchall(f"SELECT trigger_time, id FROM task_records WHERE {where} "
                                       "ORDER BY trigger_time, id LIMIT 1 OFFSET ?", [*args, size - 1])
                bounds.append((float(nth[0][0]), str(nth[0][1])) if nth else None)
                if not nth:
                    break
        return bounds

    async def _lane_count(self) -> int:
        """:data:`LANES` of the dialect; one on MySQL with statement-based binary logging, where
        InnoDB refuses a DELETE under read committed."""
        if self._lanes is None:
            lanes = LANES.get(self.dialect.name, 1)
            if lanes > 1 and self.dialect.name == "mysql":
                async with self.db.session() as s:
                    rows = await s.fetchall("SELECT @@log_bin, @@binlog_format")
                if rows and int(rows[0][0] or 0) and str(rows[0][1]).upper() == "STATEMENT":
                    lanes = 1
            self._lanes = lanes
        return self._lanes

    async def _delete_range(self, cond: str, params: Sequence[Param], lo: Bound | None,
                            hi: Bound | None, concurrent: bool) -> int:
        where, args = cond, list(params)
        if lo is not None:
            where, args = f"{where} AND {_AFTER}", [*args, lo[0], lo[0], lo[1]]
        if hi is not None:
            where, args = f"{where} AND {_UPTO}", [*args, hi[0], hi[0], hi[1]]
        async with self.db.session() as s:
            if concurrent and self.dialect.name == "mysql":  # no gap locks between the lanes
                await s.execute("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")
            return await s.execute(f"DELETE FROM task_records WHERE {where}", args)

    async def _load_state(self) -> _State:
        async with self.db.session() as s:
            rows = await s.fetchall("SELECT data FROM prune_state WHERE name = ?", (STATE_NAME,))
        return _State.from_json(rows[0][0]) if rows else _State()

    async def _save_state(self, state: _State) -> None:
        sql = self.dialect.upsert("prune_state", ("name", "data", "update_time"), ("name",))
        async with self.db.session() as s:
            await s.execute(sql, (STATE_NAME, state.to_json(), self.clock.time()))

