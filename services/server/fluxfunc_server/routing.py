"""Adding routes with their access, and the one middleware that enforces it.

Every route of the Server is added with :func:`add_route` (or :func:`get`/:func:`post`), which
records its :class:`~fluxfunc_server.access.Rule`; :func:`access_middleware` checks it before
the handler runs, so no handler checks credentials itself: it authenticates the caller (a
bearer token, an access key, or the console's session cookie, in that order), stores the
:class:`~fluxfunc_server.principal.Principal` on the request, refuses a cookie-authenticated
mutating request from another origin and a role below the route's level (403). A route added
without a rule (a programming slip) is treated as admin-only; aiohttp's own 404/405 answers
need no credentials.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.typedefs import Handler
from aiohttp.web_urldispatcher import AbstractRoute

from fluxfunc_common.errors import Forbidden, UserAuthError
from fluxfunc_server import sessions
from fluxfunc_server.access import ADMIN, MUTATING, Access, Rule
from fluxfunc_server.adminauth import api_principal, sends_api_credentials
from fluxfunc_server.appkeys import ACCESS, CTX
from fluxfunc_server.principal import PRINCIPAL, Principal, Via

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
        path = route_path(route)
        if path is not None:
            out[(route.method, path)] = rule
    return out


def route_path(route: AbstractRoute | None) -> str | None:
    """A route's path template as the OpenAPI document writes it (``/api/v1/scripts/{id}``)."""
    resource = route.resource if route is not None else None
    if resource is None:
        return None
    return re.sub(r"\{(\w+):[^}]*\}", r"{\1}", resource.canonical)


def rule_of(request: web.Request) -> Rule | None:
    """The rule of the route ``request`` matched; None for aiohttp's own 404/405."""
    info = request.match_info
    if info.http_exception is not None:
        return None
    return request.app.get(ACCESS, {}).get(info.route, ADMIN)


async def authenticate(request: web.Request) -> Principal:
    """The caller (a token, an access key, a console session), else UserAuthError (401)."""
    found: Principal | None = request.get(PRINCIPAL)
    if found is not None:
        return found
    if sends_api_credentials(request):
        principal = await api_principal(request)
    else:
        sid = request.cookies.get(sessions.COOKIE)
        session = await sessions.lookup(request.app[CTX], sid) if sid else None
        if session is None:
            raise UserAuthError("authentication required: sign in, or send `Authorization: "
                                "Bearer <token>` or DataFlux Func access-key headers")
        principal = session
    request[PRINCIPAL] = principal
    return principal


async def check_access(request: web.Request, rule: Rule) -> None:
    """Return when ``request`` may use a route of ``rule``; else UserAuthError (401) or
    Forbidden (403: a role too low, or a cookie-authenticated call from another origin)."""
    if rule.access is Access.PUBLIC:
        return
    if rule.access is Access.SIGNED:
        if any(request.headers.get(name) for name in AK_HEADERS):
            await authenticate(request)
        return
    if rule.open_when is not None and await rule.open_when(request):
        return
    principal = await authenticate(request)
    if principal.via is Via.SESSION and request.method in MUTATING:
        sessions.check_origin(request)
    needed = rule.access.role
    if needed is not None and not principal.role.covers(needed):
        raise Forbidden(f"the role {principal.role.value!r} may not do this "
                        f"(needs {needed.value!r})", {"role": principal.role.value,
                                                       "needed": needed.value})


@web.middleware
async def access_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Check the route's declared access, then run its handler."""
    rule = rule_of(request)
    if rule is not None:
        await check_access(request, rule)
    return await handler(request)
