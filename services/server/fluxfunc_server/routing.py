"""Adding routes with their access, and the one middleware that enforces it.

Every route of the Server is added with :func:`add_route` (or :func:`get`/:func:`post`), which
records its :class:`~fluxfunc_server.access.Rule`; :func:`access_middleware` checks it before
the handler runs, so no handler checks credentials itself. A route added without a rule (a
programming slip) is treated as admin-only; aiohttp's own 404/405 answers need no credentials.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Handler

from fluxfunc_server.access import ADMIN, Access, Rule
from fluxfunc_server.adminauth import require_admin
from fluxfunc_server.appkeys import ACCESS

RouteHandler = Callable[[web.Request], Awaitable[web.StreamResponse]]
AK_HEADERS = ("X-Dff-Ak-Id", "X-Dff-Ak-Sign")


def add_route(app: web.Application, method: str, path: str, handler: RouteHandler,
              access: Rule) -> None:
    """Add ``method path`` (no implicit ``HEAD`` for ``GET``) under ``access``."""
    route = app.router.add_route(method, path, handler)
    registry = app.get(ACCESS)
    if registry is None:
        registry = app[ACCESS] = {}
    registry[route] = access


def get(app: web.Application, path: str, handler: RouteHandler, access: Rule) -> None:
    add_route(app, "GET", path, handler, access)


def post(app: web.Application, path: str, handler: RouteHandler, access: Rule) -> None:
    add_route(app, "POST", path, handler, access)


def rules(app: web.Application) -> dict[tuple[str, str], Rule]:
    """(method, path) → rule of every route added so far, paths as the OpenAPI document
    writes them (``{name}`` without the pattern aiohttp's ``{name:pattern}`` adds)."""
    out: dict[tuple[str, str], Rule] = {}
    for route, rule in app.get(ACCESS, {}).items():
        resource = route.resource
        if resource is not None:
            out[(route.method, re.sub(r"\{(\w+):[^}]*\}", r"{\1}", resource.canonical))] = rule
    return out


def rule_of(request: web.Request) -> Rule | None:
    """The rule of the route ``request`` matched; None for aiohttp's own 404/405."""
    info = request.match_info
    if info.http_exception is not None:
        return None
    return request.app.get(ACCESS, {}).get(info.route, ADMIN)


async def check_access(request: web.Request, rule: Rule) -> None:
    """Return when ``request`` may use a route of ``rule``; else UserAuthError (401)."""
    if rule.access is Access.PUBLIC:
        return
    if rule.access is Access.SIGNED:
        if any(request.headers.get(name) for name in AK_HEADERS):
            await require_admin(request)
        return
    if rule.open_when is not None and await rule.open_when(request):
        return
    await require_admin(request)


@web.middleware
async def access_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Check the route's declared access, then run its handler."""
    rule = rule_of(request)
    if rule is not None:
        await check_access(request, rule)
    return await handler(request)
