"""Admin credentials over HTTP: list and revoke admin tokens and access keys.

``GET /api/v1/admin/tokens``, ``POST /api/v1/admin/tokens/{id}/revoke``, and the same under
``/api/v1/admin/access-keys``. The answers never hold a secret or a hash. Revoking drops this
process's cached answer at once; other Server processes forget theirs within
``adminauth.TOKEN_CACHE_SECONDS`` (access keys are read from the store on every request).
Creating a credential stays a CLI action (``fluxfunc admin create-token``): its secret is
shown once, on the operator's terminal.
"""

from __future__ import annotations

from dataclasses import asdict
from functools import partial

from aiohttp import web

from fluxfunc_common import credentials
from fluxfunc_common.store import CredentialKind
from fluxfunc_server import routing
from fluxfunc_server.access import ADMIN
from fluxfunc_server.appkeys import CTX
from fluxfunc_server.responses import ok


async def list_credentials(request: web.Request, kind: CredentialKind) -> web.Response:
    """``GET /api/v1/admin/{tokens|access-keys}``: id, name, created, revoked; oldest first."""
    found = await credentials.list_credentials(request.app[CTX].store, kind)
    return ok(request, [asdict(c) for c in found])


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
        routing.post(app, f"/api/v1/admin/{kind.value}/{{id}}/revoke", partial(revoke, kind=kind),
                     ADMIN)
