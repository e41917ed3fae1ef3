"""The reply waiter: how a sync call learns its task finished (docs/redis-protocol.md, "Reply streams").

One reply stream per Server process, read by one task on the blocking client, resolving
futures keyed by task id. A call registers its future *before* it enqueues, so a fast result
cannot be missed. The result key stays the source of truth: a call whose wait runs out, or a
notification lost to a reconnect, ends with one final ``GET`` of the result key. 1,000
waiting calls therefore cost one blocked connection, not 1,000.

The reader is stopped with a flag and a short ``BLOCK`` (cancelling a task blocked in
``XREAD`` is not reliably honoured by redis-py).
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from fluxfunc_common.envelope import TaskResult
from fluxfunc_common.logs import get_logger
from fluxfunc_common.streams import StreamProtocol

log = get_logger("server.waiter")

REFRESH_SECONDS = 30.0
REPLY_TTL_MS = 120_000
SWEEP_CHUNK = 200
POLL_MAX_SECONDS = 0.5


def _time_out(fut: asyncio.Future[TaskResult | None]) -> None:
    if not fut.done():
        fut.set_result(None)


class ReplyWaiter:
    """Futures of in-flight sync calls, resolved from this process's reply stream."""

    def __init__(self, streams: StreamProtocol, server_id: str, *, block_ms: int = 1000,
                 refresh_seconds: float = REFRESH_SECONDS) -> None:
        self.streams = streams
        self.server_id = server_id
        self.reply_key = streams.keys.reply(server_id)
        self.block_ms = block_ms
        self.refresh_seconds = refresh_seconds
        self._futures: dict[str, asyncio.Future[TaskResult | None]] = {}
        self._stopping = False
        self._reader: asyncio.Task[None] | None = None
        self._last_id = "0-0"

    @property
    def pending(self) -> int:
        """How many calls are waiting right now."""
        return len(self._futures)

    # --- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Create the reply stream and start the reader."""
        self.reply_key = await self.streams.open_reply_stream(self.server_id, ttl_ms=REPLY_TTL_MS)
        self._stopping = False
        self._reader = asyncio.create_task(self._read_loop(), name="reply-waiter")

    async def stop(self) -> None:
        """Stop the reader and release every waiter. The flag is seen when the blocked read
        returns: an entry added to our own stream makes it return at once (else within one
        BLOCK period)."""
        self._stopping = True
        if self._reader is not None:
            with contextlib.suppress(Exception):
                await self.streams.open_reply_stream(self.server_id, ttl_ms=REPLY_TTL_MS)
            done, _ = await asyncio.wait({self._reader}, timeout=self.block_ms / 1000 + 2)
            if not done:  # last resort; the flag normally ends it within one BLOCK
                self._reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await self._reader
            self._reader = None
        for fut in self._futures.values():
            if not fut.done():
                fut.set_result(None)
        self._futures.clear()

    # --- calls -------------------------------------------------------------------------------
    def register(self, task_id: str) -> asyncio.Future[TaskResult | None]:
        """A future for ``task_id``; call before enqueueing the task."""
        fut: asyncio.Future[TaskResult | None] = asyncio.get_running_loop().create_future()
        self._futures[task_id] = fut
        return fut

    def discard(self, task_id: str) -> None:
        """Forget a call (it gave up, or enqueueing failed)."""
        fut = self._futures.pop(task_id, None)
        if fut is not None and not fut.done():
            fut.cancel()

    async def wait(self, task_id: str, fut: asyncio.Future[TaskResult | None],
                   seconds: float) -> TaskResult | None:
        """The result within ``seconds``, else whatever the result key holds (or None).

        A timer resolves the future with None when time is up (cheaper per call than
        ``wait_for``); a None from the reader means "too large to inline": GET it."""
        timer = asyncio.get_running_loop().call_later(max(seconds, 0.0), _time_out, fut)
        try:
            result = await fut
        finally:
            timer.cancel()
            self._futures.pop(task_id, None)
        if result is not None:
            return result
        return await self.streams.get_result(task_id)

    async def poll(self, task_id: str, seconds: float) -> TaskResult | None:
        """Wait for a task this process is not notified about (another caller's task):
        poll its result key with a growing interval."""
        deadline = time.monotonic() + seconds
        interval = 0.05
        while True:
            result = await self.streams.get_result(task_id)
            left = deadline - time.monotonic()
            if result is not None or left <= 0:
                return result
            await asyncio.sleep(min(interval, left))
            interval = min(interval * 2, POLL_MAX_SECONDS)

    # --- the reader ----------------------------------------------------------------------------
    async def _read_loop(self) -> None:
        refreshed = time.monotonic()
        failing = False
        while not self._stopping:
            try:
                if time.monotonic() - refreshed >= self.refresh_seconds:
                    await self.streams.open_reply_stream(self.server_id, ttl_ms=REPLY_TTL_MS)
                    refreshed = time.monotonic()
                self._last_id, notes = await self.streams.read_replies(
                    self.reply_key, self._last_id, block_ms=self.block_ms)
                if failing:  # notes may have been trimmed away while we were cut off
                    failing = False
                    await self._sweep()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not failing:
                    log.warning("reply stream read failed; retrying", error=str(exc))
                failing = True
                await asyncio.sleep(0.5)
                continue
            for note in notes:
                fut = self._futures.pop(note.task_id, None)
                if fut is not None and not fut.done():
                    fut.set_result(note.result)  # None: too large to inline, wait() GETs it

    async def _sweep(self) -> None:
        """After a reconnect: resolve every waiting call whose result key already exists."""
        ids = list(self._futures)
        for i in range(0, len(ids), SWEEP_CHUNK):
            chunk = ids[i:i + SWEEP_CHUNK]
            results = await asyncio.gather(*(self.streams.get_result(t) for t in chunk))
            for task_id, result in zip(chunk, results, strict=True):
                fut = self._futures.get(task_id)
                if result is not None and fut is not None and not fut.done():
                    self._futures.pop(task_id, None)
                    fut.set_result(result)
