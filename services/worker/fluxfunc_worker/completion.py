"""How a run ends: the :class:`TaskResult` built from a child's outcome, the retry decision
with its backoff, and the :class:`Completer` that writes completions in batches.

Completions are owner-checked ``complete`` scripts (result with TTL, reply note for a
waiting Server, running marker removed, XACK+XDEL). The completer sends every completion
that arrived while the previous batch was on the wire in one pipeline, so under load a batch
costs one round trip and an idle worker adds no delay at all.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Sequence

from fluxfunc_common.envelope import HttpResponse, TaskEnvelope, TaskResult, TaskStatus
from fluxfunc_common.streams import Delivery, StreamProtocol
from fluxfunc_worker.messages import DoneMessage
from fluxfunc_worker.outcome import Outcome

RETRY_BASE_SECONDS = 1.0
RETRY_CAP_SECONDS = 300.0
RETRYABLE = frozenset({TaskStatus.FAILURE, TaskStatus.TIMEOUT})

_FAILURE = TaskStatus.FAILURE
_NO_REPORT: DoneMessage = {"type": "done", "id": ""}


def result_from_outcome(env: TaskEnvelope, outcome: Outcome, start_time: float) -> TaskResult:
    """The task result of a run as the pool reported it."""
    report = outcome.report if outcome.report is not None else _NO_REPORT
    status = outcome.status
    exception = outcome.exception or report.get("exception")
    if status is _FAILURE and not exception:
        exception = f"WorkerError: the run ended with status {report.get('status')!r}"
    response = report.get("response")
    return TaskResult.for_envelope(
        env,
        status,
        start_time=report.get("startTime") or start_time,
        end_time=report.get("endTime") or time.time(),
        result=report.get("result"),
        response=HttpResponse.model_validate(response) if response else None,
        exception=exception,
        traceback=report.get("traceback"),
        print_logs=outcome.print_logs if outcome.print_logs is not None else report.get("printLogs"),
    )


def skipped_result(env: TaskEnvelope, status: TaskStatus, exception: str) -> TaskResult:
    """The result of a task that never started (expired, cancelled, dead)."""
    return TaskResult.for_envelope(env, status, end_time=time.time(), exception=exception)


def should_retry(env: TaskEnvelope, result: TaskResult) -> bool:
    """The function declared ``retries`` and this attempt failed or timed out."""
    return result.status in RETRYABLE and env.attempt < env.max_attempts


def backoff_seconds(attempt: int, *, base: float = RETRY_BASE_SECONDS, cap: float = RETRY_CAP_SECONDS,
                    rng: random.Random | None = None) -> float:
    """Delay before attempt ``attempt + 1``: ``min(cap, base·2^(attempt−1)) × U(0.5, 1)``."""
    jitter: float = (rng or random).uniform(0.5, 1.0)
    return float(min(cap, base * 2 ** max(attempt - 1, 0)) * jitter)


def next_attempt(env: TaskEnvelope, result: TaskResult, delay: float) -> TaskEnvelope:
    """The envelope of the retry: attempt + 1, due after ``delay``, carrying the last error."""
    return env.model_copy(update={"attempt": env.attempt + 1, "eta": time.time() + delay,
                                  "last_error": result.exception})


def result_ttl_ms(env: TaskEnvelope, default_seconds: int) -> int:
    return int((env.result_ttl or default_seconds) * 1000)


Pending = tuple[Delivery, TaskResult, int, "asyncio.Future[bool]"]


class Completer:
    """Batches owner-checked completions: the fetch loop takes what is waiting into its next
    ``claim`` pipeline (:meth:`take`/:meth:`settle`); what it does not take within one turn
    of the event loop is sent by the completer itself, one pipeline per round trip. The fetch
    loop calls :meth:`kick` whenever it will not come back for them at once."""

    def __init__(self, streams: StreamProtocol, consumer: str) -> None:
        self.streams = streams
        self.consumer = consumer
        self._pending: list[Pending] = []
        self._flusher: asyncio.Task[None] | None = None
        self.batches = 0
        self.completed = 0

    async def complete(self, delivery: Delivery, result: TaskResult, ttl_ms: int) -> bool:
        """True when written; False when the entry is no longer ours (nothing written).
        Redis errors propagate to the caller, who decides whether to try again."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._pending.append((delivery, result, ttl_ms, future))
        self.kick()
        return await future

    @property
    def pending(self) -> int:
        return len(self._pending)

    def kick(self) -> None:
        """Make sure what is pending gets sent (by the fetch loop or the completer)."""
        if self._pending and self._flusher is None:
            self._flusher = asyncio.create_task(self._flush(), name="completer")

    def take(self) -> list[Pending]:
        """Everything waiting, for a caller that sends it in its own pipeline."""
        batch, self._pending = self._pending, []
        return batch

    def settle(self, batch: Sequence[Pending], oks: Sequence[bool]) -> None:
        """The outcomes of a taken batch."""
        if batch:
            self.batches += 1
            self.completed += len(batch)
        for (*_, future), ok in zip(batch, oks, strict=True):
            if not future.done():
                future.set_result(ok)

    def fail(self, batch: Sequence[Pending], exc: BaseException) -> None:
        """A taken batch could not be sent."""
        for *_, future in batch:
            if not future.done():
                future.set_exception(exc if isinstance(exc, Exception) else RuntimeError(repr(exc)))

    async def _flush(self) -> None:
        try:
            await asyncio.sleep(0)  # one turn: a fetch loop woken by the same finish takes them
            while self._pending:
                batch = self.take()
                try:
                    oks = await self.streams.complete_many(self.consumer,
                                                           [(d, r, t) for d, r, t, _ in batch])
                except Exception as exc:
                    self.fail(batch, exc)
                else:
                    self.settle(batch, oks)
        finally:
            self._flusher = None

    async def close(self) -> None:
        """Wait for the batch on the wire (and any queued behind it)."""
        while self._flusher is not None:
            await asyncio.shield(self._flusher)
