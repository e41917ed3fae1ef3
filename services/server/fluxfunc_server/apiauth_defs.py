"""Reusable API auth definitions (``/api/v1/api-auths``, DataFlux Func's ``biz_main_api_auth``)
and how a sync/async API uses one: ``apiAuthId`` beside (never with) an inline ``apiAuth``.

A definition is ``{id, title, type, config, note}``; its effective ``apiAuth`` is
``{"type": type, **config}``, checked by :mod:`apiauth` like an inline one. Definitions are
read through the Server's catalogue (:mod:`catalog`), so a change is seen by every replica
within the catalogue's TTL, as for the entries themselves. An entry whose definition is gone
fails closed (401).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from fluxfunc_common.errors import BadRequest, Conflict
from fluxfunc_common.models import ApiEntry, Row
from fluxfunc_common.store import Entity, EntityStore
from fluxfunc_common.userjson import JSONObject
from fluxfunc_server.apiauth import APIAuthFailed

if TYPE_CHECKING:
    from fluxfunc_server.catalog import Catalog

TYPES = ("fixedField", "httpBasic", "httpDigest", "func")


class ApiAuthDef(Row):
    """One stored definition (secrets sealed: ``valueCipher``, ``passwordCipher``)."""

    id: str
    title: str | None = None
    type: str = "none"
    config: JSONObject = {}
    note: str | None = None

    def as_api_auth(self) -> JSONObject:
        """The ``apiAuth`` object :func:`apiauth.check` understands."""
        return {**(self.config or {}), "type": self.type}


async def effective(catalog: Catalog, entry: ApiEntry) -> Mapping[str, Any] | None:
    """The API auth a call to ``entry`` must pass: its referenced definition, else its inline
    ``apiAuth``."""
    if not entry.api_auth_id:
        return entry.api_auth
    found = await catalog.find(ApiAuthDef, entry.api_auth_id)
    if found is None:
        raise APIAuthFailed("API auth failed: the entry's API auth definition is gone")
    return found.as_api_auth()


async def check_reference(store: EntityStore, data: dict[str, object]) -> None:
    """At save of a sync/async API: ``apiAuthId`` names an existing definition and is not
    combined with an inline ``apiAuth`` (400)."""
    auth_id = data.get("apiAuthId")
    if not auth_id:
        data.pop("apiAuthId", None)
        return
    inline = data.get("apiAuth")
    if isinstance(inline, dict) and inline.get("type") not in (None, "none"):
        raise BadRequest("Give either apiAuth or apiAuthId, not both", {"apiAuthId": auth_id})
    if await store.find(Entity.API_AUTH, str(auth_id)) is None:
        raise BadRequest(f"No such API auth: {auth_id}", {"apiAuthId": auth_id})


async def referrers(store: EntityStore, auth_id: str) -> list[str]:
    """Ids of the sync/async APIs that reference ``auth_id``."""
    found: list[str] = []
    for entity in (Entity.SYNC_API, Entity.ASYNC_API):
        cursor: str | None = None
        while True:
            page = await store.list(entity, limit=1000, cursor=cursor)
            found += [str(row["id"]) for row in page.items if row.get("apiAuthId") == auth_id]
            cursor = page.next_cursor
            if cursor is None:
                break
    return found


async def refuse_referenced(store: EntityStore, auth_id: str) -> None:
    """409 naming the entries that still use ``auth_id``."""
    users = await referrers(store, auth_id)
    if users:
        raise Conflict(f"API auth {auth_id} is used by: {', '.join(users)}",
                       {"id": auth_id, "referrers": users})
