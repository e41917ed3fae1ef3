"""``/api/v1/scripts/{id}/lock``: the editing lock of a script (:mod:`fluxfunc_server.editlocks`).

``POST`` ``{"force": false}`` takes or renews the caller's lock (409 with ``detail``
``{"holder", "expiresAt"}`` when another holds it; ``force`` takes it over and is audited,
a plain take or renewal is not: the console renews every few seconds); ``GET`` answers the
lock or null; ``DELETE`` releases the caller's own lock. A lock taken through a console session
is released when that session ends (:func:`fluxfunc_server.editlocks.release_session`).
"""

from __future__ import annotations

from aiohttp import web

from fluxfunc_common.store import Entity
from fluxfunc_server import editlocks, routing, schemas
from fluxfunc_server.access import DEVELOPER, VIEWER
from fluxfunc_server.appkeys import CTX
from fluxfunc_server.auditing import SKIP_AUDIT
from fluxfunc_server.handlers.reading import json_object
from fluxfunc_server.principal import principal_of
from fluxfunc_server.responses import ok
from fluxfunc_server.schemas_accounts import LockTake

PATH = "/api/v1/scripts/{id}/lock"


async def get_lock(request: web.Request) -> web.Response:
    lock = await editlocks.current(request.app[CTX], request.match_info["id"])
    return ok(request, lock.view() if lock else None)


async def take_lock(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    script_id = request.match_info["id"]
    body = schemas.parse(LockTake, await json_object(request))
    request[SKIP_AUDIT] = not body.force
    await ctx.store.get(Entity.SCRIPT, script_id)  # 404 for a script that does not exist
    principal = principal_of(request)
    lock = await editlocks.take(ctx, script_id, principal.name, session=principal.session,
                                force=body.force)
    return ok(request, lock.view())


async def release_lock(request: web.Request) -> web.Response:
    request[SKIP_AUDIT] = True
    await editlocks.release(request.app[CTX], request.match_info["id"], principal_of(request).name)
    return ok(request, None)


def add_routes(app: web.Application) -> None:
    routing.get(app, PATH, get_lock, VIEWER)
    routing.post(app, PATH, take_lock, DEVELOPER)
    routing.add_route(app, "DELETE", PATH, release_lock, DEVELOPER)
