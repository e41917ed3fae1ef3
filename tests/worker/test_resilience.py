"""A worker process rides out a Redis restart (a private redis-server killed and started again,
without persistence: streams, groups, scripts and keys are all gone)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Callable
from pathlib import Path

from tests.conftest import RedisServer
from tests.worker.conftest import WORK, WORK_CODE, Bench, WorkerProcess, marks

from fluxfunc_common.envelope import TaskStatus
from fluxfunc_common.redisconn import open_redis
from fluxfunc_common.settings import Settings
from fluxfunc_common.store import open_store


async def test_worker_survives_a_redis_restart(make_settings: Callable[..., Settings],
                                               tmp_path: Path) -> None:
    server = RedisServer()
    server.start()
    worker: WorkerProcess | None = None
    try:
        settings = make_settings(redis={"url": server.url, "namespace": "r" + secrets.token_hex(4)})
        async with open_redis(settings.redis) as clients, open_store(settings.store) as store:
            bench = Bench(settings, clients, store, tmp_path)
            await bench.publish(WORK, WORK_CODE)
            out = tmp_path / "e.txt"
            worker = WorkerProcess(bench.config("w"), tmp_path / "w.log")
            await worker.ready(bench)
            assert (await bench.result(await bench.enqueue(f"{WORK}.append", {"path": str(out)}))).status \
                is TaskStatus.SUCCESS
            assert server.proc is not None
            server.proc.kill()
            server.proc.wait(10)
            await asyncio.sleep(1.5)
            server.start()
            task_id = await bench.enqueue(f"{WORK}.append", {"path": str(out), "i": 2})
            result = await bench.result(task_id, within=30)
            assert result.status is TaskStatus.SUCCESS and result.result == 2
            assert [t for what, t, _ in marks(out)][-1] == task_id
            assert worker.alive()
            assert worker.stop() == 0
            assert any(ln.get("event", "").startswith("fetch failed") for ln in worker.lines())
    finally:
        if worker is not None:
            worker.kill()
        server.stop()
