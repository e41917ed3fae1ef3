"""What is published, as this worker sees it: script code and func catalogue rows, cached and
dropped per script when ``scripts_version`` moves.

The Server bumps ``keys.scripts_version()`` after every publish or delete and logs which
script that step changed (:mod:`fluxfunc_common.scriptchanges`), then announces it on the
``events`` channel. This worker polls the counter every :data:`POLL_SECONDS` (and re-reads it
at once on a ``scriptPublished``/``scriptDeleted`` event). A new value drops the cached code
and funcs of the changed scripts only — or everything, when the change log does not cover
every step since the last value seen (a missed step is never guessed). The value is the
*generation* handed to every child with each task together with the scripts changed since
the generation that child last got (:meth:`PublishedScripts.stamp`), so a child drops just
those modules and their importers. New code is live within the poll period plus one task
(≤ 2 s).

A fetch that started under an older generation is not cached, so code read just before a
publish can never outlive it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import NamedTuple, Protocol

import redis.asyncio as aioredis

from fluxfunc_common import scriptchanges
from fluxfunc_common.keys import Keys
from fluxfunc_common.logs import get_logger
from fluxfunc_common.models import Func
from fluxfunc_common.store import Entity, EntityStore, PublishStore
from fluxfunc_worker.messages import ScriptChanges

log = get_logger("worker.published")

POLL_SECONDS = 0.5
HISTORY = 256  # generation steps remembered for children that are behind (older: drop all)


class Step(NamedTuple):
    """One move of the generation: ``since`` → ``gen`` changed ``scripts`` (None: all)."""

    since: int
    gen: int
    scripts: frozenset[str] | None


class CodeStore(PublishStore, EntityStore, Protocol):
    """What the cache reads: published code (by script) and func rows."""


class PublishedScripts:
    """Cached published code and funcs, invalidated per publish generation."""

    def __init__(self, store: CodeStore, redis: aioredis.Redis, keys: Keys) -> None:
        self.store = store
        self.redis = redis
        self.keys = keys
        self.gen = 0
        self._code: dict[str, tuple[str, int] | None] = {}
        self._funcs: dict[str, Func | None] = {}
        self._lookups: dict[str, asyncio.Future[Func | None]] = {}  # func reads under way
        self._changed = asyncio.Event()
        self._steps: deque[Step] = deque(maxlen=HISTORY)
        self._sent: dict[int, int] = {}  # child pid → the generation its last task carried

    async def refresh(self) -> bool:
        """Read ``scripts_version``; True (caches dropped) when it changed."""
        raw = await self.redis.get(self.keys.scripts_version())
        gen = int(raw or 0)
        if gen == self.gen:
            return False
        scripts = None
        if 0 < self.gen < gen:  # (at start nothing is cached: no log to read)
            scripts = await scriptchanges.between(self.redis, self.keys, self.gen, gen)
        self.moved(gen, scripts)
        return True

    def moved(self, gen: int, scripts: frozenset[str] | None) -> None:
        """The generation is now ``gen``; ``scripts`` changed (None: assume all did)."""
        self._steps.append(Step(self.gen, gen, scripts))
        self.gen = gen
        if scripts is None:
            self._code.clear()
            self._funcs.clear()
        else:
            for script_id in scripts:
                self._code.pop(script_id, None)
            prefixes = tuple(f"{script_id}." for script_id in scripts)
            for func_id in [f for f in self._funcs if f.startswith(prefixes)]:
                del self._funcs[func_id]
        oldest = self._steps[0].since
        self._sent = {pid: sent for pid, sent in self._sent.items() if sent >= oldest}
        log.debug("scripts published; caches dropped", gen=gen,
                  scripts=None if scripts is None else sorted(scripts))

    def stamp(self, pid: int) -> tuple[int, ScriptChanges | None]:
        """The generation for a task sent to child ``pid`` now and the scripts changed since
        the one it last got (None when that is unknown or not covered: drop all)."""
        since = self._sent.get(pid)
        self._sent[pid] = self.gen
        if since is None:
            return self.gen, None
        scripts = self._changed_since(since)
        return self.gen, None if scripts is None else {"since": since, "scripts": sorted(scripts)}

    def _changed_since(self, since: int) -> set[str] | None:
        """The scripts the remembered steps changed from ``since`` to now; None on a gap."""
        changed: set[str] = set()
        at = since
        for step in self._steps:
            if step.gen <= since:
                continue
            if step.scripts is None or step.since != at:
                return None
            changed |= step.scripts
            at = step.gen
        return changed if at == self.gen else None

    def poke(self) -> None:
        """A ``scriptPublished``/``scriptDeleted`` event: refresh now, not at the next poll."""
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

    def known_async(self, func_id: str) -> bool | None:
        """Whether ``func_id`` is an ``async def``, as far as the cache knows (None: not
        cached; the worker then asks :meth:`is_async`)."""
        if func_id not in self._funcs:
            return None
        found = self._funcs[func_id]
        return found is not None and found.is_async

    async def is_async(self, func_id: str) -> bool:
        """Whether ``func_id`` is an ``async def`` (publish records it: ``isAsync``)."""
        pending = self._lookups.get(func_id)
        if pending is None:  # one store read however many of its tasks arrive meanwhile
            pending = self._lookups[func_id] = asyncio.ensure_future(self.func(func_id))
            pending.add_done_callback(lambda _: self._lookups.pop(func_id, None))
        found = await asyncio.shield(pending)
        return found is not None and found.is_async

    async def func(self, func_id: str) -> Func | None:
        """The func of the catalogue, or None when no published script exports it."""
        if func_id in self._funcs:
            return self._funcs[func_id]
        gen = self.gen
        row = await self.store.find(Entity.FUNC, func_id)
        found = None if row is None else Func.from_row(row)
        if gen == self.gen:
            self._funcs[func_id] = found
        return found
