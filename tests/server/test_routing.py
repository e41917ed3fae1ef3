"""Route access is declared where a route is added and enforced by one middleware; a route
added without a declaration is admin-only (fail closed). A signed request to a ``SIGNED``
route is verified: tests/server/test_adminauth.py (``/api/v1/do/ping``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web
from aiohttp.test_utils import TestClient

from fluxfunc_server import routing
from fluxfunc_server.access import PUBLIC, SIGNED, Access, Rule
from fluxfunc_server.middlewares import make_error_middleware


async def hello(request: web.Request) -> web.Response:
    return web.Response(text="hello")


async def test_access_is_enforced_as_declared(
        aiohttp_client: Callable[[web.Application], Awaitable[TestClient]]) -> None:
    async def open_to_the_door(request: web.Request) -> bool:
        return request.query.get("door") == "open"

    app = web.Application(middlewares=[make_error_middleware(1024), routing.access_middleware])
    app.router.add_get("/undeclared", hello)
    routing.get(app, "/public", hello, PUBLIC)
    routing.get(app, "/signed", hello, SIGNED)
    routing.get(app, "/door", hello, Rule(Access.ADMIN, open_when=open_to_the_door))
    client = await aiohttp_client(app)
    for path, status in (("/undeclared", 401), ("/public", 200), ("/signed", 200),
                         ("/door", 401), ("/door?door=open", 200), ("/nope", 404)):
        resp = await client.get(path)
        assert resp.status == status, (path, resp.status)
    resp = await client.post("/public")
    assert resp.status == 405  # aiohttp's own answers need no credentials
