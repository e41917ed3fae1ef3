"""Task records are written in batches, on SQLite and on MariaDB, by a real worker process,
with the call's kwargs, secrets masked and the size capped."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from tests.processes import wait_for
from tests.worker.conftest import WORK, WORK_CODE, Bench, WorkerProcess
from tests.worker.dffconn_support import CIPHER, add_connector

from fluxfunc_common import ids
from fluxfunc_common.envelope import Origin, TaskEnvelope, TaskResult, TaskStatus
from fluxfunc_common.recordkwargs import MASK, MAX_KWARGS_BYTES
from fluxfunc_common.redisconn import open_redis
from fluxfunc_common.settings import Settings
from fluxfunc_common.store import Entity, TaskRecordQuery, open_store
from fluxfunc_worker.records import RecordBatcher

TASKS = 300


@pytest.fixture
async def store_bench(make_settings: Callable[..., Settings], store_url: str,
                      tmp_path: Path) -> AsyncIterator[Bench]:
    settings = make_settings(store={"url": store_url})
    async with open_redis(settings.redis) as clients, open_store(settings.store) as store:
        yield Bench(settings, clients, store, tmp_path)


async def test_records_are_batched(store_bench: Bench, tmp_path: Path) -> None:
    bench = store_bench
    await bench.publish(WORK, WORK_CODE)
    ids = await bench.enqueue_many(f"{WORK}.append", [{"path": str(tmp_path / "e.txt"), "i": i}
                                                      for i in range(TASKS)])
    w = WorkerProcess(bench.config("w", record_batch_seconds=0.5), tmp_path / "w.log")
    try:
        async def recorded() -> bool:
            page = await bench.store.list_task_records(
                TaskRecordQuery(filters={"funcId": f"{WORK}.append"}, limit=TASKS + 10))
            return len(page.items) == TASKS

        await wait_for(recorded, 60, interval=0.1, what=f"{TASKS} records")
        assert w.stop() == 0
    finally:
        w.kill()
    [stopped] = [ln for ln in w.lines() if ln.get("event") == "worker stopped"]
    assert stopped["records_written"] == TASKS
    assert 1 <= stopped["record_flushes"] <= TASKS // 20, "records go in batches, not one per task"
    record = await bench.record(ids[7])
    assert record["status"] == "success" and record["result"] == 7 and record["funcId"] == f"{WORK}.append"
    assert record["startTime"] <= record["endTime"]


KWARGS_CODE = """
@DFF.API("Echo")
def echo(**kwargs):
    return sorted(kwargs)
"""


async def test_records_keep_the_kwargs_with_secrets_masked(store_bench: Bench, tmp_path: Path,
                                                           unique_id: str) -> None:
    """A record shows what the task was called with; a password env variable's value and a
    connector's secret in them read ``*****`` whether or not the task read them."""
    bench = store_bench
    await bench.store.create(Entity.ENV_VARIABLE, {"id": f"pw_{unique_id}", "valueType": "password",
                                                   "valueCipher": CIPHER.encrypt(f"envpw-{unique_id}")})
    await add_connector(bench, f"c_{unique_id}", "redis", host="127.0.0.1", port=6379,
                        password=f"connpw-{unique_id}")
    script = f"demo__kw{unique_id}"
    await bench.publish(script, KWARGS_CODE)
    kwargs = {"dsn": f"redis://:connpw-{unique_id}@h/0", "env": [f"envpw-{unique_id}"], "n": 3,
              "big": "b" * (MAX_KWARGS_BYTES + 1)}
    task_id = await bench.enqueue(f"{script}.echo", kwargs)
    w = WorkerProcess(bench.config("w", record_batch_seconds=0.2), tmp_path / "w.log")
    try:
        record = await bench.record(task_id, within=60)
    finally:
        w.kill()
    assert record["status"] == "success", record
    assert record["kwargs"]["dsn"] == f"redis://:{MASK}@h/0"
    assert record["kwargs"]["env"] == [MASK] and record["kwargs"]["n"] == 3
    assert record["kwargs"]["big"].endswith(f"({MAX_KWARGS_BYTES + 3} bytes)")
    assert record["kwargsTruncated"] is True


@pytest.fixture
def unique_id() -> str:
    return uuid.uuid4().hex[:10]


class ListStore:
    def __init__(self) -> None:
        self.written: list[dict[str, Any]] = []

    async def insert_task_records(self, records: Sequence[dict[str, Any]]) -> None:
        self.written += records


class Secrets:
    def __init__(self, values: list[str] | None) -> None:
        self.values = values

    async def current(self) -> list[str]:
        if self.values is None:
            raise OSError("database down")
        return self.values


def _env(**fields: Any) -> TaskEnvelope:
    return TaskEnvelope(id=ids.task_id(), func_id="demo__basic.plus", origin=Origin.DIRECT,
                        trigger_time=time.time(), **fields)


async def test_record_batcher_masks_at_flush_and_writes_no_kwargs_without_secrets() -> None:
    store = ListStore()
    secrets = Secrets(["pw1"])
    batcher = RecordBatcher(store, 0.01, secrets=secrets)  # type: ignore[arg-type]
    e = _env(kwargs={"a": "x-pw1-y"})
    batcher.add(TaskResult.for_envelope(e, TaskStatus.SUCCESS), e.kwargs)
    batcher.add(TaskResult.for_envelope(_env(), TaskStatus.SUCCESS))  # no kwargs known: none kept
    await batcher.flush()
    assert [r.get("kwargs") for r in store.written] == [{"a": f"x-{MASK}-y"}, None]
    assert e.kwargs == {"a": "x-pw1-y"}, "the envelope is not changed"
    secrets.values = None  # the secrets cannot be read: the records go without kwargs
    batcher.add(TaskResult.for_envelope(e, TaskStatus.SUCCESS), e.kwargs)
    await batcher.flush()
    assert "kwargs" not in store.written[-1] and store.written[-1]["id"] == e.id
