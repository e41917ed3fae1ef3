"""The management API: REST resources under ``/api/v1``, all admin-only.

Every resource has the same five routes (``GET`` list with ``?limit&cursor`` and filters,
``POST`` create, ``GET``/``PATCH``/``DELETE`` one); what differs per resource (validation,
derived fields, secrets, notifications) is a :class:`Resource` with hooks. Scripts,
publishing and the func catalogue live in :mod:`manage_scripts`; the checks shared by entry
points in :mod:`manage_checks`.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web
from pydantic import BaseModel

from fluxfunc_common import ids
from fluxfunc_common.errors import BadRequest
from fluxfunc_common.store import Entity, Page, TaskRecordQuery
from fluxfunc_server import schemas
from fluxfunc_server.adminauth import require_admin
from fluxfunc_server.bodies import check_depth
from fluxfunc_server.context import CTX, AppContext
from fluxfunc_server.handlers import manage_checks as checks
from fluxfunc_server.responses import START_KEY, TRACE_KEY, json_response, ok

API = "/api/v1"

Hook = Callable[[AppContext, dict[str, Any], dict[str, Any] | None], Awaitable[dict[str, Any]]]
After = Callable[[AppContext, str, str], Awaitable[None]]


async def _same(ctx: AppContext, data: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
    return data


async def _nothing(ctx: AppContext, op: str, entity_id: str) -> None:
    return None


@dataclass(frozen=True)
class Resource:
    """One REST collection: its path, store entity, request models and hooks."""

    path: str
    entity: Entity
    what: str
    query: type[schemas.ListQuery]
    create: type[BaseModel] | None = None
    update: type[BaseModel] | None = None
    id_prefix: str | None = None  # generated ids (``sapi``…); None → the body must name it
    prepare: Hook = _same  # (ctx, merged entity, existing or None) → what to store
    after: After = _nothing  # (ctx, op, id) after create/update/delete
    present: Callable[[dict[str, Any]], dict[str, Any]] = lambda entity: entity
    before_delete: After = _nothing
    # entities not in the store, listed after the stored ones (cron jobs defined in code)
    extra: Callable[[AppContext, dict[str, Any]], Awaitable[list[dict[str, Any]]]] | None = None


# --- request/response helpers --------------------------------------------------------------------


async def read_json(request: web.Request) -> dict[str, Any]:
    """The JSON object body ({} when empty); 400 for malformed JSON or a non-object."""
    raw = await request.read()
    if not raw.strip():
        return {}
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"malformed JSON body: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest("the request body must be a JSON object")
    check_depth(data, request.app[CTX].settings.server.max_json_depth, "the request body")
    return data


def ok_page(request: web.Request, page: Page, limit: int,
            present: Callable[[dict[str, Any]], dict[str, Any]]) -> web.Response:
    """The success envelope with ``data`` = list and a top-level ``pageInfo`` (DataFlux style)."""
    started = request.get(START_KEY, time.monotonic())
    body = {
        "ok": True, "error": 200, "message": "",
        "data": [present(item) for item in page.items],
        "pageInfo": {"limit": limit, "count": len(page.items), "nextCursor": page.next_cursor},
        "traceId": request.get(TRACE_KEY, ""),
        "reqCost": round((time.monotonic() - started) * 1000, 3),
    }
    return json_response(body)


def _filters(query: BaseModel) -> dict[str, Any]:
    dumped = query.model_dump(by_alias=True, exclude_none=True)
    return {k: v for k, v in dumped.items() if k not in ("limit", "cursor")}


# --- generic handlers ------------------------------------------------------------------------------


def _handlers(res: Resource) -> dict[str, Callable[[web.Request], Awaitable[web.Response]]]:
    async def list_(request: web.Request) -> web.Response:
        await require_admin(request)
        q = schemas.query_of(request.query, res.query)
        page = await request.app[CTX].store.list(res.entity, filters=_filters(q), limit=q.limit,
                                                 cursor=q.cursor)
        if res.extra is not None and page.next_cursor is None:
            page.items = [*page.items, *await res.extra(request.app[CTX], _filters(q))]
        return ok_page(request, page, q.limit, res.present)

    async def get(request: web.Request) -> web.Response:
        await require_admin(request)
        found = await request.app[CTX].store.get(res.entity, request.match_info["id"])
        return ok(request, res.present(found))

    async def create(request: web.Request) -> web.Response:
        await require_admin(request)
        assert res.create is not None
        ctx = request.app[CTX]
        body = schemas.parse(res.create, await read_json(request))
        data = body.model_dump(by_alias=True)
        if not data.get("id"):
            assert res.id_prefix is not None
            data["id"] = ids.entity_id(res.id_prefix)
        data = await res.prepare(ctx, data, None)
        created = await ctx.store.create(res.entity, data)
        await res.after(ctx, "create", created["id"])
        return ok(request, res.present(created))

    async def update(request: web.Request) -> web.Response:
        await require_admin(request)
        assert res.update is not None
        ctx = request.app[CTX]
        entity_id = request.match_info["id"]
        changes = schemas.parse(res.update, await read_json(request)).model_dump(
            by_alias=True, exclude_unset=True)
        existing = await ctx.store.get(res.entity, entity_id)
        merged = await res.prepare(ctx, {**existing, **changes}, existing)
        delta = {k: v for k, v in merged.items() if k not in existing or existing[k] != v}
        delta.update({k: None for k in existing if k not in merged})
        updated = await ctx.store.update(res.entity, entity_id, delta) if delta else existing
        await res.after(ctx, "update", entity_id)
        return ok(request, res.present(updated))

    async def delete(request: web.Request) -> web.Response:
        await require_admin(request)
        ctx = request.app[CTX]
        entity_id = request.match_info["id"]
        await ctx.store.get(res.entity, entity_id)
        await res.before_delete(ctx, "delete", entity_id)
        await ctx.store.delete(res.entity, entity_id)
        await res.after(ctx, "delete", entity_id)
        return ok(request, {"id": entity_id})

    return {"list": list_, "get": get, "create": create, "update": update, "delete": delete}


def add_resource(app: web.Application, res: Resource) -> None:
    """Register the routes of one resource (read-only when it has no create model)."""
    h = _handlers(res)
    base = f"{API}/{res.path}"
    app.router.add_get(base, h["list"], allow_head=False)
    app.router.add_get(base + "/{id}", h["get"], allow_head=False)
    if res.create is not None:
        app.router.add_post(base, h["create"])
    if res.update is not None:
        app.router.add_patch(base + "/{id}", h["update"])
        app.router.add_delete(base + "/{id}", h["delete"])


# --- resources -------------------------------------------------------------------------------------


async def _cron_changed(ctx: AppContext, op: str, entity_id: str) -> None:
    await checks.notify_cron_changed(ctx, entity_id, op)


async def _prepare_script_set(ctx: AppContext, data: dict[str, Any],
                              old: dict[str, Any] | None) -> dict[str, Any]:
    if old is None and not data.get("title"):
        data["title"] = data["id"]
    return data


async def _fixed_cron_jobs(ctx: AppContext, filters: dict[str, Any]) -> list[dict[str, Any]]:
    from fluxfunc_server.handlers import cron_fixed

    return await cron_fixed.fixed_jobs(ctx, filters.get("funcId"))


RESOURCES: tuple[Resource, ...] = (
    Resource("script-sets", Entity.SCRIPT_SET, "script set", schemas.ScriptSetListQuery,
             schemas.ScriptSetCreate, schemas.ScriptSetUpdate, prepare=_prepare_script_set,
             before_delete=checks.refuse_non_empty_script_set),
    Resource("sync-apis", Entity.SYNC_API, "sync API", schemas.EntryListQuery,
             schemas.SyncApiCreate, schemas.SyncApiUpdate, id_prefix="sapi",
             prepare=checks.prepare_api, present=checks.present_api),
    Resource("async-apis", Entity.ASYNC_API, "async API", schemas.EntryListQuery,
             schemas.AsyncApiCreate, schemas.AsyncApiUpdate, id_prefix="aapi",
             prepare=checks.prepare_api, present=checks.present_api),
    Resource("cron-jobs", Entity.CRON_JOB, "cron job", schemas.EntryListQuery,
             schemas.CronJobCreate, schemas.CronJobUpdate, id_prefix="cron",
             prepare=checks.prepare_cron_job, after=_cron_changed, extra=_fixed_cron_jobs),
    Resource("env-variables", Entity.ENV_VARIABLE, "env variable", schemas.EnvVariableListQuery,
             schemas.EnvVariableCreate, schemas.EnvVariableUpdate,
             prepare=checks.prepare_env_variable, present=checks.present_env_variable,
             after=checks.env_changed),
)


# --- cron-job next fires and task records ----------------------------------------------------------


async def cron_next(request: web.Request) -> web.Response:
    """``GET /cron-jobs/{id}/next?count=5``: the next fire times (epoch s and ISO)."""
    await require_admin(request)
    ctx = request.app[CTX]
    q = schemas.query_of(request.query, schemas.NextFiresQuery)
    job = await ctx.store.get(Entity.CRON_JOB, request.match_info["id"])
    return ok(request, checks.next_fires(ctx, job, q.count))


async def list_task_records(request: web.Request) -> web.Response:
    await require_admin(request)
    q = schemas.query_of(request.query, schemas.TaskRecordListQuery)
    query = TaskRecordQuery(filters={k: str(v) for k, v in _filters(q).items()
                                     if k not in ("since", "until")},
                            since=q.since, until=q.until, limit=q.limit, cursor=q.cursor)
    page = await request.app[CTX].store.list_task_records(query)
    return ok_page(request, page, q.limit, lambda record: record)


async def get_task_record(request: web.Request) -> web.Response:
    await require_admin(request)
    task_id = request.match_info["id"]
    record = await request.app[CTX].store.get_task_record(task_id)
    if record is None:
        from fluxfunc_common.errors import NotFound

        raise NotFound(f"task record {task_id!r} not found", {"id": task_id})
    return ok(request, record)


def add_routes(app: web.Application) -> None:
    """Register every management route."""
    from fluxfunc_server.handlers import cron_fixed, manage_scripts

    manage_scripts.add_routes(app)
    cron_fixed.add_routes(app)  # before the generic cron-job routes
    for res in RESOURCES:
        add_resource(app, res)
    app.router.add_get(f"{API}/cron-jobs/{{id}}/next", cron_next, allow_head=False)
    app.router.add_get(f"{API}/task-records", list_task_records, allow_head=False)
    app.router.add_get(f"{API}/task-records/{{id}}", get_task_record, allow_head=False)
