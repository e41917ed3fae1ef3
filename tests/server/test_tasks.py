"""The task API: status resolution, long-poll, cancel, and who may read what."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from tests.server.conftest import Api, FakeWorker

from fluxfunc_common.envelope import TaskResult, TaskStatus

pytestmark = pytest.mark.usefixtures("published")

FIELDS = {"id", "funcId", "origin", "originId", "status", "queue", "attempt", "triggerTime",
          "startTime", "endTime", "kwargs", "result", "exception", "traceback", "printLogs"}


async def enqueue(api: Api, func: str = "plus", kwargs: dict[str, Any] | None = None) -> str:
    _, body, _ = await api.call("POST", f"/api/v1/func/demo__basic.{func}",
                                json={"kwargs": kwargs or {"x": 1}, "options": {"async": True}})
    return str(body["data"]["id"])


async def test_queued_then_running_then_success(api: Api, fake_worker: FakeWorker) -> None:
    await fake_worker.pause()  # nothing is claimed: the task stays "queued" (not yet picked up)
    task_id = await enqueue(api, "slow", {"seconds": 0.5})
    _, body, _ = await api.call("GET", f"/api/v1/tasks/{task_id}")
    data = body["data"]
    assert set(data) >= FIELDS and data["status"] == "queued" and data["funcId"] == "demo__basic.slow"
    # a worker marks a task it starts as running
    marker = '{"consumer": "fake", "startTime": 1.5, "attempt": 1}'
    await api.ctx.redis.set(api.ctx.keys.running(task_id), marker)
    _, body, _ = await api.call("GET", f"/api/v1/tasks/{task_id}")
    assert body["data"]["status"] == "running" and body["data"]["startTime"] == 1.5
    fake_worker.resume()
    _, body, _ = await api.call("GET", f"/api/v1/tasks/{task_id}?wait=10")
    data = body["data"]
    assert data["status"] == "success" and data["result"] == "done"
    assert data["printLogs"] == "fake worker log line" and data["endTime"] >= data["startTime"]


async def test_long_poll_returns_early_and_times_out(api: Api, fake_worker: FakeWorker) -> None:
    await fake_worker.pause()
    task_id = await enqueue(api)
    started = time.monotonic()
    _, body, _ = await api.call("GET", f"/api/v1/tasks/{task_id}?wait=0.3")
    # waited for the 0.3 s asked, and no longer: the held task would never end (10 s: a busy machine)
    assert body["data"]["status"] == "queued" and 0.25 < time.monotonic() - started < 10
    fake_worker.resume()
    _, body, _ = await api.call("GET", f"/api/v1/tasks/{task_id}?wait=30")
    assert body["data"]["status"] == "success"


async def test_failed_task_shows_exception_and_traceback(api: Api, fake_worker: FakeWorker) -> None:
    task_id = await enqueue(api, "fail", {"x": 0})
    _, body, _ = await api.call("GET", f"/api/v1/tasks/{task_id}?wait=10")
    data = body["data"]
    assert data["status"] == "failure" and data["exception"].startswith("ZeroDivisionError")
    assert "Traceback" in data["traceback"]


async def test_task_record_is_the_fallback(api: Api) -> None:
    result = TaskResult(id="task-01ARCHIVED", func_id="demo__basic.plus", status=TaskStatus.SUCCESS,
                        result=3, trigger_time=10.0, end_time=11.0)
    await api.ctx.store.insert_task_records([result.model_dump(by_alias=True, mode="json")])
    _, body, _ = await api.call("GET", "/api/v1/tasks/task-01ARCHIVED")
    assert body["data"]["status"] == "success" and body["data"]["result"] == 3


async def test_kwargs_come_from_the_task_record(api: Api, fake_worker: FakeWorker) -> None:
    """The result key has no kwargs: a finished task shows its record's (masked, capped) ones,
    null until the worker has written the record; an archived one shows them too."""
    task_id = await enqueue(api, "plus", {"x": 5})
    _, body, _ = await api.call("GET", f"/api/v1/tasks/{task_id}?wait=10")
    assert body["data"]["status"] == "success" and body["data"]["kwargs"] is None
    record = TaskResult(id=task_id, func_id="demo__basic.plus", status=TaskStatus.SUCCESS,
                        trigger_time=10.0).model_dump(by_alias=True, mode="json")
    await api.ctx.store.insert_task_records([{**record, "kwargs": {"x": "*****"}, "kwargsTruncated": True}])
    _, body, _ = await api.call("GET", f"/api/v1/tasks/{task_id}")
    assert body["data"]["kwargs"] == {"x": "*****"} and body["data"]["kwargsTruncated"] is True
    assert body["data"]["result"] == 6, "the rest still comes from the result key"
    archived = TaskResult(id="task-01KWARGS", func_id="demo__basic.plus", status=TaskStatus.SUCCESS,
                          trigger_time=10.0).model_dump(by_alias=True, mode="json")
    await api.ctx.store.insert_task_records([{**archived, "kwargs": {"x": 1}}])
    _, body, _ = await api.call("GET", "/api/v1/tasks/task-01KWARGS")
    assert body["data"]["kwargs"] == {"x": 1} and "kwargsTruncated" not in body["data"]


async def test_unknown_task_and_bad_wait(api: Api) -> None:
    _, body, _ = await api.call("GET", "/api/v1/tasks/task-nope", expect=404)
    assert body["reason"] == "EClientNotFound"
    await api.call("GET", "/api/v1/tasks/task-nope", admin=False, expect=401)
    for query in ("wait=-1", "wait=61", "wait=soon", "other=1"):
        await api.call("GET", f"/api/v1/tasks/task-nope?{query}", expect=400)


async def test_api_tasks_are_readable_by_id_others_need_admin(api: Api, fake_worker: FakeWorker) -> None:
    sapi = await api.create("/api/v1/async-apis", {"funcId": "demo__basic.plus"})
    _, body, _ = await api.call("POST", f"/api/v1/async/{sapi['id']}", admin=False,
                                json={"kwargs": {"x": 1}})
    await api.call("GET", f"/api/v1/tasks/{body['data']['id']}?wait=10", admin=False)
    direct = await enqueue(api)
    await api.call("GET", f"/api/v1/tasks/{direct}", admin=False, expect=401)
    await api.call("POST", f"/api/v1/tasks/{direct}/cancel", admin=False, expect=401)


async def test_cancel_a_queued_task(api: Api, fake_worker: FakeWorker) -> None:
    await fake_worker.pause()
    task_id = await enqueue(api)
    events = api.ctx.redis.pubsub()
    await events.subscribe(api.ctx.keys.events())
    try:
        _, body, _ = await api.call("POST", f"/api/v1/tasks/{task_id}/cancel")
        assert body["data"] == {"id": task_id, "status": "cancelled", "previousStatus": "queued"}
        assert await api.ctx.redis.exists(api.ctx.keys.cancel(task_id))
        message = None
        deadline = time.monotonic() + 5
        while message is None and time.monotonic() < deadline:
            message = await events.get_message(ignore_subscribe_messages=True, timeout=1)
        assert message is not None and task_id.encode() in message["data"]
    finally:
        await events.aclose()
    _, body, _ = await api.call("GET", f"/api/v1/tasks/{task_id}")
    assert body["data"]["status"] == "cancelled"
    # cancelling twice is fine; the worker then ends it cancelled without running it
    await api.call("POST", f"/api/v1/tasks/{task_id}/cancel")
    fake_worker.resume()
    _, body, _ = await api.call("GET", f"/api/v1/tasks/{task_id}?wait=10")
    assert body["data"]["status"] == "cancelled"


async def test_cancel_a_finished_or_unknown_task(api: Api, fake_worker: FakeWorker) -> None:
    task_id = await enqueue(api)
    await api.call("GET", f"/api/v1/tasks/{task_id}?wait=10")
    _, body, _ = await api.call("POST", f"/api/v1/tasks/{task_id}/cancel", expect=400)
    assert body["detail"]["status"] == "success"
    await api.call("POST", "/api/v1/tasks/task-nope/cancel", expect=404)


async def test_concurrent_long_polls(api: Api, fake_worker: FakeWorker) -> None:
    await fake_worker.pause()
    ids = [await enqueue(api, kwargs={"x": i}) for i in range(20)]
    polls = [api.call("GET", f"/api/v1/tasks/{t}?wait=20") for t in ids]
    release = asyncio.get_running_loop().call_later(0.3, fake_worker.resume)
    try:
        results = await asyncio.gather(*polls)
    finally:
        release.cancel()
    assert [r[1]["data"]["result"] for r in results] == [i + 1 for i in range(20)]
