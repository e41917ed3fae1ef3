"""Turning a finished task into the HTTP answer of a sync call.

Success: the bare return value (dict/list/number/bool/None as JSON, str as text), or what
``DFF.RESP`` asked for. Anything else raises the matching 599.x error, whose ``detail``
carries the user's own exception and traceback.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson
from aiohttp import web

from fluxfunc_common.contenttypes import mime_type
from fluxfunc_common.envelope import TaskResult, TaskStatus
from fluxfunc_common.errors import (
    FuncCancelled,
    FuncDead,
    FuncExpired,
    FuncFailed,
    FuncTimeout,
    TaskError,
)
from fluxfunc_server.files import disposition, file_result

_ERRORS: dict[TaskStatus, type[TaskError]] = {
    TaskStatus.FAILURE: FuncFailed,
    TaskStatus.TIMEOUT: FuncTimeout,
    TaskStatus.DEAD: FuncDead,
    TaskStatus.EXPIRED: FuncExpired,
    TaskStatus.CANCELLED: FuncCancelled,
    TaskStatus.SKIPPED: FuncFailed,
}


def raise_for_status(result: TaskResult) -> None:
    """Raise the 599.x error of a task that did not succeed."""
    if result.status is TaskStatus.SUCCESS:
        return
    error = _ERRORS.get(result.status, FuncFailed)
    message = result.exception or ("Func task skipped" if result.status is TaskStatus.SKIPPED
                                   else (error.__doc__ or "").strip())
    raise error(message, {
        "taskId": result.id,
        "funcId": result.func_id,
        "status": result.status.value,
        "exception": result.exception,
        "traceback": result.traceback,
    })


def _encode(value: Any) -> bytes:
    return orjson.dumps(value, default=str, option=orjson.OPT_NON_STR_KEYS)


def body_response(value: Any, *, return_type: str = "raw", status: int = 200,
                  content_type: str | None = None, headers: dict[str, str] | None = None) -> web.Response:
    """A bare value as a response: str → text, everything else → JSON."""
    out_headers = dict(headers or {})
    if isinstance(value, str) and return_type != "jsonDumps":
        body = value.encode()
        mime = content_type or "text/plain"
    else:
        body = _encode(value)
        mime = content_type or "application/json"
    if "Content-Type" not in out_headers and "content-type" not in {k.lower() for k in out_headers}:
        charset = "; charset=utf-8" if mime.startswith("text/") or mime.endswith(("json", "xml")) else ""
        out_headers["Content-Type"] = mime + charset
    return web.Response(body=body, status=status, headers=out_headers)


def success_response(result: TaskResult, *, return_type: str = "raw",
                     if_none_match: str | None = None) -> web.Response:
    """The bare answer of a successful sync call, honouring ``DFF.RESP``: ``download``
    (True or a file name) answers as an attachment (``api-resp.json``/``.txt`` unless named);
    ``allow_304`` sends an ETag of the body and answers a matching ``If-None-Match`` with 304."""
    resp = result.response
    if resp is None:
        return body_response(result.result, return_type=return_type)
    headers = dict(resp.headers)
    if resp.download and not any(k.lower() == "content-disposition" for k in headers):
        ext = "txt" if isinstance(resp.data, str) else "json"
        name = resp.download if isinstance(resp.download, str) else f"api-resp.{ext}"
        headers["Content-Disposition"] = disposition(name)
    out = body_response(resp.data, return_type=return_type, status=resp.status_code,
                        content_type=mime_type(resp.content_type), headers=headers)
    if not resp.allow_304 or not isinstance(out.body, bytes):
        return out
    etag = f'"{hashlib.sha256(out.body).hexdigest()[:32]}"'
    out.headers["ETag"] = etag
    wanted = {tag.strip().removeprefix("W/") for tag in (if_none_match or "").split(",")}
    if etag in wanted or "*" in wanted:
        return web.Response(status=304, headers={"ETag": etag})
    return out


def result_value(result: TaskResult) -> Any:
    """The value a wrapped answer (``data.result``) carries."""
    if result.response is not None and result.response.file_path:
        return file_result(result.response)
    return result.response.data if result.response is not None else result.result
