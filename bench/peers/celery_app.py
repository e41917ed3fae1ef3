"""Celery with Redis as broker and result backend: the app (``celery -A celery_app worker``)
and the bench client.

Celery's client API is synchronous: the client sends from a thread pool and waits for a
result by polling the backend key every 10 ms with an asyncio Redis client (Celery's own
``AsyncResult.get`` blocks a thread per waiter, and its result consumer is not meant to be
shared by many threads at once).
"""

from __future__ import annotations

import asyncio
import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import redis.asyncio as aioredis
from celery import Celery

from common import CALL_TIMEOUT, redis_url

POLL_DELAY = 0.01
META_PREFIX = "celery-task-meta-"

app = Celery("bench", broker=redis_url(), backend=redis_url())
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    result_expires=3600,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)


@app.task(name="noop")  # type: ignore[untyped-decorator]  # Celery is untyped
def noop(x: Any) -> Any:
    """The no-op every system runs: returns its input."""
    return x


class Client:
    def __init__(self) -> None:
        self.redis = aioredis.from_url(redis_url(), max_connections=128)  # type: ignore[no-untyped-call,unused-ignore]
        self.threads = ThreadPoolExecutor(16, thread_name_prefix="celery-send")

    async def start(self) -> None:
        await self.redis.ping()

    async def close(self) -> None:
        await self.redis.aclose()
        self.threads.shutdown(wait=False)

    async def enqueue(self, x: Any) -> str:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.threads, lambda: noop.delay(x).id)

    async def enqueue_many(self, xs: list[Any]) -> list[str]:
        def send() -> list[str]:
            return [noop.delay(x).id for x in xs]

        return await asyncio.get_running_loop().run_in_executor(self.threads, send)

    async def call(self, x: Any) -> Any:
        task_id = await self.enqueue(x)
        deadline = time.monotonic() + CALL_TIMEOUT
        while True:
            raw = await self.redis.get(META_PREFIX + task_id)
            if raw is not None:
                meta = json.loads(raw)
                if meta["status"] == "SUCCESS":
                    return meta["result"]
                if meta["status"] in ("FAILURE", "REVOKED"):
                    raise RuntimeError(f"celery task {task_id}: {meta['status']}")
            if time.monotonic() > deadline:
                raise TimeoutError(task_id)
            await asyncio.sleep(POLL_DELAY)

    async def missing(self, ids: list[str]) -> list[str]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for task_id in ids:
                pipe.exists(META_PREFIX + task_id)
            found = await pipe.execute()
        return [task_id for task_id, hit in zip(ids, found, strict=True) if not hit]
