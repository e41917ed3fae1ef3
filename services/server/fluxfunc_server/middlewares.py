"""The Server's one error middleware: trace ids, body-size limit, HTTP metrics, and every
error (fluxfunc, aiohttp, unexpected) rendered as the DataFlux Func envelope."""

from __future__ import annotations

import os
import re
import sqlite3
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pymysql
from aiohttp import web
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ReadOnlyError
from redis.exceptions import TimeoutError as RedisTimeoutError

from fluxfunc_common.errors import (
    ClientError,
    FluxfuncError,
    NotFound,
    PayloadTooLarge,
    Unavailable,
)
from fluxfunc_common.logs import get_logger
from fluxfunc_server.appkeys import CTX
from fluxfunc_server.responses import START_KEY, TRACE_KEY, error_body, json_response

log = get_logger("server.http")

TRACE_HEADER = "X-Trace-Id"
_TRACE_OK = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# A dependency that does not answer (or a Redis primary that became a replica) is a 503.
REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, ReadOnlyError)
SQL_DOWN = (pymysql.err.OperationalError, pymysql.err.InterfaceError, sqlite3.OperationalError)


class MethodNotAllowed(NotFound):
    """Method not allowed on this route."""

    status = code = 405
    headers: dict[str, str] = {}


def new_trace_id() -> str:
    """``TRACE-`` + 96 random bits (cheap: this runs for every request)."""
    return "TRACE-" + os.urandom(12).hex()


def trace_id_of(request: web.Request) -> str:
    """The caller's ``X-Trace-Id`` when it looks sane, else a fresh one."""
    given = request.headers.get(TRACE_HEADER)
    return given if given and _TRACE_OK.match(given) else new_trace_id()


def from_http_exception(exc: web.HTTPException, max_body_bytes: int) -> FluxfuncError:
    """aiohttp's own 4xx/5xx (no route, wrong method, body too large) as a fluxfunc error."""
    if exc.status == 404:
        return NotFound("No such route")
    if exc.status == 405:
        not_allowed = MethodNotAllowed("Method not allowed")
        not_allowed.headers = {"Allow": exc.headers.get("Allow", "")}
        return not_allowed
    if exc.status == 413:
        return PayloadTooLarge("Request body too large", {"maxBytes": max_body_bytes})
    if 400 <= exc.status < 500:
        err = ClientError(exc.reason or "Bad request")
        err.status = err.code = exc.status
        return err
    return FluxfuncError(exc.reason or "Server error")


def _own_body_limit(request: web.Request) -> bool:
    """A handler marked by :func:`fluxfunc_server.files.own_body_limit` (resource uploads)."""
    return bool(getattr(request.match_info.handler, "own_body_limit", False))


def _route_label(request: web.Request) -> str:
    info = request.match_info
    resource = info.route.resource if info.route else None
    return resource.canonical if resource is not None else "unmatched"


def _count(request: web.Request, status: int) -> None:
    metrics = request.app[CTX].metrics if CTX in request.app else None
    if metrics is not None:
        metrics.observe_request(_route_label(request), request.method, status,
                                time.monotonic() - request[START_KEY])


def error_response(request: web.Request, exc: FluxfuncError) -> web.Response:
    """The error envelope; HTTP status = integer part of the code."""
    headers: dict[str, str] = dict(getattr(exc, "headers", None) or {})
    headers[TRACE_HEADER] = request.get(TRACE_KEY, "")
    return json_response(error_body(request, exc), status=exc.status, headers=headers)


def make_error_middleware(max_body_bytes: int) -> Any:
    """The middleware (a closure over the body limit, checked before any body is read)."""

    @web.middleware
    async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        request[START_KEY] = time.monotonic()
        request[TRACE_KEY] = trace_id = trace_id_of(request)
        try:
            length = request.content_length
            if length is not None and length > max_body_bytes and not _own_body_limit(request):
                raise PayloadTooLarge("Request body too large", {"maxBytes": max_body_bytes})
            response = await handler(request)
        except FluxfuncError as exc:
            response = error_response(request, exc)
        except web.HTTPException as exc:
            if exc.status < 400:  # redirects and the like pass through untouched
                exc.headers[TRACE_HEADER] = trace_id
                _count(request, exc.status)
                raise
            response = error_response(request, from_http_exception(exc, max_body_bytes))
        except REDIS_DOWN as exc:
            log.warning("redis unavailable", path=request.path, error=str(exc), trace_id=trace_id)
            response = error_response(request, Unavailable("Redis is unavailable"))
        except SQL_DOWN as exc:
            log.warning("database unavailable", path=request.path, error=str(exc), trace_id=trace_id)
            response = error_response(request, Unavailable("The database is unavailable"))
        except Exception:
            log.exception("unhandled error", method=request.method, path=request.path,
                          trace_id=trace_id)
            response = error_response(request, FluxfuncError("Internal server error"))
        if not response.prepared:
            response.headers[TRACE_HEADER] = trace_id
        _count(request, response.status)
        return response

    return error_middleware
