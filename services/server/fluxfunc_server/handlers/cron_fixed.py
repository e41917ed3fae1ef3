"""The cron jobs defined in code: a func published with ``@DFF.API(fixed_cron_expr=...)`` has
the implicit job ``cron-fixed-<funcId>`` (:func:`fluxfunc_common.cron.fixed_job`).

They are listed with the stored cron jobs (after them, on the last page), and ``GET`` and
``/next`` answer for them; each carries ``definedInCode: true``. They are read-only: a
``PATCH`` or ``DELETE`` is a 403 that says to change the function and publish it again.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from fluxfunc_common import cron
from fluxfunc_common.errors import BizCondition, NotFound
from fluxfunc_common.store import Entity
from fluxfunc_server import schemas
from fluxfunc_server.adminauth import require_admin
from fluxfunc_server.context import CTX, AppContext
from fluxfunc_server.handlers import manage_checks as checks
from fluxfunc_server.responses import ok

PATH = "/api/v1/cron-jobs/{id:" + cron.FIXED_PREFIX + "[^/]+}"


def present(job: dict[str, Any]) -> dict[str, Any]:
    return {**job, "definedInCode": True}


async def fixed_jobs(ctx: AppContext, func_id: str | None = None) -> list[dict[str, Any]]:
    """Every implicit job (of ``func_id`` only, when given), ordered by id."""
    if func_id is not None:
        func = await ctx.store.find(Entity.FUNC, func_id)
        funcs = [func] if func else []
    else:
        funcs = await ctx.store.changed_since(Entity.FUNC, 0)
    jobs = [job for f in funcs if (job := cron.fixed_job(f))]
    return sorted((present(j) for j in jobs), key=lambda j: str(j["id"]))


async def fixed_job(ctx: AppContext, cron_id: str) -> dict[str, Any]:
    """The implicit job ``cron_id``; NotFound when its func has no ``fixed_cron_expr``."""
    func = await ctx.store.find(Entity.FUNC, cron_id.removeprefix(cron.FIXED_PREFIX))
    job = cron.fixed_job(func) if func else None
    if job is None:
        raise NotFound(f"cron job {cron_id!r} not found (no published func with that id has a "
                       "fixed_cron_expr)", {"id": cron_id})
    return present(job)


async def get(request: web.Request) -> web.Response:
    await require_admin(request)
    return ok(request, await fixed_job(request.app[CTX], request.match_info["id"]))


async def next_fires(request: web.Request) -> web.Response:
    await require_admin(request)
    ctx = request.app[CTX]
    q = schemas.query_of(request.query, schemas.NextFiresQuery)
    return ok(request, checks.next_fires(ctx, await fixed_job(ctx, request.match_info["id"]), q.count))


async def refuse(request: web.Request) -> web.Response:
    await require_admin(request)
    job = await fixed_job(request.app[CTX], request.match_info["id"])
    raise BizCondition(f"cron job {job['id']!r} is defined in code by the fixed_cron_expr of func "
                       f"{job['funcId']!r}: change @DFF.API(fixed_cron_expr=...) and publish the "
                       "script again", {"id": job["id"], "funcId": job["funcId"]})


def add_routes(app: web.Application) -> None:
    """Before the generic cron-job routes, which would answer 404."""
    app.router.add_get(PATH, get, allow_head=False)
    app.router.add_get(PATH + "/next", next_fires, allow_head=False)
    app.router.add_patch(PATH, refuse)
    app.router.add_delete(PATH, refuse)
