"""The DataFlux Func response envelope: ``ok(request, data)`` for success; errors
are rendered by the one error middleware from the :mod:`fluxfunc_common.errors` tree."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, TypedDict

import orjson
from aiohttp import web

from fluxfunc_common.errors import FluxfuncError

TRACE_KEY = web.RequestKey("fluxfunc_trace_id", str)
START_KEY = web.RequestKey("fluxfunc_start_time", float)


def _dumps(body: Any) -> bytes:
    return orjson.dumps(body, default=str, option=orjson.OPT_NON_STR_KEYS)


def json_response(body: Any, *, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """A JSON response (orjson) with the given status."""
    return web.Response(body=_dumps(body), status=status, headers=headers,
                        content_type="application/json")


def ok(request: web.Request, data: Any = None, *, status: int = 200,
       headers: dict[str, str] | None = None) -> web.Response:
    """``{"ok": true, "error": 200, "message": "", "data": …, "traceId", "reqCost"}``."""
    started = request.get(START_KEY, time.monotonic())
    body = {
        "ok": True,
        "error": status,
        "message": "",
        "data": data,
        "traceId": request.get(TRACE_KEY, ""),
        "reqCost": round((time.monotonic() - started) * 1000, 3),
    }
    return json_response(body, status=status, headers=headers)


class ErrorBody(TypedDict):
    """The error envelope."""

    ok: bool
    error: float  # the HTTP status, or status.sub (599.1)
    reason: str
    message: str
    detail: Mapping[str, object]
    traceId: str


def error_body(request: web.Request, exc: FluxfuncError) -> ErrorBody:
    """``{"ok": false, "error": code, "reason", "message", "detail", "traceId"}``."""
    return {
        "ok": False,
        "error": exc.code,
        "reason": exc.reason,
        "message": exc.message,
        "detail": exc.detail,
        "traceId": request.get(TRACE_KEY, ""),
    }
