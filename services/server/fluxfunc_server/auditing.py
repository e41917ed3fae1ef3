"""The audit log's one middleware: every mutating management call (``POST``/``PUT``/``PATCH``/
``DELETE`` on a route that needs a role, plus sign-in and sign-out) is recorded after it ran,
with who (username, ``token:<id>`` or ``ak:<id>``), by which credential, the route template,
the entity id and the HTTP status, refused calls included (403). Calls that never
authenticated (401) are not recorded, so anonymous traffic cannot fill the table; the public
function-call routes are task records, not audit entries. A handler may mark a call as not
worth recording (an editing-lock renewal) with :data:`SKIP_AUDIT`.
"""

from __future__ import annotations

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler

from fluxfunc_common.errors import FluxfuncError
from fluxfunc_common.logs import get_logger
from fluxfunc_common.store import AuditEntry
from fluxfunc_server.appkeys import CTX
from fluxfunc_server.principal import PRINCIPAL
from fluxfunc_server.routing import route_path, rule_of

SKIP_AUDIT = web.RequestKey("fluxfunc_skip_audit", bool)
# who tried, for a call that has no principal (a failed sign-in names the username tried)
ACTOR = web.RequestKey("fluxfunc_audit_actor", str)
ENTITY_ID = web.RequestKey("fluxfunc_audit_entity", str)  # set by handlers that create one
MAX_SCANNED_BYTES = 256 * 1024  # a created entity's answer is small; bigger ones are not parsed
log = get_logger("server.audit")


def _created_id(response: web.StreamResponse | None) -> str | None:
    """``data.id`` of a JSON answer (what a create answers), else None."""
    if not isinstance(response, web.Response) or response.content_type != "application/json":
        return None
    body = response.body
    if not isinstance(body, bytes) or len(body) > MAX_SCANNED_BYTES:
        return None
    try:
        data = orjson.loads(body).get("data")
    except (orjson.JSONDecodeError, AttributeError):
        return None
    found = data.get("id") if isinstance(data, dict) else None
    return found if isinstance(found, str) else None


def _entity_id(request: web.Request, response: web.StreamResponse | None) -> str | None:
    given: str | None = request.get(ENTITY_ID)
    if given is not None:
        return given
    info = request.match_info
    for name in ("id", "username", "task_id", "entry", "func_id"):
        if name in info:
            return info[name]
    return next(iter(info.values()), None) or _created_id(response)


async def record(request: web.Request, status: int,
                 response: web.StreamResponse | None = None) -> None:
    """Write the audit entry of ``request`` (a failure is logged, never the caller's problem)."""
    principal = request.get(PRINCIPAL)
    actor = request.get(ACTOR)
    if request.get(SKIP_AUDIT) or (principal is None and actor is None):
        return
    ctx = request.app[CTX]
    entry = AuditEntry("", ctx.clock.time(), principal.name if principal else str(actor),
                       principal.via.value if principal else "password", request.method,
                       route_path(request.match_info.route) or request.path,
                       _entity_id(request, response), status)
    try:
        await ctx.store.add_audit(entry)
    except Exception:
        log.exception("audit entry not written", method=entry.method, route=entry.route,
                      username=entry.username, status=status)


@web.middleware
async def audit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Run the call, then record it when its route is audited."""
    rule = rule_of(request)
    if rule is None or not rule.audited(request.method):
        return await handler(request)
    status, response = 500, None
    try:
        response = await handler(request)
        status = response.status
        return response
    except FluxfuncError as exc:
        status = exc.status
        raise
    except web.HTTPException as exc:
        status = exc.status
        raise
    finally:
        await record(request, status, response)
