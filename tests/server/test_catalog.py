"""The Server's entity cache: typed models parsed once per read, concurrent misses sharing one
store read, misses not cached, and the 404 naming what was asked for."""

from __future__ import annotations

import asyncio
from typing import cast

import pytest

from fluxfunc_common.errors import NotFound
from fluxfunc_common.models import Func, SyncApi
from fluxfunc_common.store import Entity, EntityStore
from fluxfunc_server.catalog import Catalog


class FakeStore:
    """``find`` only, counting the reads; a read waits until ``release`` is set."""

    def __init__(self, rows: dict[tuple[Entity, str], dict[str, object]]) -> None:
        self.rows = rows
        self.reads = 0
        self.release = asyncio.Event()
        self.release.set()

    async def find(self, entity: Entity, entity_id: str) -> dict[str, object] | None:
        self.reads += 1
        await self.release.wait()
        return self.rows.get((entity, entity_id))


ROWS: dict[tuple[Entity, str], dict[str, object]] = {
    (Entity.FUNC, "a__b.f"): {"id": "a__b.f", "kwargsSpec": {"x": {"required": True}},
                              "extraConfig": {"queue": "slow"}},
    (Entity.SYNC_API, "sapi-1"): {"id": "sapi-1", "funcId": "a__b.f", "kwargs": {"x": 1}},
}


async def test_rows_become_models_and_stay_cached() -> None:
    store = FakeStore(ROWS)
    catalog = Catalog(cast(EntityStore, store), ttl=60)
    func = await catalog.get(Func, "a__b.f")
    assert isinstance(func, Func) and func.options.queue == "slow"
    entry = await catalog.get(SyncApi, "sapi-1")
    assert entry.func_id == "a__b.f" and entry.kwargs == {"x": 1}
    assert await catalog.get(Func, "a__b.f") is func
    assert store.reads == 2


async def test_concurrent_misses_share_one_read() -> None:
    store = FakeStore(ROWS)
    store.release.clear()
    catalog = Catalog(cast(EntityStore, store), ttl=60)
    waiting = [asyncio.create_task(catalog.find(Func, "a__b.f")) for _ in range(5)]
    await asyncio.sleep(0)  # every task is now waiting on the one read
    store.release.set()
    found = await asyncio.gather(*waiting)
    assert store.reads == 1 and all(f is found[0] for f in found)


async def test_a_miss_is_a_404_and_is_not_cached() -> None:
    store = FakeStore(ROWS)
    catalog = Catalog(cast(EntityStore, store), ttl=60)
    with pytest.raises(NotFound, match="No such sync API: nope"):
        await catalog.get(SyncApi, "nope")
    assert await catalog.find(SyncApi, "nope") is None
    assert store.reads == 2
