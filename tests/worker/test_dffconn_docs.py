"""The DataFlux Func script of docs/connectors.md runs unchanged against the real MariaDB,
Redis and Mosquitto of this machine (a database, key and device of the test's own)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pymysql
import redis
from tests.connector_servers import require
from tests.worker.conftest import Bench, WorkerProcess
from tests.worker.dffconn_support import add_connector, unique

from fluxfunc_common.envelope import TaskStatus

DOC = Path(__file__).resolve().parents[2] / "docs" / "connectors.md"


def _script() -> str:
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## A DataFlux Func script that runs unchanged", 1)[1]
    found = re.search(r"```python\n(.*?)```", section, flags=re.S)
    assert found is not None
    return found.group(1)


async def test_the_documented_script_runs(bench: Bench, workers: Callable[..., WorkerProcess]) -> None:
    require("mysql", "redis", "mqtt")
    database, device = unique("h11_doc"), unique("dev")
    root = pymysql.connect(host="127.0.0.1", port=3306, user="root", autocommit=True)
    shared = redis.Redis(host="127.0.0.1", port=6379, decode_responses=True)
    with root.cursor() as cur:
        cur.execute(f"CREATE DATABASE {database}")
        cur.execute(f"CREATE TABLE {database}.readings (device VARCHAR(40), value DOUBLE)")
    try:
        await add_connector(bench, "app_db", "mysql", host="127.0.0.1", user="root", database=database)
        await add_connector(bench, "app_redis", "redis", host="127.0.0.1", port=6379)
        await add_connector(bench, "app_mqtt", "mqtt", host="127.0.0.1", port=1883)
        await bench.publish("demo__doc", _script())
        w = workers("w")
        for n in (1, 2):
            result = await bench.result(await bench.enqueue(
                "demo__doc.save_reading", {"device": device, "value": 1.5 * n}))
            assert result.status is TaskStatus.SUCCESS, result.exception
            assert result.result == {"count": n}
        assert shared.get(f"last_reading:{device}") == '{"value": 3.0}'
        assert w.stop() == 0
    finally:
        shared.delete(f"last_reading:{device}")
        shared.close()
        with root.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {database}")
        root.close()
