"""Task routes: the status and result of one task, and cancelling it.

Status as the Server sees it (docs/internals.md): the result key (final) → the running
marker (``running``) → the enqueue marker (``queued``) → the task record in the store →
404. A queued task whose cancel flag is set reads ``cancelled`` (the worker will skip it).

Auth: ``GET`` of a task that came from a sync/async API needs no credentials — its id is
an unguessable capability (80 random bits) handed to that caller, who may have no admin
token (the 202 ``Location`` of a sync call points here). Every other task (direct, cron,
child) needs a viewer, and every cancel a developer.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Required, TypedDict, cast

import orjson
from aiohttp import web

from fluxfunc_common.envelope import Origin, TaskResult, TaskStatus
from fluxfunc_common.errors import BadRequest, NotFound
from fluxfunc_common.logs import get_logger
from fluxfunc_server import routing
from fluxfunc_server.access import DEVELOPER, Access, Rule
from fluxfunc_server.appkeys import CTX
from fluxfunc_server.context import AppContext
from fluxfunc_server.responses import ok

log = get_logger("server.tasks")

MAX_WAIT = 60.0
PUBLIC_ORIGINS = frozenset({Origin.SYNC_API.value, Origin.ASYNC_API.value})
FIELDS = ("id", "funcId", "origin", "originId", "status", "queue", "attempt", "triggerTime",
          "startTime", "endTime", "kwargs", "result", "exception", "traceback", "printLogs")


class TaskView(TypedDict, total=False):
    """A task as the task API shows it: every name of :data:`FIELDS` (None when unknown),
    ``response`` for a sync call's DFF.RESP, ``cancelRequested`` while it runs."""

    id: Required[str]
    funcId: object
    origin: object
    originId: object
    status: Required[str]
    queue: object
    attempt: object
    triggerTime: object
    startTime: object
    endTime: object
    result: object
    exception: object
    traceback: object
    printLogs: object
    kwargs: object
    kwargsTruncated: bool
    response: object
    cancelRequested: bool


def _pick(data: Mapping[str, object]) -> TaskView:
    return cast(TaskView, {name: data.get(name) for name in FIELDS})


def result_view(result: TaskResult) -> TaskView:
    """The API shape of a finished task."""
    data = result.model_dump(mode="json", by_alias=True)
    view = _pick(data)
    if result.response is not None:  # DFF.RESP: what the sync caller received
        view["response"] = data["response"]
    return view


def record_view(record: Mapping[str, object]) -> TaskView:
    """The API shape of a task record from the store (same camelCase names)."""
    view = _pick(record)
    if record.get("kwargsTruncated"):
        view["kwargsTruncated"] = True
    return view


async def with_kwargs(ctx: AppContext, view: TaskView) -> TaskView:
    """A finished task's view from its result key with the kwargs of its task record (the
    result key has none; the record has them, masked, once the worker has written it)."""
    try:
        record = await ctx.store.get_task_record(view["id"])
    except Exception as exc:  # the store is down: the rest of the answer stands
        log.warning("cannot read a task record for its kwargs", task_id=view["id"], error=str(exc))
        return view
    if record is not None:
        view["kwargs"] = record.get("kwargs")
        if record.get("kwargsTruncated"):
            view["kwargsTruncated"] = True
    return view


def _loads(raw: bytes | str | None) -> dict[str, object] | None:
    if raw is None:
        return None
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    return value if isinstance(value, dict) else None


async def task_view(ctx: AppContext, task_id: str) -> TaskView | None:
    """The task as it stands now, or None when nothing knows it."""
    result = await ctx.streams.get_result(task_id)
    if result is not None:
        return await with_kwargs(ctx, result_view(result))
    pipe = ctx.redis.pipeline(transaction=False)
    pipe.get(ctx.keys.running(task_id))
    pipe.exists(ctx.keys.cancel(task_id))
    running_raw, cancel_flag = await pipe.execute()
    header = await ctx.streams.queued_header(task_id)
    running = _loads(running_raw)
    if running is None and header is None:
        record = await ctx.store.get_task_record(task_id)
        return record_view(record) if record else None
    view = _pick(header or {})
    view["id"] = task_id
    if running is not None:
        view["status"] = TaskStatus.RUNNING.value
        view["startTime"] = running.get("startTime")
        view["attempt"] = running.get("attempt") or view.get("attempt")
        view["cancelRequested"] = bool(cancel_flag)
    else:
        view["status"] = (TaskStatus.CANCELLED if cancel_flag else TaskStatus.QUEUED).value
    return view


@dataclass(frozen=True)
class _Looked:
    """The task as one request found it (looked up once, for the access check and the answer)."""

    view: TaskView | None


LOOKED = web.RequestKey("fluxfunc_task_view", _Looked)


async def _view_of(request: web.Request) -> TaskView | None:
    looked = request.get(LOOKED)
    if looked is None:
        looked = _Looked(await task_view(request.app[CTX], request.match_info["task_id"]))
        request[LOOKED] = looked
    return looked.view


async def _is_api_task(request: web.Request) -> bool:
    """Sync/async API tasks are readable by id alone; everything else needs a viewer."""
    view = await _view_of(request)
    return view is not None and view.get("origin") in PUBLIC_ORIGINS


READ = Rule(Access.VIEWER, open_when=_is_api_task)


def _wait_param(request: web.Request) -> float:
    raw = request.query.get("wait")
    if raw is None or raw == "":
        return 0.0
    try:
        wait = float(raw)
    except ValueError:
        raise BadRequest("`wait` must be a number of seconds (0–60)") from None
    if not 0 <= wait <= MAX_WAIT:
        raise BadRequest("`wait` must be a number of seconds (0–60)")
    return wait


async def get_task(request: web.Request) -> web.Response:
    """``GET /api/v1/tasks/{task_id}[?wait=N]``: long-polls up to N s for a final status."""
    ctx = request.app[CTX]
    task_id = request.match_info["task_id"]
    wait = _wait_param(request)
    unknown = set(request.query) - {"wait"}
    if unknown:
        raise BadRequest(f"Unknown query parameter(s): {', '.join(sorted(unknown))}")
    view = await _view_of(request)
    if view is None:
        raise NotFound(f"No such task: {task_id}", {"id": task_id})
    if wait > 0 and not TaskStatus(view["status"]).final:
        deadline = time.monotonic() + wait
        result = await ctx.waiter.poll(task_id, wait)
        if result is not None:
            view = await with_kwargs(ctx, result_view(result))
        elif time.monotonic() >= deadline:
            view = await task_view(ctx, task_id) or view
    return ok(request, view)


async def cancel_task(request: web.Request) -> web.Response:
    """``POST /api/v1/tasks/{task_id}/cancel``: queued → never runs; running → its child is
    stopped. Answers status ``cancelled``; a task that already ended otherwise → 400."""
    ctx = request.app[CTX]
    task_id = request.match_info["task_id"]
    view = await task_view(ctx, task_id)
    if view is None:
        raise NotFound(f"No such task: {task_id}", {"id": task_id})
    status = TaskStatus(view["status"])
    if status.final and status is not TaskStatus.CANCELLED:
        raise BadRequest(f"Task already ended: {status.value}", {"id": task_id, "status": status.value})
    if not status.final:  # a queued task with its flag already set reads "cancelled"
        ttl_ms = ctx.settings.tasks.result_ttl * 1000
        event = orjson.dumps({"type": "cancel", "taskId": task_id})
        pipe = ctx.redis.pipeline(transaction=False)
        pipe.set(ctx.keys.cancel(task_id), b"1", px=ttl_ms)
        pipe.publish(ctx.keys.events(), event)
        await pipe.execute()
    return ok(request, {"id": task_id, "status": TaskStatus.CANCELLED.value, "previousStatus": status.value})


def add_routes(app: web.Application) -> None:
    routing.get(app, "/api/v1/tasks/{task_id}", get_task, READ)
    routing.post(app, "/api/v1/tasks/{task_id}/cancel", cancel_task, DEVELOPER)
