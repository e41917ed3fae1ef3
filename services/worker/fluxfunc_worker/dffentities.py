"""``DFF.SYNC_API``, ``DFF.ASYNC_API`` and ``DFF.CRON_JOB``: a script reads and calls the
entries of its fluxfunc, with DataFlux Func's names (the store work is the worker's:
:mod:`~fluxfunc_worker.entitycalls`).

Every helper: ``get(entity_id=None)`` (a dict, None when missing), ``query(fields=None,
filters=None)`` (a list of dicts; ``filters`` as ``{field: {op: value}}``),
``call(entity_id, kwargs=None, trigger_time=None, queue=None, timeout=None, expires=None)``
(the new task's id; the helper itself is callable the same way). Without an id, ``get`` and
the cron-job members mean the entry the running task came from (a cron job's task: its job).

``DFF.CRON_JOB`` also has ``set_cron_expr(cron_expr, expires=None, entity_id=None)`` (an
expression over the configured one, for ``expires`` seconds or until cleared),
``get_cron_expr(entity_id=None)``, ``get_all_cron_expr()``, ``clear_cron_expr(entity_id=None)``
(back to the configured expression), ``pause(expires=None, entity_id=None)`` (no fire for
``expires`` seconds; without it, disabled until resumed) and ``resume(entity_id=None)``, and
the old ``*_crontab`` names. A timed override or pause ends by itself: the Beat stops
honouring it at its expiry.

Imported by the child process only: standard library.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from fluxfunc_worker.dffparams import EntityKind

Call = Callable[..., Any]  # sdk._call: method, then the parameters as keywords
Context = Callable[[], "tuple[str, str | None] | None"]  # (origin, origin id) of the running task


class EntityHelper:
    """The helper of one kind of entry."""

    kind: EntityKind = "syncAPI"

    def __init__(self, call: Call, context: Context) -> None:
        self._call = call
        self._context = context

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.call(*args, **kwargs)

    def resolve_entity_id(self, entity_id: str | None = None) -> str | None:
        """``entity_id``, or the entry the running task came from (None when it came from
        another kind of entry)."""
        if entity_id:
            return str(entity_id)
        ctx = self._context()
        if ctx is not None and ctx[0] == self.kind:
            return ctx[1]
        return None

    def get(self, entity_id: str | None = None) -> dict[str, Any] | None:
        found = self.resolve_entity_id(entity_id)
        if found is None:
            return None
        row: dict[str, Any] | None = self._call("entity.get", kind=self.kind, id=found)
        return row

    def query(self, fields: list[str] | str | None = None,
              filters: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        names = [fields] if isinstance(fields, str) else list(fields or [])
        rows: list[dict[str, Any]] = self._call("entity.query", kind=self.kind, fields=names,
                                                filters=dict(filters or {}))
        return rows

    def call(self, entity_id: str, kwargs: Mapping[str, Any] | None = None, trigger_time: float | None = None,
             queue: str | int | None = None, timeout: float | None = None,
             expires: float | None = None) -> str:
        """Run the entry's function as a new task (its id); ``trigger_time`` is accepted for
        DataFlux Func's signature (the task's trigger time is now)."""
        task_id: str = self._call("entity.call", kind=self.kind, id=str(entity_id), kwargs=dict(kwargs or {}),
                                  queue=None if queue is None else str(queue), timeout=timeout,
                                  expires=expires)
        return task_id


class SyncApiHelper(EntityHelper):
    kind: EntityKind = "syncAPI"


class AsyncApiHelper(EntityHelper):
    kind: EntityKind = "asyncAPI"


class CronJobHelper(EntityHelper):
    kind: EntityKind = "cronJob"

    def _job(self, entity_id: str | None) -> str | None:
        return self.resolve_entity_id(entity_id)

    def set_cron_expr(self, cron_expr: str, expires: float | None = None,
                      entity_id: str | None = None) -> None:
        job = self._job(entity_id)
        if job is not None:
            self._call("cron.set", kind=self.kind, id=job, cron_expr=str(cron_expr), expires=expires)

    def get_cron_expr(self, entity_id: str | None = None) -> str | None:
        job = self._job(entity_id)
        expr: str | None = None if job is None else self._call("cron.get", kind=self.kind, id=job)
        return expr

    def get_all_cron_expr(self) -> dict[str, str]:
        """Every job whose expression a script set, with that expression."""
        found: dict[str, str] = self._call("cron.all", kind=self.kind)
        return found

    def clear_cron_expr(self, entity_id: str | None = None) -> None:
        job = self._job(entity_id)
        if job is not None:
            self._call("cron.clear", kind=self.kind, id=job)

    def pause(self, expires: float | None = None, entity_id: str | None = None) -> None:
        job = self._job(entity_id)
        if job is not None:
            self._call("cron.pause", kind=self.kind, id=job, expires=expires)

    def resume(self, entity_id: str | None = None) -> None:
        job = self._job(entity_id)
        if job is not None:
            self._call("cron.resume", kind=self.kind, id=job)

    # DataFlux Func's older names
    def set_crontab(self, *args: Any, **kwargs: Any) -> None:
        self.set_cron_expr(*args, **kwargs)

    def get_crontab(self, *args: Any, **kwargs: Any) -> str | None:
        return self.get_cron_expr(*args, **kwargs)

    def get_all_crontab(self) -> dict[str, str]:
        return self.get_all_cron_expr()

    def clear_crontab(self, *args: Any, **kwargs: Any) -> None:
        self.clear_cron_expr(*args, **kwargs)

    set_temp_crontab = set_crontab
    get_temp_crontab = get_crontab
    get_all_temp_crontab = get_all_crontab
    clear_temp_crontab = clear_crontab
