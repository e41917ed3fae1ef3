"""The API auth step of a sync/async API call: which auth applies (inline ``apiAuth`` or a
referenced definition, :mod:`apiauth_defs`), what the request offers, and the check after
the body is read (a fixedField in the body, or an auth func, :mod:`apiauth_func`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aiohttp import web

from fluxfunc_common.models import ApiEntry
from fluxfunc_server import apiauth, apiauth_defs, apiauth_func
from fluxfunc_server.appkeys import CALLER, CATALOG, CTX
from fluxfunc_server.bodies import RequestBody
from fluxfunc_server.invocation import Query, http_request_info
from fluxfunc_server.responses import TRACE_KEY


async def api_auth_of(request: web.Request, entry: ApiEntry) -> Mapping[str, Any] | None:
    """The API auth ``entry`` asks for (its definition's when it names one)."""
    return await apiauth_defs.effective(request.app[CATALOG], entry)


def auth_input(request: web.Request, query: Query) -> apiauth.AuthInput:
    """What the request offers for API auth, before its body is read."""
    ctx = request.app[CTX]
    return apiauth.AuthInput(request.headers, query, None, method=request.method,
                             uri=request.raw_path, nonce_key=ctx.nonce_key,
                             now=ctx.clock.time())


async def check_with_body(request: web.Request, entry: ApiEntry, api_auth: Mapping[str, Any] | None,
                          auth: apiauth.AuthInput, query: Query, body: RequestBody) -> None:
    """The check of an auth that needs the body (:func:`apiauth.needs_body`)."""
    ctx = request.app[CTX]
    auth.body = body.value
    if not apiauth.is_func(api_auth):
        apiauth.check(api_auth, auth, ctx.cipher)
        return
    assert api_auth is not None
    info = http_request_info(request, query, body, auth, ctx.settings.server.trusted_networks)
    await apiauth_func.check_func(
        api_auth, auth, catalog=request.app[CATALOG], caller=request.app[CALLER],
        http_request=info, origin_id=entry.api_auth_id or entry.id,
        trace_id=request.get(TRACE_KEY), wait_seconds=ctx.settings.server.api_auth_func_timeout)
