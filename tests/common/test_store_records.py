"""Task records at volume (docs/scaling.md): keyset paging with every filter combination, the
composite index behind each filter (EXPLAIN), and the batched janitor prune doing exactly what
the rule says. Every test runs on SQLite and on MariaDB (``store_url``)."""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping
from typing import Any

import pytest

from fluxfunc_common.clock import FakeClock
from fluxfunc_common.envelope import Origin, TaskResult, TaskStatus
from fluxfunc_common.settings import StoreSettings
from fluxfunc_common.store import SqlStore, TaskRecord, TaskRecordQuery, open_store, task_record
from fluxfunc_common.store import prune as prune_module
from fluxfunc_common.store.records import index_for, list_sql
from fluxfunc_common.store.types import TASK_RECORD_FILTERS

T0 = 1_700_000_000.0
ORIGINS = (Origin.SYNC_API, Origin.ASYNC_API, Origin.CRON_JOB, Origin.DIRECT)
STATUSES = (TaskStatus.SUCCESS, TaskStatus.FAILURE, TaskStatus.TIMEOUT)


@pytest.fixture
def store(sql_store: SqlStore) -> SqlStore:
    sql_store.clock = FakeClock(T0)
    return sql_store


def make(i: int, *, trigger: float | None = None, origin_id: str | None = "auto") -> TaskRecord:
    """Record ``i``: trigger times in threes (ties broken by id), fields cycling independently."""
    origin = ORIGINS[i % 4]
    oid = (None if origin == Origin.DIRECT else f"o{i % 5}") if origin_id == "auto" else origin_id
    return task_record(TaskResult(
        id=f"t{i:05d}", func_id=f"demo__s.f{i % 3}", origin=origin, origin_id=oid,
        status=STATUSES[i % 7 % 3], queue=f"q{i % 2}",
        trigger_time=T0 + (i // 3) if trigger is None else trigger))


def newest_first(records: list[TaskRecord]) -> list[str]:
    ordered = sorted(records, key=lambda r: (r["triggerTime"], r["id"]), reverse=True)
    return [r["id"] for r in ordered]


async def page_through(store: SqlStore, query: TaskRecordQuery) -> list[str]:
    seen: list[str] = []
    while True:
        page = await store.list_task_records(query)
        seen += [r["id"] for r in page.items]
        if page.next_cursor is None:
            return seen
        query.cursor = page.next_cursor


async def test_paging_every_filter_combination(store: SqlStore) -> None:
    batch = [make(i) for i in range(240)]
    await store.insert_task_records(batch)
    samples = (batch[0], batch[17], batch[3])  # direct (originId NULL), syncAPI/o2, ...
    for size in range(len(TASK_RECORD_FILTERS) + 1):
        for fields in itertools.combinations(TASK_RECORD_FILTERS, size):
            for sample in samples:
                filters: dict[str, Any] = {f: sample.get(f) for f in fields}
                expected = newest_first([r for r in batch
                                         if all(r.get(f) == v for f, v in filters.items())])
                got = await page_through(store, TaskRecordQuery(filters=filters, limit=7))
                assert got == expected, filters
    window = await page_through(store, TaskRecordQuery(filters={"queue": "q1"}, since=T0 + 10,
                                                       until=T0 + 40, limit=4))
    assert window == newest_first([r for r in batch if r["queue"] == "q1"
                                   and T0 + 10 <= (r["triggerTime"] or 0) < T0 + 40])


# filter fields → the index that must answer them (filter + order + cursor in one range)
INDEXES: dict[tuple[str, ...], str] = {
    (): "ix_task_records_time",
    ("funcId",): "ix_task_records_func_id",
    ("origin",): "ix_task_records_origin",
    ("originId",): "ix_task_records_origin_id",
    ("status",): "ix_task_records_status",
    ("queue",): "ix_task_records_queue",
    ("funcId", "status"): "ix_task_records_func_status",
    ("origin", "status"): "ix_task_records_origin_status",
}


async def plan(store: SqlStore, query: TaskRecordQuery) -> tuple[str, str]:
    """(index used, the whole plan as text)."""
    sql, params = list_sql(query, store.db.dialect.name)
    async with store.db.session() as s:
        if store.db.dialect.name == "sqlite":
            rows = await s.fetchall(f"EXPLAIN QUERY PLAN {sql}", params)
            text = " | ".join(str(r[-1]) for r in rows)
            found = re.search(r"USING (?:COVERING )?INDEX (\w+)", text)
            return (found.group(1) if found else ""), text
        rows = await s.fetchall(f"EXPLAIN {sql}", params)
        return str(rows[0][5]), " | ".join(str(r) for r in rows)


async def test_each_filter_is_one_index_range(store: SqlStore) -> None:
    await store.insert_task_records([make(i) for i in range(3000)])
    if store.db.dialect.name == "mysql":
        async with store.db.session() as s:
            await s.fetchall("ANALYZE TABLE task_records")
    first = (await store.list_task_records(TaskRecordQuery(limit=1500))).next_cursor
    sample = make(1)
    combinations = [c for n in range(len(TASK_RECORD_FILTERS) + 1)
                    for c in itertools.combinations(TASK_RECORD_FILTERS, n)]
    for fields in combinations:
        filters: dict[str, Any] = {f: sample.get(f) for f in fields}
        index = INDEXES.get(fields) or index_for(fields)
        for cursor in (None, first):
            used, text = await plan(store, TaskRecordQuery(filters=filters, cursor=cursor,
                                                           since=T0 if cursor else None))
            assert used == index, text
            assert "TEMP B-TREE" not in text.upper() and "filesort" not in text, text
            assert "SCAN task_records " not in text or not fields, text  # no full scan


def rule(records: list[TaskRecord], older_than: float, keep: int,
         limits: Mapping[str, int]) -> list[str]:
    """What survives the prune rule, computed naively: age first, then newest N per originId."""
    kept: list[str] = []
    young = [r for r in records if (r["triggerTime"] or 0) >= older_than]
    for oid in {r.get("originId") for r in young}:
        limit = keep if oid is None else limits.get(oid, keep)
        kept += newest_first([r for r in young if r.get("originId") == oid])[:max(limit, 0)]
    return sorted(kept)


async def prune_until_done(store: SqlStore, older_than: float, keep: int,
                           limits: dict[str, int]) -> None:
    while await store.prune_task_records(older_than=older_than, keep_per_origin=keep,
                                         limits=limits):
        pass


async def test_batched_prune_matches_the_rule(store: SqlStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(prune_module, "BATCH", 7)
    monkeypatch.setattr(prune_module, "BUDGET", 25)  # several rounds for the first step
    full_passes = 0  # slices of a sweep over every originId
    counted = prune_module.SqlPrune._sweep

    async def counting(self: SqlStore, start: str, floor: int) -> tuple[set[str | None], str | None]:
        nonlocal full_passes
        full_passes += 1
        return await counted(self, start, floor)

    monkeypatch.setattr(prune_module.SqlPrune, "_sweep", counting)
    records = [make(i) for i in range(300)]
    records += [make(1000 + i, trigger=T0 + 50, origin_id="tied") for i in range(12)]
    await store.insert_task_records(records)
    fake = store.clock
    assert isinstance(fake, FakeClock)

    async def check(older_than: float, keep: int, limits: dict[str, int]) -> None:
        nonlocal records
        await prune_until_done(store, older_than, keep, limits)
        left = sorted(await page_through(store, TaskRecordQuery(limit=500)))
        assert left == rule(records, older_than, keep, limits)
        records = [r for r in records if r["id"] in set(left)]

    await check(T0 + 10, 20, {"o1": 5, "tied": 4})
    # an unfinished round (budget spent) saves nothing: the next one looks at the same
    # originIds again; from here on every round finishes, so only the written and the lowered
    # originIds get looked at
    monkeypatch.setattr(prune_module, "BUDGET", 10_000)
    passes = full_passes
    fake.advance(3600)  # the records above are now old news; only new writes get looked at
    new = [make(2000 + i, trigger=T0 + 200 + i, origin_id="o2") for i in range(30)]
    records += new
    await store.insert_task_records(new)
    await check(T0 + 10, 20, {"o1": 5, "tied": 4})
    fake.advance(3600)
    await check(T0 + 10, 20, {"o1": 5, "tied": 4, "o3": 2})  # one limit lowered
    await check(T0 + 10, 30, {"tied": 4, "o3": 2})  # raised: nothing goes
    assert full_passes == passes  # none of those rounds counted every originId
    await check(T0 + 20, 3, {})  # keep lowered: a full pass
    assert full_passes > passes
    await check(T0 + 20, 0, {"o4": 1})


async def test_prune_state_survives_a_restart_and_the_sweep_goes_in_slices(
        store: SqlStore, store_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A first round counts every originId in slices of the originId index (one slice a
    round); a second store object on the same database (a restarted Beat, a new leader) carries
    on from the saved state: no sweep again, only the originIds written since."""
    monkeypatch.setattr(prune_module, "SWEEP_ROWS", 25)
    monkeypatch.setattr(prune_module, "BATCH", 4)
    monkeypatch.setattr(prune_module, "LANES", {"sqlite": 3, "mysql": 3})  # lanes on both
    slices: list[str] = []
    counted = prune_module.SqlPrune._sweep

    async def counting(self: SqlStore, start: str, floor: int) -> tuple[set[str | None], str | None]:
        slices.append(start)
        return await counted(self, start, floor)

    monkeypatch.setattr(prune_module.SqlPrune, "_sweep", counting)
    records = [make(i, origin_id=f"o{i % 12:02d}") for i in range(120)]  # 10 per originId
    records += [make(500 + i, origin_id=None) for i in range(9)]
    await store.insert_task_records(records)

    async def sweep_to_the_end(on: SqlStore, keep: int) -> None:
        for _ in range(20):  # until a round needs no slice
            before = len(slices)
            await on.prune_task_records(older_than=0, keep_per_origin=keep)
            if len(slices) == before:
                return

    await sweep_to_the_end(store, 6)
    rounds = len(slices)
    assert rounds > 2  # 120 entries, 25 a slice
    assert sorted(await page_through(store, TaskRecordQuery(limit=500))) == rule(records, 0, 6, {})
    async with open_store(StoreSettings(url=store_url)) as again:
        assert isinstance(again, SqlStore)
        again.clock = FakeClock(T0 + 3600)  # the rows above are no longer "written since"
        assert await again.prune_task_records(older_than=0, keep_per_origin=6) == 0
        assert len(slices) == rounds  # carried on: no sweep
        new = [make(900 + i, trigger=T0 + 100 + i, origin_id="o03") for i in range(4)]
        records += new
        await again.insert_task_records(new)
        assert await again.prune_task_records(older_than=0, keep_per_origin=6) == 4
        assert len(slices) == rounds
        again.clock = FakeClock(T0 + 7200)
        await sweep_to_the_end(again, 5)
        assert len(slices) > rounds + 2  # keep went down: a sweep again, in slices
        left = await page_through(again, TaskRecordQuery(limit=500))
        assert sorted(left) == rule(records, 0, 5, {})
