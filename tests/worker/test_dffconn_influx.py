"""``DFF.CONN`` of ``influxdb`` connectors against the real InfluxDB 1.x of this machine
(127.0.0.1:8086; a database of the test's own, dropped at the end), the connection test, and
the line protocol every HTTP time-series connector writes."""

from __future__ import annotations

import urllib.parse
import urllib.request
from collections.abc import Callable

import pytest
from tests.connector_servers import require
from tests.worker.conftest import Bench, WorkerProcess
from tests.worker.dffconn_support import add_connector, unique

from fluxfunc_common.connectors.testing import ConnectionTestFailed, check
from fluxfunc_common.connectors.types import ConnectorConfig, ConnectorType
from fluxfunc_common.envelope import TaskStatus
from fluxfunc_worker.dffconn import lineprotocol
from fluxfunc_worker.dffconn.influxdb import format_query

SCRIPT = '''
@DFF.API("Influx")
def influx():
    db = DFF.CONN("{influx}")
    db.write_point("cpu load", {{"value": 0.5, "count": 3, "note": 'say "hi"', "ok": True}},
                   tags={{"host": "a b,c=d"}}, timestamp=1700000000)
    db.write_points([{{"measurement": "cpu load", "fields": {{"value": 1.5}},
                       "tags": {{"host": "z"}}, "time": "2023-11-14T22:13:21Z"}}])
    raw = db.query('SELECT * FROM "cpu load"')
    bound = db.query('SELECT value FROM "cpu load" WHERE host = $h', bind_params={{"h": "z"}},
                     dict_output=True)
    two = db.query2('SELECT value FROM "cpu load" WHERE host = ? AND value > ?', ["a b,c=d", 0])
    many = db.query("SHOW MEASUREMENTS; SHOW TAG KEYS")
    try:
        db.query("SELEC nothing")
        bad = None
    except Exception as exc:
        bad = type(exc).__name__
    return {{"raw": raw, "bound": bound, "two": two, "many": len(many), "bad": bad}}
'''


def _influx(statement: str) -> None:
    body = urllib.parse.urlencode({"q": statement}).encode()
    with urllib.request.urlopen(urllib.request.Request(
            "http://127.0.0.1:8086/query", data=body, method="POST"), timeout=10) as resp:
        resp.read()


async def test_influxdb_helper(bench: Bench, workers: Callable[..., WorkerProcess]) -> None:
    require("influxdb")
    cid, database = unique("influx"), unique("h17influx")
    _influx(f'CREATE DATABASE "{database}"')
    try:
        await add_connector(bench, cid, "influxdb", host="127.0.0.1", port=8086,
                            database=database)
        await bench.publish("demo__influx", SCRIPT.format(influx=cid))
        w = workers("w")
        result = await bench.result(await bench.enqueue("demo__influx.influx"))
        assert result.status is TaskStatus.SUCCESS, result.exception
        raw = result.result["raw"]
        assert raw["statement_id"] == 0
        series = raw["series"][0]
        assert series["name"] == "cpu load"
        assert series["columns"] == ["time", "count", "host", "note", "ok", "value"]
        assert series["values"] == [
            ["2023-11-14T22:13:20Z", 3, "a b,c=d", 'say "hi"', True, 0.5],
            ["2023-11-14T22:13:21Z", None, "z", None, None, 1.5]]
        assert result.result["bound"]["series"] == [
            [{"time": "2023-11-14T22:13:21Z", "value": 1.5, "tags": {}}]]
        assert result.result["two"]["series"][0]["values"] == [["2023-11-14T22:13:20Z", 0.5]]
        assert result.result["many"] == 2
        assert result.result["bad"] == "HttpStatusError"
        assert w.stop() == 0
    finally:
        _influx(f'DROP DATABASE "{database}"')


def test_connection_check() -> None:
    require("influxdb")
    check(ConnectorType.INFLUXDB, ConnectorConfig(host="127.0.0.1", port=8086))
    with pytest.raises(ConnectionTestFailed, match="database missing"):
        check(ConnectorType.INFLUXDB, ConnectorConfig(host="127.0.0.1", port=8086,
                                                      database=unique("missing")))
    with pytest.raises(ConnectionTestFailed, match="host unreachable"):
        check(ConnectorType.INFLUXDB, ConnectorConfig(host="127.0.0.1", port=1, timeout=2))


def test_line_protocol_escapes_and_types() -> None:
    point = lineprotocol.Point.of({
        "measurement": "cpu, x", "tags": {"b": "y=1 z", "a": True, "none": None},
        "fields": {"s": 'q"\\', "i": 3, "f": 1.0, "b": False, "skip": None},
        "timestamp": 1700000000})
    assert lineprotocol.line(point) == (
        'cpu\\,\\ x,a=true,b=y\\=1\\ z b=false,f=1.0,i=3i,s="q\\"\\\\" 1700000000000000000')
    with pytest.raises(TypeError):
        lineprotocol.line(lineprotocol.Point.of({"measurement": "m", "fields": {"x": [1]}}))


@pytest.mark.parametrize(("stamp", "ns"), [
    (1700000000, 1700000000 * 10**9), (1700000000123, 1700000000123 * 10**6),
    (1700000000.5, 1700000000500000000), ("2023-11-14T22:13:20Z", 1700000000 * 10**9),
    (1700000000 * 10**9 + 7, 1700000000 * 10**9 + 7)])
def test_timestamps_become_nanoseconds(stamp: float | str, ns: int) -> None:
    assert lineprotocol.to_ns(stamp) == ns


def test_query2_quotes_parameters() -> None:
    assert format_query("SELECT * FROM m WHERE a = ? AND b > ?", ["x' OR 'a'='a", 2]) == (
        "SELECT * FROM m WHERE a = 'x\\' OR \\'a\\'=\\'a' AND b > 2")
    with pytest.raises(ValueError, match="placeholders"):
        format_query("SELECT ?", [1, 2])
