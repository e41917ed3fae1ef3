"""The fixed cron expressions defined in code, as read-only entries ``cron-fixed-<funcId>``.

As in DataFlux Func, ``@DFF.API(fixed_cron_expr=...)`` schedules nothing by itself: it fixes
the expression of the cron jobs created on the func (the Server gives them that expression
and refuses another; the Beat fires them on the func's current one). These entries document
it: listed after the stored cron jobs (on the last page), ``GET`` and ``/next`` answer for
them, each with ``definedInCode: true`` and ``isDisabled: true`` (nothing fires them; ``POST
/api/v1/cron/cron-fixed-<funcId>`` still runs the func once by hand). A ``PATCH`` or
``DELETE`` is a 403 that says to change the function and publish it again.
"""

from __future__ import annotations

from aiohttp import web

from fluxfunc_common.errors import BizCondition, NotFound
from fluxfunc_common.models import FIXED_CRON_PREFIX, CronJob, Func
from fluxfunc_common.store import Entity
from fluxfunc_server import routing, schemas
from fluxfunc_server.access import DEVELOPER, VIEWER
from fluxfunc_server.appkeys import CTX
from fluxfunc_server.context import AppContext
from fluxfunc_server.handlers import manage_checks as checks
from fluxfunc_server.handlers.crud import EntityRow
from fluxfunc_server.responses import ok

PATH = "/api/v1/cron-jobs/{id:" + FIXED_CRON_PREFIX + "[^/]+}"


def present(job: CronJob) -> EntityRow:
    return {**job.to_row(), "definedInCode": True, "isDisabled": True,
            "note": "fixed_cron_expr of the func: the expression of the cron jobs created on it; "
                    "schedules nothing by itself"}


async def fixed_jobs(ctx: AppContext, func_id: str | None = None) -> list[EntityRow]:
    """Every fixed-expression entry (of ``func_id`` only, when given), ordered by id."""
    if func_id is not None:
        func = await ctx.store.find(Entity.FUNC, func_id)
        funcs = [func] if func else []
    else:
        funcs = await ctx.store.changed_since(Entity.FUNC, 0)
    jobs = [job for f in funcs if (job := CronJob.implicit_for(Func.from_row(f)))]
    return [present(j) for j in sorted(jobs, key=lambda j: j.id)]


async def fixed_job(ctx: AppContext, cron_id: str) -> EntityRow:
    """The entry ``cron_id``; NotFound when its func has no ``fixed_cron_expr``."""
    func = await ctx.store.find(Entity.FUNC, cron_id.removeprefix(FIXED_CRON_PREFIX))
    job = CronJob.implicit_for(Func.from_row(func)) if func else None
    if job is None:
        raise NotFound(f"cron job {cron_id!r} not found (no published func with that id has a "
                       "fixed_cron_expr)", {"id": cron_id})
    return present(job)


async def get(request: web.Request) -> web.Response:
    return ok(request, await fixed_job(request.app[CTX], request.match_info["id"]))


async def next_fires(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    q = schemas.query_of(request.query, schemas.NextFiresQuery)
    return ok(request, checks.next_fires(ctx, await fixed_job(ctx, request.match_info["id"]), q.count))


async def refuse(request: web.Request) -> web.Response:
    job = await fixed_job(request.app[CTX], request.match_info["id"])
    raise BizCondition(f"cron job {job['id']!r} is defined in code by the fixed_cron_expr of func "
                       f"{job['funcId']!r}: change @DFF.API(fixed_cron_expr=...) and publish the "
                       "script again (to schedule the func, create a cron job on it: it takes "
                       "this expression)", {"id": job["id"], "funcId": job["funcId"]})


def add_routes(app: web.Application) -> None:
    """Before the generic cron-job routes, which would answer 404."""
    routing.get(app, PATH, get, VIEWER)
    routing.get(app, PATH + "/next", next_fires, VIEWER)
    routing.add_route(app, "PATCH", PATH, refuse, DEVELOPER)
    routing.add_route(app, "DELETE", PATH, refuse, DEVELOPER)
