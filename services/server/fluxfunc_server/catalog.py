"""In-process read-through cache of the entities an invocation needs (funcs, sync/async APIs,
cron jobs), so the hot path does not hit SQL per call.

Entries live ``ttl`` seconds (default 2 s; DataFlux Func used 5 s): a change made through the
management API on any Server replica is seen by every replica within that time. Concurrent
misses of one id share a single store read. Misses (not found) are not cached.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from fluxfunc_common.errors import NotFound
from fluxfunc_common.store import Entity, Store

DEFAULT_TTL = 2.0
MAX_ENTRIES = 10_000


class Catalog:
    """``await catalog.get(Entity.FUNC, "demo__basic.plus")`` → the entity dict (or NotFound)."""

    def __init__(self, store: Store, *, ttl: float = DEFAULT_TTL) -> None:
        self.store = store
        self.ttl = ttl
        self._items: dict[tuple[Entity, str], tuple[float, dict[str, Any]]] = {}
        self._loading: dict[tuple[Entity, str], asyncio.Future[dict[str, Any] | None]] = {}

    async def find(self, entity: Entity, entity_id: str) -> dict[str, Any] | None:
        """The entity, from memory when fresh, else from the store."""
        key = (entity, entity_id)
        hit = self._items.get(key)
        now = time.monotonic()
        if hit is not None and hit[0] > now:
            return hit[1]
        loading = self._loading.get(key)
        if loading is not None:
            return await asyncio.shield(loading)
        fut: asyncio.Future[dict[str, Any] | None] = asyncio.get_running_loop().create_future()
        self._loading[key] = fut
        try:
            found = await self.store.find(entity, entity_id)
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

    async def get(self, entity: Entity, entity_id: str, what: str) -> dict[str, Any]:
        """The entity or 404 EClientNotFound naming ``what``."""
        found = await self.find(entity, entity_id)
        if found is None:
            raise NotFound(f"No such {what}: {entity_id}", {"id": entity_id})
        return found

    def invalidate(self, entity: Entity | None = None, entity_id: str | None = None) -> None:
        """Drop one entity, one kind, or everything."""
        if entity is None:
            self._items.clear()
        elif entity_id is None:
            for key in [k for k in self._items if k[0] is entity]:
                del self._items[key]
        else:
            self._items.pop((entity, entity_id), None)
