"""Building task envelopes from a func's catalogue entry: the one place where a producer
(Server, Beat, a worker's DFF.FUNC) turns "call this func with these kwargs" into a task.
The rules (queue, timeout, retries, queue deadline) are :class:`~fluxfunc_common.models.FuncOptions`'."""

from __future__ import annotations

from collections.abc import Mapping

from fluxfunc_common import ids
from fluxfunc_common.envelope import Origin, TaskEnvelope
from fluxfunc_common.models import Func, JSONObject
from fluxfunc_common.settings import TasksSettings


def build_envelope(
    func: Func | Mapping[str, object],
    kwargs: Mapping[str, object],
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
    http_request: JSONObject | None = None,
    record_limit: int | None = None,
) -> TaskEnvelope:
    """A new envelope for ``func``: its options supply timeout, queue, retries (→ maxAttempts)
    and, unless ``expires`` is given, the queue deadline (``expires`` seconds after the task
    is due; none without)."""
    func = Func.of(func)
    options = func.options
    timeout = options.effective_timeout(settings)
    if expires is None:
        expires = options.queue_deadline(eta or now, timeout, sync=False)
    return TaskEnvelope(
        id=task_id or ids.task_id(int(now * 1000)),
        func_id=func.id,
        kwargs=dict(kwargs),
        origin=origin,
        origin_id=origin_id,
        queue=queue or options.queue_name(origin),
        trigger_time=now,
        eta=eta,
        timeout=timeout,
        expires=expires,
        max_attempts=options.max_attempts,
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

