"""Draft runs: ``POST /api/v1/scripts/{id}/draft-run`` runs one function of a script's *draft*
on a worker without publishing it — the console's Run panel (docs/http-api.md, "Draft runs");
``GET /api/v1/scripts/{id}/draft-funcs`` lists the functions it can run.

The Server reads the draft as publish would, without running it (:mod:`fluxfunc_common.scripts`):
a syntax error is a 400 naming its line and nothing runs; a function that is not an
``@DFF.API`` function of the draft is a 404; the kwargs are checked as a published call's
(:meth:`~fluxfunc_common.models.Func.check_kwargs`). The task is a normal envelope marked as a
draft run — origin ``draft``, ``draftMd5`` the MD5 of the draft code, queue
``console.draft_run_queue``, a timeout of at most ``console.draft_run_max_timeout``, one
attempt — and the Server waits for its result like a sync call. The worker runs the draft in a
module of its own and retires the child after it (docs/worker.md, Draft runs): nothing a
published call runs or sees changes. Each principal may have ``console.draft_runs_per_user``
draft runs under way at once (one more is a 429).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

from aiohttp import web

from fluxfunc_common import queues, scripts
from fluxfunc_common.envelope import Origin, TaskEnvelope, TaskResult, TaskStatus
from fluxfunc_common.errors import BadRequest, NoConsumer, NotFound, RateLimited
from fluxfunc_common.models import Func
from fluxfunc_common.store import Entity
from fluxfunc_common.tasks import build_envelope
from fluxfunc_server import routing, schemas
from fluxfunc_server import schemas_out as out
from fluxfunc_server.access import DEVELOPER, VIEWER
from fluxfunc_server.appkeys import CALLER, CTX
from fluxfunc_server.caller import KILL_GRACE
from fluxfunc_server.context import AppContext
from fluxfunc_server.handlers.reading import json_object
from fluxfunc_server.invocation import check_signature
from fluxfunc_server.outcome import result_value
from fluxfunc_server.principal import principal_of
from fluxfunc_server.responses import ok

T = TypeVar("T")
PATH = "/api/v1/scripts/{id}/draft-run"
FUNCS_PATH = "/api/v1/scripts/{id}/draft-funcs"
QUEUE_WAIT = 30.0  # seconds a draft run may wait for a free worker child before it expires
_STATUS = {TaskStatus.SUCCESS: "success", TaskStatus.TIMEOUT: "timeout"}  # anything else: failure


def draft_func(script_id: str, code: str, name: str) -> Func:
    """The ``@DFF.API`` function ``name`` of the draft ``code`` (400 on a syntax error, with
    its line; 404 when the draft exports no such function)."""
    for row in scripts.analyse(script_id, code).funcs:
        if row["name"] == name:
            return Func.of(row)
    raise NotFound(f"The draft of {script_id} has no @DFF.API function {name!r}",
                   {"scriptId": script_id, "funcName": name})


def _timeout(ctx: AppContext, func: Func, asked: float | None) -> float:
    """Seconds the run may take: ``asked``, else the function's own, at most the cap."""
    cap = ctx.settings.console.draft_run_max_timeout
    if asked is not None and asked > cap:
        raise BadRequest(f"timeout may be at most {cap:g} s (console.draft_run_max_timeout)",
                         {"field": "timeout", "max": cap})
    return asked or min(func.options.effective_timeout(ctx.settings.tasks), cap)


@asynccontextmanager
async def _admitted(ctx: AppContext, who: str, task_id: str, until: float) -> AsyncIterator[None]:
    """Count the run among ``who``'s draft runs under way while the block runs; a 429 when
    that makes more than ``console.draft_runs_per_user``. A run whose Server died is counted
    until its deadline ``until`` (epoch seconds) only."""
    key = ctx.keys.draft_runs(who)
    now_ms = int(ctx.clock.time() * 1000)
    longest_ms = math.ceil((QUEUE_WAIT + ctx.settings.console.draft_run_max_timeout + KILL_GRACE) * 1000)
    pipe = ctx.redis.pipeline(transaction=True)
    pipe.zremrangebyscore(key, "-inf", now_ms)
    pipe.zadd(key, {task_id: int(until * 1000)})
    pipe.zcard(key)
    pipe.pexpire(key, longest_ms)  # past every member's deadline
    running = (await pipe.execute())[2]
    limit = ctx.settings.console.draft_runs_per_user
    try:
        if running > limit:
            raise RateLimited(f"{who} already has {limit} draft run(s) under way; wait for one "
                              "to end", {"limit": limit})
        yield
    finally:
        await ctx.redis.zrem(key, task_id)


def _answer(task_id: str, found: TaskResult | None, waited: float) -> out.DraftRunResult:
    """The ``data`` of the answer: the run's outcome whatever its status."""
    if found is None:  # no worker reported within the wait (the task expires unstarted)
        return out.DraftRunResult(
            taskId=task_id, status="timeout", output="", durationMs=None,
            error=f"DraftRunTimeout: no worker ended the draft run within {waited:.0f} s")
    duration = None
    if found.start_time is not None and found.end_time is not None:
        duration = round((found.end_time - found.start_time) * 1000, 1)
    status = _STATUS.get(found.status, "failure")
    return out.DraftRunResult(
        taskId=task_id, status=status, output=found.print_logs or "",
        result=result_value(found) if status == "success" else None,
        error=None if status == "success" else found.exception or f"Func{found.status.value.title()}",
        traceback=found.traceback, durationMs=duration)


async def _envelope(request: web.Request, script_id: str, body: schemas.DraftRunBody) -> TaskEnvelope:
    """The draft run's task, its function and kwargs checked (nothing is enqueued yet)."""
    ctx = request.app[CTX]
    script = await ctx.store.get(Entity.SCRIPT, script_id)  # 404 with the usual text
    code = str(script.get("code") or "")
    func = draft_func(script_id, code, body.func_name)
    check_signature(func, body.kwargs)
    timeout = _timeout(ctx, func, body.timeout)
    now = ctx.clock.time()
    env = build_envelope(func, body.kwargs, origin=Origin.DRAFT, now=now,
                         settings=ctx.settings.tasks, origin_id=principal_of(request).name,
                         queue=ctx.settings.console.draft_run_queue, expires=now + QUEUE_WAIT,
                         reply_to=ctx.waiter.reply_key)
    return env.model_copy(update={"timeout": timeout, "max_attempts": 1,
                                  "draft_md5": hashlib.md5(code.encode()).hexdigest()})


async def draft_run(request: web.Request) -> web.Response:
    """``POST /scripts/{id}/draft-run`` ``{funcName, kwargs, timeout?}``: run, wait, answer."""
    ctx, caller = request.app[CTX], request.app[CALLER]
    body = schemas.parse(schemas.DraftRunBody, await json_object(request))
    env = await _envelope(request, request.match_info["id"], body)
    if not await caller.live.read(env.queue):  # it would only wait: say so at once
        raise NoConsumer(queues.no_consumer(env.queue), {"queue": env.queue})
    wait = QUEUE_WAIT + env.timeout + KILL_GRACE
    started = time.monotonic()
    async with _admitted(ctx, principal_of(request).name, env.id, env.trigger_time + wait):
        fut = ctx.waiter.register(env.id)  # before enqueueing: a fast result cannot be missed
        try:
            await caller.batcher.enqueue(env)
        except BaseException:
            ctx.waiter.discard(env.id)
            raise
        found = await ctx.waiter.wait(env.id, fut, wait)
    answer = _answer(env.id, found, time.monotonic() - started)
    return ok(request, answer.model_dump(mode="json"))


async def draft_funcs(request: web.Request) -> web.Response:
    """``GET /scripts/{id}/draft-funcs``: the ``@DFF.API`` functions of the draft, with their
    signatures, as publish would read them (what the Run panel offers; 400 on a syntax error)."""
    ctx = request.app[CTX]
    script_id = request.match_info["id"]
    code = str((await ctx.store.get(Entity.SCRIPT, script_id)).get("code") or "")
    analysis = scripts.analyse(script_id, code)
    return ok(request, {"funcs": analysis.funcs, "warnings": analysis.warnings,
                        "codeMD5": hashlib.md5(code.encode()).hexdigest()})


def operations(op: Callable[..., T]) -> list[T]:
    """The OpenAPI operations of the routes (``op`` is :class:`fluxfunc_server.openapi.Op`)."""
    funcs = {"type": "object", "properties": {
        "funcs": {"type": "array", "items": {"$ref": "#/components/schemas/Func"}},
        "warnings": {"type": "array", "items": {"type": "string"}}, "codeMD5": {"type": "string"}}}
    return [
        op("get", FUNCS_PATH, "The @DFF.API functions of the script's draft and their signatures, "
           "read without running it (400 on a syntax error)", "management", funcs),
        op("post", PATH, "Run a function of the script's draft on a worker, unpublished, and "
           "answer its result, printed output, error and traceback (the console's Run panel)",
           "management", {"$ref": "#/components/schemas/DraftRunResult"}, body=schemas.DraftRunBody),
    ]


def add_routes(app: web.Application) -> None:
    routing.get(app, FUNCS_PATH, draft_funcs, VIEWER)
    routing.post(app, PATH, draft_run, DEVELOPER)
