"""What is published, as this worker sees it: script code and func catalogue rows, cached and
dropped when ``scripts_version`` changes.

The Server bumps ``keys.scripts_version()`` after every publish (and announces it on the
``events`` channel). This worker polls the counter every :data:`POLL_SECONDS` (and re-reads it
at once on a ``scriptPublished`` event); a new value clears the caches and becomes the
*generation* handed to every child with each task, so children rebuild their modules from
fresh code. New code is live within the poll period plus one task (≤ 2 s).

A fetch that started under an older generation is not cached, so code read just before a
publish can never outlive it.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import redis.asyncio as aioredis

from fluxfunc_common.keys import Keys
from fluxfunc_common.logs import get_logger
from fluxfunc_common.store import Entity, Store

log = get_logger("worker.published")

POLL_SECONDS = 0.5


class PublishedScripts:
    """Cached published code and funcs, invalidated per publish generation."""

    def __init__(self, store: Store, redis: aioredis.Redis, keys: Keys) -> None:
        self.store = store
        self.redis = redis
        self.keys = keys
        self.gen = 0
        self._code: dict[str, tuple[str, int] | None] = {}
        self._funcs: dict[str, dict[str, Any] | None] = {}
        self._changed = asyncio.Event()

    async def refresh(self) -> bool:
        """Read ``scripts_version``; True (caches dropped) when it changed."""
        raw = await self.redis.get(self.keys.scripts_version())
        gen = int(raw or 0)
        if gen == self.gen:
            return False
        self.gen = gen
        self._code.clear()
        self._funcs.clear()
        log.debug("scripts published; caches dropped", gen=gen)
        return True

    def poke(self) -> None:
        """A ``scriptPublished`` event: refresh now instead of at the next poll."""
        self._changed.set()

    async def watch(self, stop: asyncio.Event) -> None:
        """Poll the counter until ``stop`` (errors are logged and retried)."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), POLL_SECONDS)
            self._changed.clear()
            try:
                await self.refresh()
            except Exception as exc:
                log.warning("cannot read scripts_version", error=str(exc))

    async def code(self, script_id: str) -> tuple[str, int] | None:
        """(published code, publish version) of a script, or None."""
        if script_id in self._code:
            return self._code[script_id]
        gen = self.gen
        found = await self.store.published_code(script_id)
        if gen == self.gen:
            self._code[script_id] = found
        return found

    async def func(self, func_id: str) -> dict[str, Any] | None:
        """The func catalogue row, or None when no published script exports it."""
        if func_id in self._funcs:
            return self._funcs[func_id]
        gen = self.gen
        found = await self.store.find(Entity.FUNC, func_id)
        if gen == self.gen:
            self._funcs[func_id] = found
        return found
