"""The SQL store: :func:`open_store` picks the backend from ``store.url``."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fluxfunc_common.settings import StoreSettings
from fluxfunc_common.store.base import (
    INDEXED,
    Credential,
    CredentialKind,
    Entity,
    Page,
    Store,
    TaskRecordQuery,
)

__all__ = ["INDEXED", "Credential", "CredentialKind", "Entity", "Page", "Store", "TaskRecordQuery",
           "connect", "open_store"]


async def connect(settings: StoreSettings) -> Store:
    """Open the backend named by ``settings.url`` (raises Unavailable naming where)."""
    if settings.url.startswith("sqlite://"):
        from fluxfunc_common.store.sqlite import SqliteStore

        return await SqliteStore.open(settings)
    from fluxfunc_common.store.mysql import MysqlStore

    return await MysqlStore.open(settings)


@asynccontextmanager
async def open_store(settings: StoreSettings, *, migrate: bool | None = None) -> AsyncIterator[Store]:
    """Open the store, migrate when ``store.auto_migrate`` (or ``migrate``) says so, close on exit."""
    store = await connect(settings)
    try:
        if settings.auto_migrate if migrate is None else migrate:
            await store.migrate()
        yield store
    finally:
        await store.close()
