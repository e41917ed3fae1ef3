"""Task records: buffered in memory and written to the store in batches.

Every finished task adds its result to the buffer; every ``worker.record_batch_seconds`` the
whole buffer goes to ``TaskRecordStore.insert_task_records`` — one multi-row statement in one
transaction, never a round trip per task (visible within 2 s of the task's end).
When the database is unreachable the batch stays buffered and is tried again next round;
the buffer is bounded, and the oldest records are dropped (with a warning) beyond it.
Shutdown flushes what is left.
"""

from __future__ import annotations

import asyncio

from fluxfunc_common.envelope import TaskResult
from fluxfunc_common.lifecycle import sleep_or_stop
from fluxfunc_common.logs import get_logger
from fluxfunc_common.store import TaskRecord, TaskRecordStore, task_record

log = get_logger("worker.records")

MAX_BUFFER = 100_000


class RecordBatcher:
    """Buffer of task records flushed to the store periodically."""

    def __init__(self, store: TaskRecordStore, interval: float, *, max_buffer: int = MAX_BUFFER) -> None:
        self.store = store
        self.interval = interval
        self.max_buffer = max_buffer
        self._buffer: list[TaskRecord] = []
        self._lock = asyncio.Lock()
        self.written = 0
        self.flushes = 0
        self.dropped = 0

    def add(self, result: TaskResult) -> None:
        """Queue one record (``record_limit == 0`` means the entry point keeps none)."""
        if result.record_limit == 0:
            return
        self._buffer.append(task_record(result))
        if len(self._buffer) > self.max_buffer:
            excess = len(self._buffer) - self.max_buffer
            del self._buffer[:excess]
            self.dropped += excess
            log.warning("task record buffer full; oldest records dropped", dropped=excess)

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    async def flush(self) -> None:
        """Write everything buffered in one batch; on failure keep it for the next round."""
        async with self._lock:
            if not self._buffer:
                return
            batch, self._buffer = self._buffer, []
            try:
                await self.store.insert_task_records(batch)
            except Exception:
                self._buffer[:0] = batch
                raise
            self.written += len(batch)
            self.flushes += 1

    async def run(self, stop: asyncio.Event) -> None:
        """Flush every ``interval`` until ``stop``; errors are logged and retried."""
        while not stop.is_set():
            await sleep_or_stop(stop, self.interval)
            try:
                await self.flush()
            except Exception as exc:
                log.warning("cannot write task records; will retry", error=str(exc),
                            buffered=len(self._buffer))
