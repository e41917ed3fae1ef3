"""Invocation routes: sync/async API entries (and their legacy aliases), direct
calls by func id, many calls at once, and running a cron job now.

The hot path (a sync API call) reads the entry and the func from the in-process catalogue,
and costs one Redis round trip to enqueue, shared with the concurrent requests of the moment
(:mod:`fluxfunc_server.batcher`), plus one when the entry has throttling or the func a result
cache.
"""

from __future__ import annotations

from aiohttp import web

from fluxfunc_common import cron
from fluxfunc_common.envelope import Origin, TaskEnvelope
from fluxfunc_common.errors import BadRequest, BizCondition, NotFound, QueueFull
from fluxfunc_common.models import FIXED_CRON_PREFIX, ApiEntry, AsyncApi, CronJob, Func, SyncApi
from fluxfunc_common.store import Entity
from fluxfunc_server import apiauth, apiauth_gate, peer, routing, throttle
from fluxfunc_server.access import DEVELOPER, PUBLIC
from fluxfunc_server.appkeys import CALL_LIMITS, CALLER, CATALOG, CTX
from fluxfunc_server.bodies import read_body
from fluxfunc_server.caller import Caller, CallSpec, SyncOutcome
from fluxfunc_server.catalog import Catalog
from fluxfunc_server.files import file_answer
from fluxfunc_server.handlers.reading import json_object
from fluxfunc_server.invocation import (
    FORMATS,
    CallOptions,
    caller_input,
    check_signature,
    http_request_info,
    merge_kwargs,
    options_from,
    parse_options,
    query_dict,
    split_call_body,
)
from fluxfunc_server.outcome import raise_for_status, result_value, success_response
from fluxfunc_server.responses import TRACE_KEY, ok
from fluxfunc_server.schemas import parse
from fluxfunc_server.schemas_invoke import (
    AsyncCallOptions,
    DirectCallOptions,
    FuncManyBody,
    ManyCall,
    SyncCallOptions,
)

_FORMAT = "{format:normal|s|simplified}"


# --- shared ---------------------------------------------------------------------------------
def check_entry(entry: ApiEntry, what: str, now: float) -> None:
    """Disabled or expired → 403 EBizCondition."""
    if entry.is_disabled:
        raise BizCondition(f"{what} is disabled", {"id": entry.id})
    if entry.expired(now):
        raise BizCondition(f"{what} has expired", {"id": entry.id, "expireTime": entry.expire_time})


def accepted(request: web.Request, task_id: str) -> web.Response:
    """202: the wait ended before the task did; the result will be at the task API."""
    location = f"/api/v1/tasks/{task_id}"
    return ok(request, {"id": task_id, "location": location}, status=202,
              headers={"Location": location})


def sync_answer(request: web.Request, outcome: SyncOutcome,
                options: CallOptions, *, unbox: bool) -> web.StreamResponse:
    """The answer of a finished (or still running) sync call."""
    result = outcome.result
    if result is None:
        return accepted(request, outcome.task_id)
    raise_for_status(result)
    response: web.StreamResponse
    if options.unbox is False or (options.unbox is None and not unbox):
        response = ok(request, {"result": result_value(result), "taskId": result.id})
    elif result.response is not None and result.response.file_path:
        response = file_answer(request.app[CTX].settings.resources, result.response)
    else:
        response = success_response(result, return_type=options.return_type,
                                    if_none_match=request.headers.get("If-None-Match"))
    if outcome.cached:
        response.headers["X-Dff-Cache"] = "Cached"
    return response


# --- sync / async API entries ------------------------------------------------------------------
async def _api_call(request: web.Request, entity: Entity, origin: Origin) -> web.StreamResponse:
    ctx, catalog, caller = request.app[CTX], request.app[CATALOG], request.app[CALLER]
    what = "sync API" if entity is Entity.SYNC_API else "async API"
    model: type[ApiEntry] = SyncApi if entity is Entity.SYNC_API else AsyncApi
    entry = await catalog.get(model, request.match_info["id"])
    api_auth = await apiauth_gate.api_auth_of(request, entry)  # inline, or its definition's
    peer.check_form_origin(request, api_auth)
    now = ctx.clock.time()
    query = query_dict(request.query)
    limits = request.app[CALL_LIMITS]
    auth = apiauth_gate.auth_input(request, query)
    if not apiauth.needs_body(api_auth):  # header/query auth: before a byte of the body is read
        apiauth.check(api_auth, auth, ctx.cipher)
    body = await read_body(request, limits)
    if apiauth.needs_body(api_auth):  # a body field, or an auth func (sees the whole request)
        await apiauth_gate.check_with_body(request, entry, api_auth, auth, query, body)
    check_entry(entry, what, now)
    if entry.throttling:
        await throttle.check(ctx.redis, ctx.keys, entry.id, entry.throttling, now)
    fmt = FORMATS[request.match_info.get("format", "normal")]
    caller_kwargs, raw_options = caller_input(fmt, request.method, query, body,
                                              auth.strip_query, auth.strip_body, limits.max_depth)
    sync = origin is Origin.SYNC_API
    options = parse_options(raw_options, SyncCallOptions if sync else AsyncCallOptions, now)
    func = await catalog.get(Func, entry.func_id)
    if body.files:  # DataFlux Func's `files` kwarg: path, original name, size, type of each
        caller_kwargs["files"] = [f.kwarg() for f in body.files]
    kwargs = merge_kwargs(entry.kwargs, caller_kwargs)
    check_signature(func, kwargs)
    spec = CallSpec(origin, entry.id, request[TRACE_KEY],
                    http_request_info(request, query, body, auth,
                                      ctx.settings.server.trusted_networks),
                    entry.task_record_limit)
    spec.principal = f"{entry.id}/{auth.principal or 'anyone'}"
    if not sync:
        enq = await caller.enqueue(func, kwargs, spec, options)
        return ok(request, {"id": enq.task_id})
    outcome = await caller.run(func, kwargs, spec, options)
    return sync_answer(request, outcome, options, unbox=True)


async def call_sync_api(request: web.Request) -> web.StreamResponse:
    """``GET|POST /api/v1/sync/{id}[/{format}]``: run and wait; the bare return value."""
    return await _api_call(request, Entity.SYNC_API, Origin.SYNC_API)


async def call_async_api(request: web.Request) -> web.StreamResponse:
    """``GET|POST /api/v1/async/{id}[/{format}]``: enqueue; ``data.id`` is the task id."""
    return await _api_call(request, Entity.ASYNC_API, Origin.ASYNC_API)


# --- admin calls ---------------------------------------------------------------------------------
async def call_func(request: web.Request) -> web.StreamResponse:
    """``POST /api/v1/func/{func_id}``: ``data.result`` (sync) or ``data.id`` (async/eta/delay)."""
    ctx, catalog, caller = request.app[CTX], request.app[CATALOG], request.app[CALLER]
    kwargs, raw_options = split_call_body(await json_object(request))
    options = parse_options(raw_options, DirectCallOptions, ctx.clock.time())
    func = await catalog.get(Func, request.match_info["func_id"])
    check_signature(func, kwargs)
    spec = CallSpec(Origin.DIRECT, func.id, request[TRACE_KEY])
    if options.run_async or options.eta is not None:
        enq = await caller.enqueue(func, kwargs, spec, options)
        return ok(request, {"id": enq.task_id})
    outcome = await caller.run(func, kwargs, spec, options)
    return sync_answer(request, outcome, options, unbox=False)


async def call_func_many(request: web.Request) -> web.Response:
    """``POST /api/v1/func-many`` ``{"calls": [{funcId, kwargs, options}]}`` → ``data.ids``;
    every call is checked first, then all are enqueued in one pipeline."""
    ctx, catalog, caller = request.app[CTX], request.app[CATALOG], request.app[CALLER]
    body = parse(FuncManyBody, await json_object(request))
    now = ctx.clock.time()
    envs: list[TaskEnvelope] = []
    for i, call in enumerate(body.calls):
        try:
            envs.append(await _many_envelope(request, catalog, caller, call, now))
        except BadRequest as exc:
            exc.detail = {**exc.detail, "index": i}
            exc.message = f"calls[{i}]: {exc.message}"
            raise
    enqueued = await caller.enqueue_many(envs)
    return ok(request, {"ids": [e.task_id for e in enqueued]})


async def _many_envelope(request: web.Request, catalog: Catalog, caller: Caller, call: ManyCall,
                         now: float) -> TaskEnvelope:
    options = options_from(call.options, now)
    func = await catalog.get(Func, call.func_id)
    kwargs = call.kwargs or {}
    check_signature(func, kwargs)
    return caller.envelope(func, kwargs, CallSpec(Origin.DIRECT, call.func_id, request[TRACE_KEY]),
                           options, now=now)


async def run_cron_job(request: web.Request) -> web.Response:
    """``POST /api/v1/cron/{id}``: fire the job now (its overlap policy applies; a disabled or
    expired job can still be run by hand). ``cron-fixed-<funcId>`` names the implicit job of
    a func published with ``fixed_cron_expr``."""
    ctx = request.app[CTX]
    await json_object(request)  # no parameters, but a malformed body is still a 400
    job_id = request.match_info["id"]
    row = await ctx.store.find(Entity.CRON_JOB, job_id)
    job = CronJob.from_row(row) if row is not None else None
    if job is None and job_id.startswith(FIXED_CRON_PREFIX):
        fixed_func = await ctx.store.find(Entity.FUNC, job_id[len(FIXED_CRON_PREFIX):])
        job = CronJob.implicit_for(Func.from_row(fixed_func)) if fixed_func else None
    if job is None:
        raise NotFound(f"No such cron job: {job_id}", {"id": job_id})
    func = Func.from_row(await ctx.store.get(Entity.FUNC, job.func_id))
    outcome = await cron.fire(ctx.redis, ctx.keys, ctx.streams, ctx.store, ctx.settings, job, func,
                              fire_ms=int(ctx.clock.time() * 1000), manual=True)
    if outcome.status is cron.FireStatus.FAILED:  # the only failure left: its queue is full
        raise QueueFull(f"Queue {outcome.queue} is full", {"queue": outcome.queue})
    return ok(request, {"id": outcome.task_id, "status": outcome.status.value,
                        "queue": outcome.queue, "detail": outcome.detail or None})


def add_routes(app: web.Application) -> None:
    """Register the invocation routes: API entries are public (each checks its own
    ``apiAuth``), direct calls and running a cron job admin-only."""
    for prefix, handler in (("sync", call_sync_api), ("al", call_sync_api),
                            ("async", call_async_api), ("bat", call_async_api)):
        for path in (f"/api/v1/{prefix}/{{id}}", f"/api/v1/{prefix}/{{id}}/{_FORMAT}"):
            routing.get(app, path, handler, PUBLIC)  # each entry checks its own apiAuth
            routing.post(app, path, handler, PUBLIC)
    routing.post(app, "/api/v1/func/{func_id}", call_func, DEVELOPER)
    routing.post(app, "/api/v1/func-many", call_func_many, DEVELOPER)
    routing.post(app, "/api/v1/cron/{id}", run_cron_job, DEVELOPER)
