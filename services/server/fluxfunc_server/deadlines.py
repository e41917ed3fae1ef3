"""Connection deadlines of the Server, so a slow or silent client cannot hold a connection.

- ``server.keepalive_timeout``: aiohttp closes a connection that has not delivered a whole
  request line and headers within this time of being opened or of its previous response (the
  timer is not reset by bytes that trickle in). It covers idle keep-alive connections and
  half-sent request heads alike.
- ``server.body_timeout``: once the headers are in, the body must arrive within this time;
  :func:`make_body_deadline` closes the connection otherwise (the handler reading it then
  fails as if the client had gone).
"""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware


def make_body_deadline(seconds: float) -> Middleware:
    """Middleware: close the connection of a request whose body is not complete in time."""

    @web.middleware
    async def body_deadline(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not request.body_exists or request.content.is_eof():
            return await handler(request)

        def expire() -> None:
            if not request.content.is_eof() and request.transport is not None:
                request.transport.close()

        timer = asyncio.get_running_loop().call_later(seconds, expire)
        try:
            return await handler(request)
        finally:
            timer.cancel()

    return body_deadline
