"""API credentials over HTTP (admin only): create, list and revoke bearer tokens and access
keys, each with a role.

``GET /api/v1/admin/tokens``, ``POST /api/v1/admin/tokens`` ``{"name", "role"}`` (answers
``{"id", "token"}``: the secret, shown this once), ``POST /api/v1/admin/tokens/{id}/revoke``,
and the same under ``/api/v1/admin/access-keys`` (creation answers ``{"id", "secret"}``).
Lists never hold a secret or a hash. Revoking drops this process's cached answer at once;
other Server processes forget theirs within ``adminauth.TOKEN_CACHE_SECONDS`` (access keys are
read from the store on every request).
"""

from __future__ import annotations

from dataclasses import asdict
from functools import partial

from aiohttp import web

from fluxfunc_common import credentials
from fluxfunc_common.store import CredentialKind
from fluxfunc_server import routing, schemas
from fluxfunc_server.access import ADMIN
from fluxfunc_server.appkeys import CTX
from fluxfunc_server.auditing import ENTITY_ID
from fluxfunc_server.handlers.reading import json_object
from fluxfunc_server.responses import ok
from fluxfunc_server.schemas_accounts import CredentialCreate


async def list_credentials(request: web.Request, kind: CredentialKind) -> web.Response:
    """``GET /api/v1/admin/{tokens|access-keys}``: id, name, created, revoked, role; oldest
    first."""
    found = await credentials.list_credentials(request.app[CTX].store, kind)
    return ok(request, [asdict(c) for c in found])


async def create(request: web.Request, kind: CredentialKind) -> web.Response:
    """``POST /api/v1/admin/{tokens|access-keys}`` ``{"name", "role"}``: the new secret, once."""
    ctx = request.app[CTX]
    body = schemas.parse(CredentialCreate, await json_object(request))
    if kind is CredentialKind.TOKEN:
        token_id, token = await credentials.issue_token(ctx.store, body.name, body.role.value)
        request[ENTITY_ID] = token_id
        return ok(request, {"id": token_id, "token": token, "role": body.role.value})
    ak_id, secret = await credentials.issue_access_key(ctx.store, ctx.cipher, body.name,
                                                       body.role.value)
    request[ENTITY_ID] = ak_id
    return ok(request, {"id": ak_id, "secret": secret, "role": body.role.value})


async def revoke(request: web.Request, kind: CredentialKind) -> web.Response:
    """``POST /api/v1/admin/{tokens|access-keys}/{id}/revoke`` (404 if there is none)."""
    ctx = request.app[CTX]
    credential_id = request.match_info["id"]
    await credentials.revoke(ctx.store, kind, credential_id)
    ctx.token_cache.clear()
    return ok(request, {"id": credential_id, "revoked": True})


def add_routes(app: web.Application) -> None:
    for kind in CredentialKind:
        routing.get(app, f"/api/v1/admin/{kind.value}", partial(list_credentials, kind=kind), ADMIN)
        routing.post(app, f"/api/v1/admin/{kind.value}", partial(create, kind=kind), ADMIN)
        routing.post(app, f"/api/v1/admin/{kind.value}/{{id}}/revoke", partial(revoke, kind=kind),
                     ADMIN)
