"""The SQL store: :func:`open_store` picks the backend from ``store.url``.

Consumers annotate the narrow interface they use (``EntityStore``, ``PublishStore``,
``TaskRecordStore``, ``KvStore``, ``CronFireStore``, ``CredentialStore``, ``SchemaStore``);
``Store`` is all of them at once (see ``base.py``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fluxfunc_common.settings import StoreSettings
from fluxfunc_common.store.base import (
    INDEXED,
    AccountStore,
    AuditEntry,
    AuditQuery,
    ConnectorStore,
    Credential,
    CredentialKind,
    CredentialStore,
    CronFireStore,
    Entity,
    EntityStore,
    KvStore,
    Page,
    PublishStore,
    SchemaStore,
    Store,
    TaskRecord,
    TaskRecordQuery,
    TaskRecordStore,
    User,
    task_record,
)
from fluxfunc_common.store.sqlstore import SqlStore, open_database

__all__ = [
    "INDEXED",
    "AccountStore",
    "AuditEntry",
    "AuditQuery",
    "ConnectorStore",
    "Credential",
    "CredentialKind",
    "CredentialStore",
    "CronFireStore",
    "Entity",
    "EntityStore",
    "KvStore",
    "Page",
    "PublishStore",
    "SchemaStore",
    "SqlStore",
    "Store",
    "TaskRecord",
    "TaskRecordQuery",
    "TaskRecordStore",
    "User",
    "connect",
    "open_store",
    "task_record",
]


async def connect(settings: StoreSettings) -> SqlStore:
    """Open the backend named by ``settings.url`` (raises Unavailable naming where)."""
    return SqlStore(await open_database(settings))


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
