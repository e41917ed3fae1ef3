"""``GET /api/v1/audit``: the audit log (admin only), newest first, ``?limit`` (≤ 500),
``?before=<id>`` for the next page (the last id of the page before), filtered by
``?username`` and ``?route`` (the route template, ``/api/v1/scripts/{id}``)."""

from __future__ import annotations

from aiohttp import web

from fluxfunc_common.store import AuditEntry, AuditQuery
from fluxfunc_server import routing, schemas
from fluxfunc_server.access import ADMIN
from fluxfunc_server.appkeys import CTX
from fluxfunc_server.responses import ok
from fluxfunc_server.schemas_accounts import AuditListQuery

PATH = "/api/v1/audit"


def view(entry: AuditEntry) -> dict[str, object]:
    return {"id": entry.id, "time": entry.time, "username": entry.username, "via": entry.via,
            "method": entry.method, "route": entry.route, "entityId": entry.entity_id,
            "status": entry.status}


async def list_audit(request: web.Request) -> web.Response:
    q = schemas.query_of(request.query, AuditListQuery)
    entries = await request.app[CTX].store.list_audit(
        AuditQuery(limit=q.limit, before=q.before, username=q.username, route=q.route))
    return ok(request, [view(e) for e in entries])


def add_routes(app: web.Application) -> None:
    routing.get(app, PATH, list_audit, ADMIN)
