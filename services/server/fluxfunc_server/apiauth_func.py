"""The ``func`` API auth: a published func decides, as in DataFlux Func.

The auth func is called with no kwargs; it reads the request from ``_DFF_HTTP_REQUEST``
(method, path, headers, query, body, ip — the same object the entry's own func gets). It runs
through the normal enqueue-and-wait path on the auth func's queue (origin ``apiAuth``). A
truthy return value passes (a text return value also names the caller: the principal
``func:<text>`` keeps result caches and idempotency keys apart per caller); a falsy one, an
exception, a missing func, or no answer within ``server.api_auth_func_timeout`` seconds
(default 5) is a 401. The func's result cache is never
used: each request is judged on its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fluxfunc_common.envelope import Origin, TaskStatus
from fluxfunc_common.errors import NotFound
from fluxfunc_common.models import Func
from fluxfunc_common.userjson import JSONObject
from fluxfunc_server.apiauth import APIAuthFailed, AuthInput
from fluxfunc_server.caller import Caller, CallSpec
from fluxfunc_server.catalog import Catalog
from fluxfunc_server.invocation import CallOptions
from fluxfunc_server.outcome import result_value


async def check_func(api_auth: Mapping[str, Any], req: AuthInput, *, catalog: Catalog,
                     caller: Caller, http_request: JSONObject, origin_id: str,
                     trace_id: str | None, wait_seconds: float) -> None:
    """Raise :class:`APIAuthFailed` unless the auth func returns something truthy in time."""
    func_id = str(api_auth.get("funcId") or "")
    try:
        func = await catalog.get(Func, func_id)
    except NotFound:
        raise APIAuthFailed("API auth failed: the auth func does not exist") from None
    if func.options.cache_seconds is not None:  # never answer one request with another's verdict
        func = func.model_copy(update={"options": func.options.model_copy(
            update={"cache_result": None})})
    spec = CallSpec(Origin.API_AUTH, origin_id, trace_id, http_request)
    spec.principal = f"apiAuth/{origin_id}"
    outcome = await caller.run(func, {}, spec, CallOptions(max_wait=wait_seconds))
    result = outcome.result
    if result is None:
        raise APIAuthFailed("API auth failed: the auth func did not answer in time")
    if result.status is not TaskStatus.SUCCESS or not result_value(result):
        raise APIAuthFailed("API auth failed: refused by the auth func")
    value = result_value(result)  # a text names the caller (result cache, idempotency keys)
    req.principal = f"func:{value[:200]}" if isinstance(value, str) else "func"
