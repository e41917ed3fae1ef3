"""The enqueue batcher: concurrent enqueues share round trips, and each keeps its own outcome
(entry, delayed, duplicate, queue full, error)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import redis.asyncio as aioredis
from tests.server.conftest import nested

from fluxfunc_common.envelope import TaskEnvelope
from fluxfunc_common.errors import QueueFull
from fluxfunc_common.keys import Keys
from fluxfunc_common.streams import StreamProtocol
from fluxfunc_server.batcher import EnqueueBatcher


def env(i: int, **fields: Any) -> TaskEnvelope:
    return TaskEnvelope(id=f"task-{i:06d}", func_id="demo__basic.plus", kwargs={"x": i},
                        trigger_time=time.time(), **fields)


class Counting(StreamProtocol):
    """Counts the round trips enqueue_prepared makes."""

    batches: list[int]

    async def enqueue_prepared(self, items: Any) -> Any:
        self.batches.append(len(items))
        return await super().enqueue_prepared(items)


@pytest.fixture
def streams(redis_client: aioredis.Redis, keys: Keys) -> Counting:
    proto = Counting(redis_client, keys)
    proto.batches = []
    return proto


async def test_concurrent_enqueues_share_round_trips(streams: Counting) -> None:
    batcher = EnqueueBatcher(streams, max_len=10_000)
    done = await asyncio.gather(*(batcher.enqueue(env(i)) for i in range(300)))
    assert [d.task_id for d in done] == [f"task-{i:06d}" for i in range(300)]
    assert all(d.entry_id for d in done)
    assert sum(streams.batches) == 300 and len(streams.batches) <= 3
    assert await streams.redis.xlen(streams.keys.queue("default")) == 300
    one = await batcher.enqueue(env(999))  # alone: sent at once, no waiting for company
    assert one.entry_id and streams.batches[-1] == 1


async def test_outcomes_stay_per_envelope(streams: Counting) -> None:
    batcher = EnqueueBatcher(streams, max_len=10_000)
    later = time.time() + 3600
    first, dup, delayed, plain = await asyncio.gather(
        batcher.enqueue(env(1, idempotency_key="k")), batcher.enqueue(env(2, idempotency_key="k")),
        batcher.enqueue(env(3, eta=later)), batcher.enqueue(env(4)))
    assert first.task_id == "task-000001" and not first.duplicate
    assert dup.duplicate and dup.task_id == "task-000001"
    assert delayed.due_ms == int(later * 1000) and delayed.entry_id is None
    assert plain.entry_id is not None
    assert streams.batches == [4]


async def test_a_full_queue_refuses_only_the_overflow(streams: Counting) -> None:
    batcher = EnqueueBatcher(streams, max_len=5)
    results = await asyncio.gather(*(batcher.enqueue(env(i)) for i in range(8)),
                                   return_exceptions=True)
    accepted = [r for r in results if not isinstance(r, BaseException)]
    refused = [r for r in results if isinstance(r, QueueFull)]
    assert len(accepted) == 5 and len(refused) == 3
    assert [a.task_id for a in accepted] == [f"task-{i:06d}" for i in range(5)]
    assert await streams.redis.xlen(streams.keys.queue("default")) == 5


async def test_errors_reach_every_caller_of_the_batch(streams: Counting) -> None:
    async def broken(items: Any) -> Any:
        raise ConnectionError("redis went away")

    streams.enqueue_prepared = broken  # type: ignore[method-assign]
    batcher = EnqueueBatcher(streams, max_len=100)
    results = await asyncio.gather(*(batcher.enqueue(env(i)) for i in range(3)), return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results)


async def test_a_cancelled_caller_does_not_break_the_batch(streams: Counting) -> None:
    batcher = EnqueueBatcher(streams, max_len=100)
    gone = asyncio.create_task(batcher.enqueue(env(1)))
    kept = asyncio.create_task(batcher.enqueue(env(2)))
    await asyncio.sleep(0)
    gone.cancel()
    assert (await kept).task_id == "task-000002"
    assert gone.cancelled()




async def test_an_envelope_that_cannot_be_serialised_fails_only_its_caller(streams: Counting) -> None:
    batcher = EnqueueBatcher(streams, max_len=100)
    results = await asyncio.gather(
        batcher.enqueue(env(1)), batcher.enqueue(env(2).model_copy(update={"kwargs": nested(401)})),
        batcher.enqueue(env(3)), return_exceptions=True)
    assert isinstance(results[1], Exception)
    assert [r.task_id for r in (results[0], results[2]) if not isinstance(r, BaseException)] == [
        "task-000001", "task-000003"]


async def test_a_script_error_fails_only_the_envelope_at_fault(streams: Counting) -> None:
    await streams.redis.set(streams.keys.queue("broken"), "not a stream")  # XLEN → WRONGTYPE
    batcher = EnqueueBatcher(streams, max_len=100)
    results = await asyncio.gather(
        batcher.enqueue(env(1)), batcher.enqueue(env(2, queue="broken")), batcher.enqueue(env(3)),
        return_exceptions=True)
    assert isinstance(results[1], Exception) and "WRONGTYPE" in str(results[1])
    ok = [r for r in results if not isinstance(r, BaseException)]  # one may read as a re-send
    assert [r.task_id for r in ok] == ["task-000001", "task-000003"]
    assert await streams.redis.xlen(streams.keys.queue("default")) == 2
