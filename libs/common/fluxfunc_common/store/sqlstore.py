"""The whole store: every part over one :class:`~fluxfunc_common.store.sql.Database`.

Each part (``entities.py``, ``publish.py``, ``records.py``, ``kv.py``, ``cronfires.py``,
``credentials.py``, ``schema.py``) implements one narrow interface of ``base.py`` and can be
built alone over a database; :class:`SqlStore` is all of them on the same connection (or pool),
which is what :func:`~fluxfunc_common.store.open_store` hands out.
"""

from __future__ import annotations

from fluxfunc_common.settings import StoreSettings
from fluxfunc_common.store.accounts import SqlAccounts
from fluxfunc_common.store.connectors import SqlConnectors
from fluxfunc_common.store.credentials import SqlCredentials
from fluxfunc_common.store.cronfires import SqlCronFires
from fluxfunc_common.store.entities import SqlEntities
from fluxfunc_common.store.kv import SqlKv
from fluxfunc_common.store.publish import SqlPublish
from fluxfunc_common.store.records import SqlRecords
from fluxfunc_common.store.schema import SqlSchema
from fluxfunc_common.store.sql import Database


class SqlStore(SqlSchema, SqlEntities, SqlPublish, SqlCronFires, SqlKv, SqlRecords, SqlCredentials,
               SqlConnectors, SqlAccounts):
    """:class:`~fluxfunc_common.store.base.Store` (every interface) on one database."""


async def open_database(settings: StoreSettings) -> Database:
    """Open the backend named by ``settings.url`` (raises Unavailable naming where)."""
    if settings.url.startswith("sqlite://"):
        from fluxfunc_common.store.sqlite import SqliteDatabase

        return await SqliteDatabase.open(settings)
    from fluxfunc_common.store.mysql import MysqlDatabase

    return await MysqlDatabase.open(settings)
