"""A bundle from the store: ``fluxfunc export`` and ``POST /api/v1/export``."""

from __future__ import annotations

from collections.abc import Sequence

from fluxfunc_common.crypto import Cipher
from fluxfunc_common.store import Entity, EntityStore
from fluxfunc_common.transfer import connectors
from fluxfunc_common.transfer.bundle import (
    CONNECTOR,
    KINDS,
    Bundle,
    Kind,
    Row,
    TransferStore,
    exported_form,
    secret_key,
)
from fluxfunc_common.transfer.sealing import secret_of

PAGE = 500
_ENTRY_POINTS = (Entity.SYNC_API, Entity.ASYNC_API, Entity.CRON_JOB)


async def all_rows(store: EntityStore, kind: Entity) -> list[dict[str, object]]:
    """Every stored entity of ``kind``, ordered by id."""
    out: list[dict[str, object]] = []
    cursor: str | None = None
    while True:
        page = await store.list(kind, limit=PAGE, cursor=cursor)
        out.extend(page.items)
        cursor = page.next_cursor
        if not cursor:
            return out


async def _stored(store: TransferStore, kind: Kind) -> list[dict[str, object]]:
    if kind is CONNECTOR:
        return [c.as_json() for c in await store.list_connectors()]
    assert isinstance(kind, Entity)
    return await all_rows(store, kind)


def _selected(kind: Kind, row: Row, sets: frozenset[str] | None) -> bool:
    """Whether ``row`` belongs to the chosen script sets (everything without a choice; env
    variables, API auth definitions and connectors always)."""
    if sets is None or kind in (Entity.ENV_VARIABLE, Entity.API_AUTH, CONNECTOR):
        return True
    if kind is Entity.SCRIPT_SET:
        return str(row["id"]) in sets
    if kind is Entity.SCRIPT:
        return str(row.get("scriptSetId")) in sets
    return str(row.get("funcId", "")).split("__", 1)[0] in sets


async def export_bundle(store: TransferStore, cipher: Cipher, *,
                        script_sets: Sequence[str] = (), with_secrets: bool = False) -> Bundle:
    """The bundle of this deployment (or of ``script_sets`` and their entry points), with the
    secrets opened when ``with_secrets``."""
    chosen = frozenset(script_sets) if script_sets else None
    for set_id in sorted(chosen or ()):
        await store.get(Entity.SCRIPT_SET, set_id)  # NotFound names the unknown one
    bundle = Bundle()
    for kind in KINDS:
        for stored in await _stored(store, kind):
            if not _selected(kind, stored, chosen):
                continue
            bundle.add(kind, connectors.exported_row(stored) if kind is CONNECTOR
                       else exported_form(stored))
            secret = secret_of(kind, stored, cipher) if with_secrets else None
            if secret is not None:
                bundle.secrets[secret_key(kind, str(stored["id"]))] = secret
    return bundle

