"""Reading a request's body with this Server's limits (``server.max_body_mb`` and
``server.max_json_depth``): the one place handlers get them from."""

from __future__ import annotations

from aiohttp import web

from fluxfunc_common.models import JSONObject
from fluxfunc_server import bodies
from fluxfunc_server.appkeys import CTX
from fluxfunc_server.bodies import BodyLimits

MB = 1024 * 1024


def body_limits(request: web.Request) -> BodyLimits:
    """How big and how deep a body of this Server may be."""
    server = request.app[CTX].settings.server
    return BodyLimits(int(server.max_body_mb * MB), server.max_json_depth)


async def json_object(request: web.Request) -> JSONObject:
    """The JSON object body (``{}`` when empty); 400 when malformed, too deep or not an object."""
    return await bodies.read_json_object(request, body_limits(request).max_depth)


async def json_value(request: web.Request) -> object:
    """Any JSON value as the body (None when empty); 400 when malformed or too deep."""
    return await bodies.read_json(request, body_limits(request).max_depth)
