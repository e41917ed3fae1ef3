"""Benchmark of task records at volume: list queries (every API filter, first and deepest page)
and janitor prune rounds, on SQLite (a temp file) and MariaDB (a database created and dropped
here), with N rows generated in SQL (recursive CTE / MariaDB's sequence engine) into the
migrated schema, secondary indexes dropped for the fill and rebuilt after it.

Measures, per backend and size:
  - fill time (rows + index build);
  - each list query's median call time over ``--repeat`` warm runs (the call includes the
    driver round trip and JSON parsing of the page, so it is an upper bound of server time),
    and its EXPLAIN (QUERY PLAN), which must show a range of one of the composite indexes;
  - janitor rounds, each with its wall time, this process's CPU time (for SQLite: all of the
    work) and the load average: the first one on a database without saved prune state (the
    first slice of the sweep over the originId index), the next one, the rest of the sweep
    (rounds, slowest, total), one with nothing to prune, one after new records arrived for a
    few originIds, one pruning ``--prune`` rows by age, and one with nothing to prune again.

    .venv/bin/python bench/records.py [--backends sqlite,mysql] [--rows 1000000,10000000]
                                      [--prune 100000] [--repeat 5] [--mysql-host 127.0.0.1]
                                      [--keep-db PATH | --reuse-db PATH] [--json]

``--keep-db PATH`` fills the SQLite table in PATH (a new file) instead of a temp file and keeps
it; ``--reuse-db PATH`` skips the fill and measures such a file again (same ``--rows``; copy it
first to measure a fresh one: each run prunes it). Both take one SQLite backend and one size.

Data: trigger times 0.1 s apart; 200 funcs; 3 origins; rows/1000 originIds (1000 records each, the limit);
status 90 % success, 5 % failure, 5 % timeout; 8 queues. See docs/scaling.md for results.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TypeVar

import pymysql

from fluxfunc_common.envelope import Origin, TaskResult, TaskStatus
from fluxfunc_common.settings import StoreSettings
from fluxfunc_common.store import SqlStore, TaskRecordQuery, open_store, task_record
from fluxfunc_common.store.records import encode_cursor, list_sql

T = TypeVar("T")
T0 = 1_600_000_000.0
STEP = 0.1
KEEP = 1000


def origins(rows: int) -> int:
    """As many originIds as leave each exactly at the limit (:data:`KEEP` records)."""
    return max(1, rows // KEEP)

_SQLITE_FILL = """
INSERT INTO task_records (id, func_id, origin, origin_id, status, queue, attempt, trigger_time,
                          start_time, end_time, data, write_time)
WITH RECURSIVE seq(n) AS (SELECT 0 UNION ALL SELECT n + 1 FROM seq WHERE n < ?)
SELECT printf('t%010d', n), 'demo__s.f' || ((n / 3) % 200),
       CASE ((n / 7) % {origins}) % 3 WHEN 0 THEN 'syncAPI' WHEN 1 THEN 'asyncAPI' ELSE 'cronJob' END,
       'o' || ((n / 7) % {origins}),
       CASE n % 20 WHEN 0 THEN 'failure' WHEN 1 THEN 'timeout' ELSE 'success' END,
       'q' || (n % 8), 1, ? + n * ?, NULL, NULL, printf('{"id":"t%010d","v":1}', n), ? + n * ?
FROM seq
"""
_MYSQL_FILL = """
INSERT INTO task_records (id, func_id, origin, origin_id, status, queue, attempt, trigger_time,
                          start_time, end_time, data, write_time)
SELECT CONCAT('t', LPAD(seq, 10, '0')), CONCAT('demo__s.f', MOD(seq DIV 3, 200)),
       CASE MOD(MOD(seq DIV 7, {origins}), 3) WHEN 0 THEN 'syncAPI' WHEN 1 THEN 'asyncAPI'
            ELSE 'cronJob' END,
       CONCAT('o', MOD(seq DIV 7, {origins})),
       CASE MOD(seq, 20) WHEN 0 THEN 'failure' WHEN 1 THEN 'timeout' ELSE 'success' END,
       CONCAT('q', MOD(seq, 8)), 1, ? + seq * ?, NULL, NULL,
       CONCAT('{"id":"t', LPAD(seq, 10, '0'), '","v":1}'), ? + seq * ?
FROM seq_0_to_{last}
"""


@dataclass
class Result:
    backend: str
    rows: int
    fill_s: float = 0.0
    queries_ms: dict[str, float] = field(default_factory=dict)
    plans: dict[str, list[str]] = field(default_factory=dict)
    prune_ms: dict[str, float] = field(default_factory=dict)
    prune_cpu_ms: dict[str, float] = field(default_factory=dict)
    pruned: dict[str, int] = field(default_factory=dict)
    load: dict[str, float] = field(default_factory=dict)
    sweep: dict[str, float] = field(default_factory=dict)


def queries(rows: int) -> dict[str, TaskRecordQuery]:
    """Every API filter (and the common combinations), first and deepest page."""
    filters: dict[str, dict[str, str]] = {
        "all": {}, "funcId": {"funcId": "demo__s.f7"}, "origin": {"origin": "cronJob"},
        "originId": {"originId": "o42"}, "status": {"status": "failure"},
        "queue": {"queue": "q3"},
        "funcId+status": {"funcId": "demo__s.f7", "status": "failure"},
        "originId+status": {"originId": "o42", "status": "timeout"},
        "origin+status": {"origin": "asyncAPI", "status": "failure"},
    }
    deep = encode_cursor(T0 + 60 * STEP, "t0000000060")  # near the oldest row: the last page
    found: dict[str, TaskRecordQuery] = {}
    for name, flt in filters.items():
        found[name] = TaskRecordQuery(filters=flt)
        found[f"{name} deepest"] = TaskRecordQuery(filters=flt, cursor=deep)
    middle = T0 + rows // 2 * STEP
    found["window"] = TaskRecordQuery(since=middle, until=middle + 3600)
    found["funcId+window"] = TaskRecordQuery(filters={"funcId": "demo__s.f7"}, since=middle,
                                             until=middle + 3600)
    return found


@asynccontextmanager
async def backend_store(backend: str, host: str, db: Path | None) -> AsyncIterator[SqlStore]:
    """A migrated store: SQLite in ``db`` (kept) or a temp file; MariaDB in a new database."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="ffrecords-") as tmp:
            async with open_store(StoreSettings(url=f"sqlite:///{db or Path(tmp) / 'r.db'}"),
                                  migrate=True) as store:
                assert isinstance(store, SqlStore)
                yield store
        return
    name = f"ffbench_records_{uuid.uuid4().hex[:8]}"
    admin = pymysql.connect(host=host, user="root", autocommit=True)
    try:
        admin.cursor().execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        async with open_store(StoreSettings(url=f"mysql://root@{host}:3306/{name}"),
                              migrate=True) as store:
            assert isinstance(store, SqlStore)
            yield store
    finally:
        admin.cursor().execute(f"DROP DATABASE IF EXISTS `{name}`")
        admin.close()


async def fill(store: SqlStore, rows: int) -> None:
    db = store.db
    if db.dialect.name == "sqlite":
        async with db.session() as s:
            found = await s.fetchall("SELECT name, sql FROM sqlite_master WHERE type = 'index' "
                                     "AND tbl_name = 'task_records' AND sql IS NOT NULL")
            await s.execute("PRAGMA cache_size = -200000")
        async with db.transaction() as s:
            for name, _ in found:
                await s.execute(f"DROP INDEX {name}")
            sql = _SQLITE_FILL.replace("{origins}", str(origins(rows)))
            await s.execute(sql, (rows - 1, T0, STEP, T0, STEP))
            for _, sql in found:
                await s.execute(sql)
        async with db.session() as s:
            await s.execute("ANALYZE")
        return
    async with db.session() as s:
        found = await s.fetchall(
            "SELECT index_name, GROUP_CONCAT(column_name ORDER BY seq_in_index) "
            "FROM information_schema.statistics WHERE table_schema = DATABASE() "
            "AND table_name = 'task_records' AND index_name <> 'PRIMARY' GROUP BY index_name")
        await s.execute("ALTER TABLE task_records " + ", ".join(f"DROP INDEX {n}" for n, _ in found))
        sql = _MYSQL_FILL.replace("{last}", str(rows - 1)).replace("{origins}", str(origins(rows)))
        await s.execute(sql, (T0, STEP, T0, STEP))
        await s.execute("ALTER TABLE task_records "
                        + ", ".join(f"ADD INDEX {n} ({cols})" for n, cols in found))
        await s.execute("ANALYZE TABLE task_records")


async def explain(store: SqlStore, query: TaskRecordQuery) -> list[str]:
    sql, params = list_sql(query, store.db.dialect.name)
    async with store.db.session() as s:
        if store.db.dialect.name == "sqlite":
            rows = await s.fetchall(f"EXPLAIN QUERY PLAN {sql}", params)
            return [str(r[-1]) for r in rows]
        rows = await s.fetchall(f"EXPLAIN {sql}", params)
        # id, select_type, table, type, possible_keys, key, key_len, ref, rows, Extra
        return [f"type={r[3]} key={r[5]} rows={r[8]} extra={r[9]}" for r in rows]


async def timed_ms(coro: Awaitable[T]) -> tuple[float, T]:
    start = time.perf_counter()
    value = await coro
    return (time.perf_counter() - start) * 1000, value


async def measure(store: SqlStore, rows: int, repeat: int, prune_rows: int, res: Result) -> None:
    for name, query in queries(rows).items():
        runs = []
        for _ in range(repeat):
            ms, _page = await timed_ms(store.list_task_records(query))
            runs.append(ms)
        res.queries_ms[name] = round(statistics.median(runs), 2)
        res.plans[name] = await explain(store, query)
    prune = PruneRounds(store, res)
    await prune.round("first round (no saved state: first sweep slice)", T0 - 1)
    await prune.round("next round (sweep under way)", T0 - 1)
    await prune.sweep_to_the_end()
    await prune.round("nothing to prune", T0 - 1)
    fresh = [task_record(TaskResult(id=f"new{i}", func_id="demo__s.f1", origin=Origin.CRON_JOB,
                                    origin_id=f"o{i % 10}", status=TaskStatus.SUCCESS,
                                    trigger_time=T0 + rows * STEP + i))
             for i in range(1000)]
    await store.insert_task_records(fresh)
    await prune.round("after 1000 new records in 10 originIds", T0 - 1)
    async with store.db.session() as s:  # the sweep trimmed some of the oldest rows already
        nth = await s.fetchall("SELECT trigger_time FROM task_records ORDER BY trigger_time, id "
                               "LIMIT 1 OFFSET ?", (prune_rows,))
    cutoff = float(nth[0][0]) if nth else T0 + prune_rows * STEP
    await prune.round(f"prune {prune_rows} by age", cutoff)
    await prune.round("nothing to prune, again", cutoff)


@dataclass
class PruneRounds:
    """Janitor rounds, each timed (wall and this process's CPU: for SQLite, all of the work)."""

    store: SqlStore
    res: Result

    async def round(self, label: str, older_than: float) -> int:
        cpu = time.process_time()
        ms, n = await timed_ms(self.store.prune_task_records(older_than=older_than,
                                                             keep_per_origin=KEEP))
        self.res.prune_ms[label], self.res.pruned[label] = round(ms, 2), n
        self.res.prune_cpu_ms[label] = round((time.process_time() - cpu) * 1000, 1)
        self.res.load[label] = round(os.getloadavg()[0], 1)
        return int(n)

    async def sweep_to_the_end(self) -> None:
        """The rounds until the sweep over the originId index is done (none of them prunes
        by age): how many, the slowest, the total."""
        times: list[float] = []
        pruned = 0
        while await self._sweeping():
            ms, n = await timed_ms(self.store.prune_task_records(older_than=T0 - 1,
                                                                 keep_per_origin=KEEP))
            times.append(ms)
            pruned += n
        self.res.sweep = {"rounds": len(times), "total_s": round(sum(times) / 1000, 1),
                          "max_ms": round(max(times, default=0), 1),
                          "median_ms": round(statistics.median(times), 1) if times else 0,
                          "pruned": pruned}

    async def _sweeping(self) -> bool:
        async with self.store.db.session() as s:
            rows = await s.fetchall("SELECT data FROM prune_state WHERE name = 'task_records'")
        return not rows or json.loads(rows[0][0]).get("sweep") is not None


async def run(backend: str, rows: int, args: argparse.Namespace) -> Result:
    res = Result(backend, rows)
    async with backend_store(backend, args.mysql_host, args.keep_db or args.reuse_db) as store:
        if args.reuse_db is None:
            start = time.perf_counter()
            await fill(store, rows)
            res.fill_s = round(time.perf_counter() - start, 1)
            print(f"# {backend} {rows}: filled in {res.fill_s} s", file=sys.stderr, flush=True)
        await measure(store, rows, args.repeat, args.prune, res)
    return res


def show(res: Result) -> None:
    print(f"== {res.backend}, {res.rows:,} rows (fill {res.fill_s} s)")
    for name, ms in res.queries_ms.items():
        print(f"  {name:28} {ms:8.2f} ms   {' | '.join(res.plans[name])}")
    for name, ms in res.prune_ms.items():
        print(f"  janitor: {name:48} {ms:9.2f} ms  (CPU here {res.prune_cpu_ms[name]:8.1f} ms, "
              f"load {res.load[name]})  pruned {res.pruned[name]}")
    print(f"  janitor: sweep to the end: {res.sweep}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default="sqlite,mysql")
    parser.add_argument("--rows", default="1000000")
    parser.add_argument("--prune", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--mysql-host", default="127.0.0.1")
    parser.add_argument("--json", action="store_true")
    kept = parser.add_mutually_exclusive_group()
    kept.add_argument("--keep-db", type=Path, help="fill this new SQLite file and keep it")
    kept.add_argument("--reuse-db", type=Path, help="measure this kept SQLite file, no fill")
    args = parser.parse_args()
    if args.keep_db or args.reuse_db:
        if args.backends != "sqlite" or "," in args.rows:
            parser.error("--keep-db/--reuse-db take --backends sqlite and one --rows")
        if args.keep_db and args.keep_db.exists():
            parser.error(f"--keep-db {args.keep_db}: the file exists")
        if args.reuse_db and not args.reuse_db.is_file():
            parser.error(f"--reuse-db {args.reuse_db}: no such file")
    results = []
    for rows in (int(r) for r in args.rows.split(",")):
        for backend in args.backends.split(","):
            res = asyncio.run(run(backend, rows, args))
            results.append(res)
            if not args.json:
                show(res)
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=2))


if __name__ == "__main__":
    main()
