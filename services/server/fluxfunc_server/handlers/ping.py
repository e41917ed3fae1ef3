"""``GET /api/v1/do/ping`` and ``POST /api/v1/do/echo``: the connectivity checks the DataFlux
Func SDKs' own examples call, answered as DataFlux Func answers them.

Both are public, as in DataFlux Func; when a request carries access-key headers they are
verified all the same (a wrong signature is a 401), so an SDK user can try a key with them.
``ping`` answers ``data: "pong"``; ``echo`` answers ``data: {"query": …, "body": …}`` (the query
string as a flat object, the JSON body or ``{}`` without one).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from fluxfunc_server.adminauth import require_admin
from fluxfunc_server.bodies import parse_json
from fluxfunc_server.context import CTX
from fluxfunc_server.responses import ok


async def _check_signed(request: web.Request) -> None:
    if request.headers.get("X-Dff-Ak-Id") or request.headers.get("X-Dff-Ak-Sign"):
        await require_admin(request)


async def ping(request: web.Request) -> web.Response:
    await _check_signed(request)
    return ok(request, "pong")


async def echo(request: web.Request) -> web.Response:
    await _check_signed(request)
    raw = await request.read()
    body: Any = {}
    if raw.strip():
        body = parse_json(raw, "request body", request.app[CTX].settings.server.max_json_depth)
    return ok(request, {"query": dict(request.query), "body": body})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/do/ping", ping, allow_head=False)
    app.router.add_post("/api/v1/do/echo", echo)
