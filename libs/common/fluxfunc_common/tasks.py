"""Building task envelopes from a func's catalogue entry: the one place where a producer
(Server, Beat, a worker's DFF.FUNC) turns "call this func with these kwargs" into a task."""

from __future__ import annotations

from typing import Any

from fluxfunc_common import ids
from fluxfunc_common.envelope import Origin, TaskEnvelope
from fluxfunc_common.settings import TasksSettings

MAX_CALL_CHAIN = 5


def func_timeout(func: dict[str, Any], settings: TasksSettings) -> float:
    """The func's timeout (``timeout=`` or legacy ``api_timeout``), capped by max_timeout."""
    extra = func.get("extraConfig") or {}
    value = extra.get("timeout") or settings.default_timeout
    return float(min(float(value), settings.max_timeout))


def build_envelope(
    func: dict[str, Any],
    kwargs: dict[str, Any],
    *,
    origin: Origin,
    now: float,
    settings: TasksSettings,
    origin_id: str | None = None,
    queue: str | None = None,
    eta: float | None = None,
    expires: float | None = None,
    task_id: str | None = None,
    reply_to: str | None = None,
    idempotency_key: str | None = None,
    idempotency_scope: str | None = None,
    call_chain: list[str] | None = None,
    cron_expr: str | None = None,
    trace_id: str | None = None,
    http_request: dict[str, Any] | None = None,
    record_limit: int | None = None,
) -> TaskEnvelope:
    """A new envelope for ``func`` (a row of the funcs catalogue).

    ``extraConfig`` of the func supplies timeout, queue, retries (→ maxAttempts) and
    expires (seconds the task may wait in the queue before it is dropped as expired).
    """
    extra = func.get("extraConfig") or {}
    wait_limit = extra.get("expires")
    if expires is None and wait_limit:
        expires = (eta or now) + float(wait_limit)
    return TaskEnvelope(
        id=task_id or ids.task_id(int(now * 1000)),
        func_id=func["id"],
        kwargs=kwargs,
        origin=origin,
        origin_id=origin_id,
        queue=queue or extra.get("queue") or default_queue(origin),
        trigger_time=now,
        eta=eta,
        timeout=func_timeout(func, settings),
        expires=expires,
        max_attempts=1 + int(extra.get("retries") or 0),
        reply_to=reply_to,
        idempotency_key=idempotency_key,
        idempotency_scope=idempotency_scope if idempotency_key else None,
        call_chain=call_chain or [],
        cron_expr=cron_expr,
        trace_id=trace_id,
        result_ttl=settings.result_ttl,
        http_request=http_request,
        record_limit=record_limit,
    )


def default_queue(origin: Origin) -> str:
    """Cron fires go to ``cron``, async API calls to ``async``, everything else ``default``."""
    if origin is Origin.CRON_JOB:
        return "cron"
    if origin is Origin.ASYNC_API:
        return "async"
    return "default"
