"""In-process read-through cache of the entities an invocation needs (funcs, sync/async APIs,
cron jobs), so the hot path does not hit SQL per call. Rows are parsed into their typed
models (:mod:`fluxfunc_common.models`) once, when they are read from the store.

Entries live ``ttl`` seconds (default 2 s; DataFlux Func used 5 s): a change made through the
management API on any Server replica is seen by every replica within that time. Concurrent
misses of one id share a single store read. Misses (not found) are not cached.
"""

from __future__ import annotations

import asyncio
import time
from typing import TypeVar, cast

from fluxfunc_common.errors import NotFound
from fluxfunc_common.models import AsyncApi, CronJob, Func, Row, SyncApi
from fluxfunc_common.store import Entity, EntityStore
from fluxfunc_server.apiauth_defs import ApiAuthDef

DEFAULT_TTL = 2.0
MAX_ENTRIES = 10_000

M = TypeVar("M", bound=Row)

# model → (table, what a 404 calls it)
ENTITIES: dict[type[Row], tuple[Entity, str]] = {
    Func: (Entity.FUNC, "func"),
    SyncApi: (Entity.SYNC_API, "sync API"),
    AsyncApi: (Entity.ASYNC_API, "async API"),
    CronJob: (Entity.CRON_JOB, "cron job"),
    ApiAuthDef: (Entity.API_AUTH, "API auth"),
}


class Catalog:
    """``await catalog.get(Func, "demo__basic.plus")`` → the :class:`Func` (or NotFound)."""

    def __init__(self, store: EntityStore, *, ttl: float = DEFAULT_TTL) -> None:
        self.store = store
        self.ttl = ttl
        self._items: dict[tuple[type[Row], str], tuple[float, Row]] = {}
        self._loading: dict[tuple[type[Row], str], asyncio.Future[Row | None]] = {}

    async def find(self, model: type[M], entity_id: str) -> M | None:
        """The entity, from memory when fresh, else from the store."""
        key = (model, entity_id)
        hit = self._items.get(key)
        now = time.monotonic()
        if hit is not None and hit[0] > now:
            return cast("M", hit[1])
        loading = self._loading.get(key)
        if loading is not None:
            return cast("M | None", await asyncio.shield(loading))
        fut: asyncio.Future[Row | None] = asyncio.get_running_loop().create_future()
        self._loading[key] = fut
        try:
            row = await self.store.find(ENTITIES[model][0], entity_id)
            found = None if row is None else model.from_row(row)
        except Exception as exc:
            fut.set_exception(exc)
            fut.exception()  # mark retrieved: nobody else may be waiting
            raise
        except BaseException:
            fut.cancel()
            raise
        finally:
            self._loading.pop(key, None)
        if found is not None and self.ttl > 0:
            if len(self._items) >= MAX_ENTRIES:
                self._items.clear()
            self._items[key] = (now + self.ttl, found)
        fut.set_result(found)
        return found

    async def get(self, model: type[M], entity_id: str) -> M:
        """The entity or 404 EClientNotFound (``No such sync API: …``)."""
        found = await self.find(model, entity_id)
        if found is None:
            raise NotFound(f"No such {ENTITIES[model][1]}: {entity_id}", {"id": entity_id})
        return found
