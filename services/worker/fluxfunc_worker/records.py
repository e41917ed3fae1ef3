"""Task records: buffered in memory and written to the store in batches.

Every finished task adds its result to the buffer; every ``worker.record_batch_seconds`` the
whole buffer goes to ``TaskRecordStore.insert_task_records`` — one multi-row statement in one
transaction, never a round trip per task (visible within 2 s of the task's end).
When the database is unreachable the batch stays buffered and is tried again next round;
the buffer is bounded, and the oldest records are dropped (with a warning) beyond it.
Shutdown flushes what is left; a worker SIGKILLed loses the records of its last interval (the
tasks completed, their results stay in Redis for the result TTL).

A record keeps the call's kwargs, masked with the deployment's secrets and capped at flush
time (:mod:`fluxfunc_common.recordkwargs`, :mod:`~fluxfunc_worker.knownsecrets`); when the
secrets cannot be read the records are written without kwargs rather than held back.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Protocol, cast

from fluxfunc_common.envelope import TaskResult
from fluxfunc_common.lifecycle import sleep_or_stop
from fluxfunc_common.logs import get_logger
from fluxfunc_common.recordkwargs import Masker, record_kwargs
from fluxfunc_common.store import TaskRecord, TaskRecordStore, task_record

log = get_logger("worker.records")

MAX_BUFFER = 100_000


class Secrets(Protocol):
    """The secret values to mask (:class:`~fluxfunc_worker.knownsecrets.KnownSecrets`)."""

    async def current(self) -> list[str]: ...


class RecordBatcher:
    """Buffer of task records flushed to the store periodically."""

    def __init__(self, store: TaskRecordStore, interval: float, *, max_buffer: int = MAX_BUFFER,
                 secrets: Secrets | None = None) -> None:
        self.store = store
        self.interval = interval
        self.secrets = secrets
        self.max_buffer = max_buffer
        self._buffer: list[TaskRecord] = []
        self._lock = asyncio.Lock()
        self.written = 0
        self.flushes = 0
        self.dropped = 0

    def add(self, result: TaskResult, kwargs: Mapping[str, object] | None = None) -> None:
        """Queue one record with the call's ``kwargs`` (masked when written);
        ``record_limit == 0`` means the entry point keeps none."""
        if result.record_limit == 0:
            return
        record = task_record(result)
        if kwargs is not None:
            record["kwargs"] = dict(kwargs)
        self._buffer.append(record)
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
                await self.store.insert_task_records(await self._masked(batch))
            except Exception:
                self._buffer[:0] = batch
                raise
            self.written += len(batch)
            self.flushes += 1

    async def _masked(self, batch: Sequence[TaskRecord]) -> list[TaskRecord]:
        """The batch as written: each record's kwargs masked and capped (a copy: a batch
        that fails is kept as it was)."""
        if not any(r.get("kwargs") for r in batch):
            return list(batch)
        try:
            secrets = await self.secrets.current() if self.secrets is not None else []
        except Exception as exc:
            log.warning("cannot read the secrets to mask; records written without kwargs",
                        error=str(exc) or repr(exc))
            return [_without_kwargs(r) for r in batch]
        mask = Masker(secrets)
        out: list[TaskRecord] = []
        for r in batch:
            if r.get("kwargs"):
                kept, cut = record_kwargs(r["kwargs"], mask)
                r = cast(TaskRecord, {**r, "kwargs": kept, **({"kwargsTruncated": True} if cut else {})})
            out.append(r)
        return out

    async def run(self, stop: asyncio.Event) -> None:
        """Flush every ``interval`` until ``stop``; errors are logged and retried."""
        while not stop.is_set():
            await sleep_or_stop(stop, self.interval)
            try:
                await self.flush()
            except Exception as exc:
                log.warning("cannot write task records; will retry", error=str(exc),
                            buffered=len(self._buffer))


def _without_kwargs(record: TaskRecord) -> TaskRecord:
    return cast(TaskRecord, {k: v for k, v in record.items() if k != "kwargs"})
