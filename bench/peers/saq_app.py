"""saq: the worker settings (``saq saq_app.settings``) and the bench client.

The worker pops with a blocking ``BLMOVE`` (no polling). saq 0.26's own enqueue-and-wait,
``Queue.apply``, polls the job's status (every 0.5 s by default): the front polls every 10 ms,
like the arq and Celery fronts.
"""

from __future__ import annotations

from typing import Any

from saq import Queue
from saq.job import Status

from common import CALL_TIMEOUT, concurrency, enqueue_concurrently, redis_url

POLL_DELAY = 0.01


async def noop(ctx: dict[str, Any], *, x: Any) -> Any:
    """The no-op every system runs: returns its input."""
    return x


settings = {
    "queue": Queue.from_url(redis_url()),
    "functions": [noop],
    "concurrency": concurrency(),
}


class Client:
    def __init__(self) -> None:
        self.queue = Queue.from_url(redis_url())

    async def start(self) -> None:
        await self.queue.connect()

    async def close(self) -> None:
        await self.queue.disconnect()

    async def enqueue(self, x: Any) -> str:
        job = await self.queue.enqueue("noop", x=x)
        assert job is not None
        return str(job.key)

    async def enqueue_many(self, xs: list[Any]) -> list[str]:
        return await enqueue_concurrently(self.enqueue, xs)

    async def call(self, x: Any) -> Any:
        return await self.queue.apply("noop", timeout=CALL_TIMEOUT, poll_interval=POLL_DELAY, x=x)

    async def missing(self, ids: list[str]) -> list[str]:
        missing: list[str] = []
        for i in range(0, len(ids), 1000):
            chunk = ids[i:i + 1000]
            jobs = await self.queue.jobs(chunk)
            missing += [key for key, job in zip(chunk, jobs, strict=True)
                        if job is None or job.status != Status.COMPLETE]
        return missing
