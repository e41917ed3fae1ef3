"""Enqueue batching: the enqueues of concurrent requests share one Redis round trip.

Under load most of a call's Redis cost is the client's per-command work (pipeline, pool
checkout, packing, parsing), not Redis itself. A request therefore does not send its
envelope alone: it joins the batch being collected, and one flusher sends the whole batch
with :meth:`StreamProtocol.enqueue_many` (one pipeline of ``enqueue`` script calls). While a
batch is in flight the next one collects, so the batch size follows the load: one envelope
per round trip when idle (no added latency), dozens under a burst.

Each envelope keeps its own outcome (entry id, delayed, duplicate, queue full, error). An
envelope is serialised in its own request before it joins a batch, so one that cannot be
serialised fails only that request; and when Redis refuses a whole script call (an error
reply, not an outage), the envelopes of the batch are sent again one by one, so only the
envelope at fault gets the error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from redis.exceptions import ResponseError

from fluxfunc_common.envelope import TaskEnvelope
from fluxfunc_common.errors import QueueFull
from fluxfunc_common.streams import Enqueued, PreparedEnqueue, StreamProtocol

MAX_BATCH = 500

Pending = tuple[PreparedEnqueue, "asyncio.Future[Enqueued]"]


class EnqueueBatcher:
    """``await batcher.enqueue(env)`` → the :class:`Enqueued` of that envelope."""

    def __init__(self, streams: StreamProtocol, *, max_len: int, max_batch: int = MAX_BATCH) -> None:
        self.streams = streams
        self.max_len = max_len
        self.max_batch = max_batch
        self._waiting: list[Pending] = []
        self._flusher: asyncio.Task[None] | None = None

    async def enqueue(self, env: TaskEnvelope) -> Enqueued:
        """Enqueue ``env`` with the others of this moment (raises what enqueueing raised)."""
        prepared = self.streams.prepare_enqueue(env, max_len=self.max_len)  # raises here, alone
        fut: asyncio.Future[Enqueued] = asyncio.get_running_loop().create_future()
        self._waiting.append((prepared, fut))
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush(), name="enqueue-batcher")
        return await fut

    async def _flush(self) -> None:
        try:
            while self._waiting:
                batch = self._waiting[:self.max_batch]
                del self._waiting[:self.max_batch]
                await self._send(batch)
        finally:
            self._flusher = None

    async def _send(self, batch: Sequence[Pending]) -> None:
        try:
            outcomes: list[Enqueued | BaseException] = list(
                await self.streams.enqueue_prepared([p for p, _ in batch]))
        except QueueFull as exc:
            outcomes = await self._after_queue_full(batch, set(exc.detail.get("rejected", ())))
        except ResponseError:  # the script refused the call: find the envelope at fault
            outcomes = await self._one_by_one(batch, set())
        except Exception as exc:  # Redis down and the like: every caller of the batch gets it
            outcomes = [exc] * len(batch)
        for (_, fut), outcome in zip(batch, outcomes, strict=True):
            if fut.done():  # its request was cancelled meanwhile
                continue
            if isinstance(outcome, BaseException):
                fut.set_exception(outcome)
            else:
                fut.set_result(outcome)

    async def _after_queue_full(self, batch: Sequence[Pending],
                                rejected: set[str]) -> list[Enqueued | BaseException]:
        """Outcomes when some envelopes met a full queue: those get QueueFull; the accepted
        ones are sent again, alone, to learn their outcome (a re-sent enqueue is a no-op that
        answers the task id, or the first task id of an idempotency key)."""
        return await self._one_by_one(batch, rejected)

    async def _one_by_one(self, batch: Sequence[Pending],
                          rejected: set[str]) -> list[Enqueued | BaseException]:
        """Each envelope sent alone (the ids in ``rejected`` get QueueFull unsent)."""
        out: list[Enqueued | BaseException] = []
        for prepared, _ in batch:
            env = prepared.env
            if env.id in rejected:
                out.append(QueueFull(f"Queue {env.queue} is full", {"queue": env.queue}))
                continue
            try:
                out.append((await self.streams.enqueue_prepared([prepared]))[0])
            except Exception as exc:
                out.append(exc)
        return out
