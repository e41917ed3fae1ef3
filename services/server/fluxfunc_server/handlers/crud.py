"""The generic REST collection of the management API: a :class:`Resource` and its five routes
(``GET`` list with ``?limit&cursor`` and filters, ``POST`` create, ``GET``/``PATCH``/``DELETE``
one), read at the resource's ``read`` level and changed at its ``write`` level (viewer and
developer unless it says otherwise). What differs per resource (validation, derived fields, secrets,
notifications) are the resource's hooks; the resources themselves are declared in
:mod:`manage` and :mod:`manage_scripts`.

Entities are the JSON objects the store keeps (camelCase names), handled here without
knowing their fields.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from aiohttp import web
from pydantic import BaseModel

from fluxfunc_common import ids
from fluxfunc_common.store import Entity, Page
from fluxfunc_server import routing, schemas
from fluxfunc_server.access import DEVELOPER, VIEWER, Rule
from fluxfunc_server.appkeys import CTX
from fluxfunc_server.context import AppContext
from fluxfunc_server.handlers.reading import json_object
from fluxfunc_server.responses import START_KEY, TRACE_KEY, json_response, ok

API = "/api/v1"

EntityRow = dict[str, object]  # one stored entity as the API shows it
Hook = Callable[[AppContext, EntityRow, EntityRow | None], Awaitable[EntityRow]]
After = Callable[[AppContext, str, str], Awaitable[None]]
Present = Callable[[EntityRow], EntityRow]
Extra = Callable[[AppContext, Mapping[str, object]], Awaitable[list[EntityRow]]]
Guard = Callable[[web.Request, str], Awaitable[None]]  # (request, id) before update/delete
T = TypeVar("T")


async def _same(ctx: AppContext, data: EntityRow, old: EntityRow | None) -> EntityRow:
    return data


async def _nothing(ctx: AppContext, op: str, entity_id: str) -> None:
    return None


def _as_is(entity: EntityRow) -> EntityRow:
    return entity


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
    present: Present = _as_is
    before_delete: After = _nothing
    # entities not in the store, listed after the stored ones (cron jobs defined in code)
    extra: Extra | None = None
    read: Rule = VIEWER
    write: Rule = DEVELOPER
    guard: Guard | None = None  # e.g. the editing lock of a script


def ok_page(request: web.Request, page: Page[T], limit: int,
            present: Callable[[T], object]) -> web.Response:
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


def filters_of(query: BaseModel) -> dict[str, object]:
    """The filters of a list query (everything but ``limit`` and ``cursor``)."""
    dumped = query.model_dump(by_alias=True, exclude_none=True)
    return {k: v for k, v in dumped.items() if k not in ("limit", "cursor")}


def _entity_id(data: Mapping[str, object]) -> str:
    return str(data["id"])


class _Handlers:
    """The five handlers of one resource."""

    def __init__(self, res: Resource) -> None:
        self.res = res

    async def list(self, request: web.Request) -> web.Response:
        res, ctx = self.res, request.app[CTX]
        q = schemas.query_of(request.query, res.query)
        page: Page[EntityRow] = await ctx.store.list(res.entity, filters=filters_of(q),
                                                     limit=q.limit, cursor=q.cursor)
        if res.extra is not None and page.next_cursor is None:
            page.items = [*page.items, *await res.extra(ctx, filters_of(q))]
        return ok_page(request, page, q.limit, res.present)

    async def get(self, request: web.Request) -> web.Response:
        found = await request.app[CTX].store.get(self.res.entity, request.match_info["id"])
        return ok(request, self.res.present(found))

    async def create(self, request: web.Request) -> web.Response:
        res, ctx = self.res, request.app[CTX]
        assert res.create is not None
        data: EntityRow = schemas.parse(res.create, await json_object(request)).model_dump(by_alias=True)
        if not data.get("id"):
            assert res.id_prefix is not None
            data["id"] = ids.entity_id(res.id_prefix)
        data = await res.prepare(ctx, data, None)
        created = await ctx.store.create(res.entity, data)
        await res.after(ctx, "create", _entity_id(created))
        return ok(request, res.present(created))

    async def update(self, request: web.Request) -> web.Response:
        res, ctx = self.res, request.app[CTX]
        assert res.update is not None
        entity_id = request.match_info["id"]
        if res.guard is not None:
            await res.guard(request, entity_id)
        changes = schemas.parse(res.update, await json_object(request)).model_dump(
            by_alias=True, exclude_unset=True)
        existing: EntityRow = await ctx.store.get(res.entity, entity_id)
        merged = await res.prepare(ctx, {**existing, **changes}, existing)
        delta = {k: v for k, v in merged.items() if k not in existing or existing[k] != v}
        delta.update({k: None for k in existing if k not in merged})
        updated = await ctx.store.update(res.entity, entity_id, delta) if delta else existing
        await res.after(ctx, "update", entity_id)
        return ok(request, res.present(updated))

    async def delete(self, request: web.Request) -> web.Response:
        res, ctx = self.res, request.app[CTX]
        entity_id = request.match_info["id"]
        await ctx.store.get(res.entity, entity_id)
        if res.guard is not None:
            await res.guard(request, entity_id)
        await res.before_delete(ctx, "delete", entity_id)
        await ctx.store.delete(res.entity, entity_id)
        await res.after(ctx, "delete", entity_id)
        return ok(request, {"id": entity_id})


def add_resource(app: web.Application, res: Resource) -> None:
    """Register the routes of one resource at its levels (read-only without a create model)."""
    h = _Handlers(res)
    base = f"{API}/{res.path}"
    routing.get(app, base, h.list, res.read)
    routing.get(app, base + "/{id}", h.get, res.read)
    if res.create is not None:
        routing.post(app, base, h.create, res.write)
    if res.update is not None:
        routing.add_route(app, "PATCH", base + "/{id}", h.update, res.write)
        routing.add_route(app, "DELETE", base + "/{id}", h.delete, res.write)
