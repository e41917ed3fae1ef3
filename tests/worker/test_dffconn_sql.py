"""``DFF.CONN`` of ``mysql`` and ``postgresql`` connectors against the real servers of this
machine (a database / schema of the test's own, dropped at the end): query, non_query, a
transaction rolled back, ``?`` parameters that cannot inject, a wrong password as a clear
task error, and a changed connector picked up by a helper kept at module level."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable, Iterator

import psycopg
import pymysql
import pytest
from tests.connector_servers import require
from tests.worker.conftest import Bench, WorkerProcess
from tests.worker.dffconn_support import add_connector, change_connector, unique

from fluxfunc_common.envelope import TaskStatus

SCRIPT = '''
DB = DFF.CONN("{cid}")  # kept at module level, as DataFlux Func scripts do


@DFF.API("Round trip")
def round_trip():
    DB.non_query("DELETE FROM t")
    inserted = DB.non_query("INSERT INTO t (name, note) VALUES (?, ?), (?, ?)", ["a", "50%", "b", "it's"])
    trans = DB.start_trans()
    DB.trans_non_query(trans, "INSERT INTO t (name, note) VALUES (?, ?)", ["c", None])
    inside = DB.trans_query(trans, "SELECT name FROM t ORDER BY name")
    DB.rollback(trans)
    after = DB.query("SELECT name, note FROM t ORDER BY name")
    some = DB.query("SELECT name FROM t WHERE name IN (?) AND note LIKE '%' ORDER BY name", [["a", "b"]])
    return {{"inserted": inserted, "inside": [r["name"] for r in inside], "after": after,
            "some": [r["name"] for r in some]}}


@DFF.API("Injection")
def injection():
    return DB.query("SELECT * FROM t WHERE name = ?", ["x' OR '1'='1"])


@DFF.API("Which database")
def which():
    return DB.query("{which}")[0]["d"]


@DFF.API("Bad")
def bad():
    return DFF.CONN("{cid}_bad").query("SELECT 1")
'''
TABLE = "CREATE TABLE t (name VARCHAR(20) NOT NULL, note VARCHAR(20) NULL)"


@pytest.fixture
def mysql_dbs() -> Iterator[list[str]]:
    require("mysql")
    names = [unique("h11_conn"), unique("h11_conn")]
    root = pymysql.connect(host="127.0.0.1", port=3306, user="root", autocommit=True)
    with root.cursor() as cur:
        for name in names:
            cur.execute(f"CREATE DATABASE {name}")
            cur.execute(f"CREATE TABLE {name}.t (name VARCHAR(20) NOT NULL, note VARCHAR(20) NULL)")
            cur.execute(f"INSERT INTO {name}.t VALUES ('{name}', NULL)")
    try:
        yield names
    finally:
        with root.cursor() as cur:
            for name in names:
                cur.execute(f"DROP DATABASE IF EXISTS {name}")
        root.close()


@pytest.fixture
async def pg_schema() -> AsyncIterator[str]:
    require("postgresql")
    name = unique("h11_conn")
    with psycopg.connect(host="127.0.0.1", port=5432, user="postgres", dbname="test",
                         autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {name}")
        conn.execute(f"CREATE TABLE {name}.t (name VARCHAR(20) NOT NULL, note VARCHAR(20) NULL)")
        try:
            yield name
        finally:
            conn.execute(f"DROP SCHEMA {name} CASCADE")


async def _round_trip(bench: Bench, script: str) -> None:
    result = await bench.result(await bench.enqueue(f"{script}.round_trip"))
    assert result.status is TaskStatus.SUCCESS, result.exception
    assert result.result == {"inserted": 2, "inside": ["a", "b", "c"],
                             "after": [{"name": "a", "note": "50%"}, {"name": "b", "note": "it's"}],
                             "some": ["a", "b"]}
    injected = await bench.result(await bench.enqueue(f"{script}.injection"))
    assert injected.status is TaskStatus.SUCCESS and injected.result == []


async def _bad_password(bench: Bench, script: str) -> None:
    bad = await bench.result(await bench.enqueue(f"{script}.bad"))
    assert bad.status is TaskStatus.FAILURE and "authentication failed" in (bad.exception or "")


async def _sees(bench: Bench, func: str, want: str) -> None:
    deadline = time.monotonic() + 20
    while (got := (await bench.result(await bench.enqueue(func))).result) != want:
        assert time.monotonic() < deadline, f"connector change not seen: {got}"


async def test_mysql(bench: Bench, workers: Callable[..., WorkerProcess], mysql_dbs: list[str]) -> None:
    cid = unique("mysql")
    base = {"host": "127.0.0.1", "port": 3306, "user": "root"}
    await add_connector(bench, cid, "mysql", **base, database=mysql_dbs[0])
    await add_connector(bench, f"{cid}_bad", "mysql", **base, password="wrong-password")
    await bench.publish("demo__mysql", SCRIPT.format(cid=cid, which="SELECT DATABASE() AS d"))
    w = workers("w")
    await _round_trip(bench, "demo__mysql")
    await _bad_password(bench, "demo__mysql")
    assert (await bench.result(await bench.enqueue("demo__mysql.which"))).result == mysql_dbs[0]
    await change_connector(bench, cid, **base, database=mysql_dbs[1])
    await _sees(bench, "demo__mysql.which", mysql_dbs[1])
    assert w.stop() == 0


async def test_postgresql(bench: Bench, workers: Callable[..., WorkerProcess], pg_schema: str) -> None:
    cid = unique("pg")
    base = {"host": "127.0.0.1", "port": 5432, "user": "postgres", "database": "test"}
    await add_connector(bench, cid, "postgresql", **base, schema=pg_schema)
    await add_connector(bench, f"{cid}_bad", "postgresql", **{**base, "user": f"nobody_{pg_schema}"})
    code = SCRIPT.format(cid=cid, which="SELECT current_schema() AS d")
    await bench.publish("demo__pg", code)
    w = workers("w")
    await _round_trip(bench, "demo__pg")
    bad = await bench.result(await bench.enqueue("demo__pg.bad"))
    assert bad.status is TaskStatus.FAILURE and f"nobody_{pg_schema}" in (bad.exception or "")
    assert (await bench.result(await bench.enqueue("demo__pg.which"))).result == pg_schema
    assert w.stop() == 0
