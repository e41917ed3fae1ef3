"""arq: the worker settings (``arq arq_app.WorkerSettings``) and the bench client.

arq polls its queue (a sorted set) and ``Job.result`` polls the result. With the default
``poll_delay`` of 0.5 s both are slow, so here both poll every 10 ms: arq at its best. The
system ``arq-default`` of compare.py sets ``BENCH_ARQ_POLL=0.5``, which gives arq as it ships.
"""

from __future__ import annotations

import os
from typing import Any

from arq import create_pool
from arq.connections import ArqRedis, RedisSettings
from arq.constants import result_key_prefix

from common import CALL_TIMEOUT, concurrency, enqueue_concurrently, redis_url

POLL_DELAY = float(os.environ.get("BENCH_ARQ_POLL", "0.01"))


async def noop(ctx: dict[str, Any], x: Any) -> Any:
    """The no-op every system runs: returns its input."""
    return x


class WorkerSettings:
    functions = [noop]
    redis_settings = RedisSettings.from_dsn(redis_url())
    max_jobs = concurrency()
    poll_delay = POLL_DELAY
    keep_result = 3600


class Client:
    def __init__(self) -> None:
        self.pool: ArqRedis | None = None

    async def start(self) -> None:
        settings = RedisSettings.from_dsn(redis_url())
        settings.max_connections = 128
        self.pool = await create_pool(settings)

    async def close(self) -> None:
        if self.pool is not None:
            await self.pool.aclose()

    async def enqueue(self, x: Any) -> str:
        assert self.pool is not None
        job = await self.pool.enqueue_job("noop", x)
        assert job is not None
        return str(job.job_id)

    async def enqueue_many(self, xs: list[Any]) -> list[str]:
        # arq has no bulk enqueue: the fastest a user gets is many enqueue_job calls at once.
        return await enqueue_concurrently(self.enqueue, xs)

    async def call(self, x: Any) -> Any:
        assert self.pool is not None
        job = await self.pool.enqueue_job("noop", x)
        assert job is not None
        return await job.result(timeout=CALL_TIMEOUT, poll_delay=POLL_DELAY)

    async def missing(self, ids: list[str]) -> list[str]:
        assert self.pool is not None
        async with self.pool.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.exists(result_key_prefix + job_id)
            found = await pipe.execute()
        return [job_id for job_id, hit in zip(ids, found, strict=True) if not hit]
