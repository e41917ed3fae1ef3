"""``GET /api/v1/do/ping`` and ``POST /api/v1/do/echo``: the connectivity checks the DataFlux
Func SDKs' own examples call, answered as DataFlux Func answers them.

Both are public, as in DataFlux Func; when a request carries access-key headers they are
verified all the same (a wrong signature is a 401), so an SDK user can try a key with them.
``ping`` answers ``data: "pong"``; ``echo`` answers ``data: {"query": …, "body": …}`` (the query
string as a flat object, the JSON body or ``{}`` without one).
"""

from __future__ import annotations

from aiohttp import web

from fluxfunc_server import routing
from fluxfunc_server.access import SIGNED
from fluxfunc_server.handlers.reading import json_value
from fluxfunc_server.responses import ok


async def ping(request: web.Request) -> web.Response:
    return ok(request, "pong")


async def echo(request: web.Request) -> web.Response:
    body = await json_value(request)
    return ok(request, {"query": dict(request.query), "body": {} if body is None else body})


def add_routes(app: web.Application) -> None:
    routing.get(app, "/api/v1/do/ping", ping, SIGNED)
    routing.post(app, "/api/v1/do/echo", echo, SIGNED)
