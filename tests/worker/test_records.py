"""Task records are written in batches, on SQLite and on MariaDB, by a real worker process."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from tests.processes import wait_for
from tests.worker.conftest import WORK, WORK_CODE, Bench, WorkerProcess

from fluxfunc_common.redisconn import open_redis
from fluxfunc_common.settings import Settings
from fluxfunc_common.store import TaskRecordQuery, open_store

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
