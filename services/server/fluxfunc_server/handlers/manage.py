"""The management API: REST resources under ``/api/v1``, all admin-only.

Every resource is a :class:`~fluxfunc_server.handlers.crud.Resource` with the same five
routes; the resources of entry points, script sets and env variables are declared here,
scripts, publishing and the func catalogue in :mod:`manage_scripts`, the cron jobs defined in
code in :mod:`cron_fixed`, and the checks shared by entry points in :mod:`manage_checks`.
"""

from __future__ import annotations

from collections.abc import Mapping

from aiohttp import web

from fluxfunc_common.errors import NotFound
from fluxfunc_common.store import Entity, TaskRecordQuery
from fluxfunc_server import routing, schemas
from fluxfunc_server.access import VIEWER
from fluxfunc_server.appkeys import CTX
from fluxfunc_server.context import AppContext
from fluxfunc_server.handlers import cron_fixed, manage_scripts, python_packages
from fluxfunc_server.handlers import manage_checks as checks
from fluxfunc_server.handlers.crud import API, EntityRow, Resource, add_resource, filters_of, ok_page
from fluxfunc_server.responses import ok

# --- resources -------------------------------------------------------------------------------------


async def _cron_changed(ctx: AppContext, op: str, entity_id: str) -> None:
    await checks.notify_cron_changed(ctx, entity_id, op)


async def _prepare_script_set(ctx: AppContext, data: EntityRow,
                              old: EntityRow | None) -> EntityRow:
    if old is None and not data.get("title"):
        data["title"] = data["id"]
    python_packages.check_script_set(data)  # 400 for a bad requirements line
    return data


async def _fixed_cron_jobs(ctx: AppContext, filters: Mapping[str, object]) -> list[EntityRow]:
    func_id = filters.get("funcId")
    return await cron_fixed.fixed_jobs(ctx, None if func_id is None else str(func_id))


RESOURCES: tuple[Resource, ...] = (
    Resource("script-sets", Entity.SCRIPT_SET, "script set", schemas.ScriptSetListQuery,
             schemas.ScriptSetCreate, schemas.ScriptSetUpdate, prepare=_prepare_script_set,
             before_delete=checks.refuse_non_empty_script_set,
             after=python_packages.script_set_changed),
    Resource("sync-apis", Entity.SYNC_API, "sync API", schemas.EntryListQuery,
             schemas.SyncApiCreate, schemas.SyncApiUpdate, id_prefix="sapi",
             prepare=checks.prepare_api, present=checks.present_api),
    Resource("async-apis", Entity.ASYNC_API, "async API", schemas.EntryListQuery,
             schemas.AsyncApiCreate, schemas.AsyncApiUpdate, id_prefix="aapi",
             prepare=checks.prepare_api, present=checks.present_api),
    Resource("cron-jobs", Entity.CRON_JOB, "cron job", schemas.EntryListQuery,
             schemas.CronJobCreate, schemas.CronJobUpdate, id_prefix="cron",
             prepare=checks.prepare_cron_job, after=_cron_changed, extra=_fixed_cron_jobs,
             present=checks.present_cron_job),
    Resource("env-variables", Entity.ENV_VARIABLE, "env variable", schemas.EnvVariableListQuery,
             schemas.EnvVariableCreate, schemas.EnvVariableUpdate,
             prepare=checks.prepare_env_variable, present=checks.present_env_variable,
             after=checks.env_changed),
)


# --- cron-job next fires and task records ----------------------------------------------------------


async def cron_next(request: web.Request) -> web.Response:
    """``GET /cron-jobs/{id}/next?count=5``: the next fire times (epoch s and ISO)."""
    ctx = request.app[CTX]
    q = schemas.query_of(request.query, schemas.NextFiresQuery)
    job = await ctx.store.get(Entity.CRON_JOB, request.match_info["id"])
    return ok(request, checks.next_fires(ctx, job, q.count))


async def list_task_records(request: web.Request) -> web.Response:
    q = schemas.query_of(request.query, schemas.TaskRecordListQuery)
    query = TaskRecordQuery(filters={k: str(v) for k, v in filters_of(q).items()
                                     if k not in ("since", "until")},
                            since=q.since, until=q.until, limit=q.limit, cursor=q.cursor)
    page = await request.app[CTX].store.list_task_records(query)
    return ok_page(request, page, q.limit, lambda record: record)


async def get_task_record(request: web.Request) -> web.Response:
    task_id = request.match_info["id"]
    record = await request.app[CTX].store.get_task_record(task_id)
    if record is None:
        raise NotFound(f"task record {task_id!r} not found", {"id": task_id})
    return ok(request, record)


def add_routes(app: web.Application) -> None:
    """Register every management route (admin-only)."""
    manage_scripts.add_routes(app)
    cron_fixed.add_routes(app)  # before the generic cron-job routes
    for res in RESOURCES:
        add_resource(app, res)
    routing.get(app, f"{API}/cron-jobs/{{id}}/next", cron_next, VIEWER)
    routing.get(app, f"{API}/task-records", list_task_records, VIEWER)
    routing.get(app, f"{API}/task-records/{{id}}", get_task_record, VIEWER)
