"""The worker's extra Python packages: install the deployment's resolved set, switch to it.

At start (:meth:`PackageManager.prepare`, before the worker claims any task) and whenever
``keys.python_packages_version`` changes (polled every :data:`POLL_SECONDS`; the store is
re-read every :data:`RESYNC_SECONDS` anyway), the resolved set is read from the store
(:func:`fluxfunc_common.packages.load_resolved`). A set this machine has not installed is
installed by :class:`~fluxfunc_worker.pipinstall.Installer` while tasks keep running on the
current one; when it succeeded the pool switches (:class:`~fluxfunc_worker.pkgswitch.PackageSwitch`):
new tasks get the new folder, idle children are recycled, running tasks finish on the old set.
A failure keeps the current set and is published (``installing``/``ok``/``failed`` with the
error's last lines) under ``keys.python_packages_status`` and in the heartbeat; the same set
is tried again after :data:`RETRY_SECONDS`, then less and less often. See docs/packages.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, Protocol

import redis.asyncio as aioredis

from fluxfunc_common.keys import Keys
from fluxfunc_common.lifecycle import sleep_or_stop
from fluxfunc_common.logs import get_logger
from fluxfunc_common.packages import STATUS_TTL_SECONDS, ResolvedSet, WorkerPackages, load_resolved
from fluxfunc_common.settings import Settings
from fluxfunc_common.store import Store
from fluxfunc_worker.pipinstall import Installer, InstallFailed

log = get_logger("worker.packages")

POLL_SECONDS = 1.0
RESYNC_SECONDS = 30.0
RETRY_SECONDS = 60.0  # a failed set is tried again after this, doubling up to MAX_RETRY_SECONDS
MAX_RETRY_SECONDS = 900.0
STATUS_SECONDS = 10.0
LAST_GOOD = "last-good.json"


class Switchable(Protocol):
    """What the manager needs of the pool."""

    def switch_packages(self, folder: str | None) -> None: ...


class PackageManager:
    """One worker's package set (see the module docstring)."""

    def __init__(self, settings: Settings, redis: aioredis.Redis, keys: Keys, store: Store,
                 pool: Switchable, *, instance: str) -> None:
        self.redis = redis
        self.keys = keys
        self.store = store
        self.pool = pool
        self.instance = instance
        self.installer = Installer(settings.packages, settings.resources.path)
        self.folder: Path | None = None
        self.status = WorkerPackages(instance=instance, host=socket.gethostname(), state="installing",
                                     update_time=time.time())
        self._version: bytes | str | None = None
        self._failed: tuple[str, float, int] | None = None  # (list hash, retry at (monotonic), tries)
        self._synced = 0.0

    def describe(self) -> dict[str, Any]:
        """The state for the heartbeat (ops overview, ``fluxfunc streams``)."""
        return self.status.public()

    # --- the life ----------------------------------------------------------------------------
    async def prepare(self) -> None:
        """Install the current set before the first task (errors are reported, not raised:
        the worker then serves with the last set this machine installed, or none)."""
        try:
            self._version = await self.redis.get(self.keys.python_packages_version())
            await self.sync()
        except Exception as exc:
            log.error("cannot read the package list at start", error=str(exc) or repr(exc))
            await self._set(state="failed", error=f"cannot read the package list: {exc}")
        if self.folder is None and self.status.state == "failed":
            self._fall_back()

    async def watch(self, stop: asyncio.Event) -> None:
        """Follow changes until ``stop``; publish the state now and then."""
        published = time.monotonic()
        while not stop.is_set():
            if await sleep_or_stop(stop, POLL_SECONDS):
                break
            try:
                version = await self.redis.get(self.keys.python_packages_version())
                now = time.monotonic()
                if version != self._version or now - self._synced > RESYNC_SECONDS:
                    self._version = version
                    await self.sync()
                if time.monotonic() - published > STATUS_SECONDS:
                    published = time.monotonic()
                    await self._publish()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("package list check failed", error=str(exc) or repr(exc))
        with contextlib.suppress(Exception):
            await self.redis.delete(self.keys.python_packages_status(self.instance))

    # --- one check -----------------------------------------------------------------------------
    async def sync(self) -> None:
        """Read the resolved set; install and switch to it when it is new here."""
        self._synced = time.monotonic()
        resolved = await load_resolved(self.store)
        wanted = resolved.hash
        self.installer.touch(self.folder)
        if wanted == self.status.hash and self.status.state != "installing":
            if self.status.state == "failed" and self.status.wanted != wanted:
                await self._set(state="ok", wanted=wanted, error=None)  # back to the set in use
            return
        failed = self._failed
        if failed and failed[0] == wanted and time.monotonic() < failed[1]:
            return
        await self._install(resolved)
        with contextlib.suppress(OSError):
            self.installer.prune([self.folder] if self.folder else [])

    async def _install(self, resolved: ResolvedSet) -> None:
        wanted = resolved.hash
        await self._set(state="installing", wanted=wanted, error=None)
        started = time.monotonic()
        try:
            folder = await self._publishing(self.installer.install(resolved.lines)) \
                if resolved.lines else None
        except (InstallFailed, OSError) as exc:
            tries = self._failed[2] + 1 if self._failed and self._failed[0] == wanted else 1
            delay = min(RETRY_SECONDS * 2 ** (tries - 1), MAX_RETRY_SECONDS)
            self._failed = (wanted, time.monotonic() + delay, tries)
            log.error("package install failed; the previous set stays in use", wanted=wanted,
                      error=str(exc))
            await self._set(state="failed", error=str(exc))
            return
        self._failed = None
        self.folder = folder
        self.pool.switch_packages(str(folder) if folder else None)
        self._remember(wanted, folder)
        log.info("package set in use", hash=wanted or "(none)", lines=len(resolved.lines),
                 folder=str(folder) if folder else None, seconds=round(time.monotonic() - started, 2))
        await self._set(state="ok", hash=wanted, folder=folder.name if folder else None,
                        lines=len(resolved.lines), error=None)

    async def _publishing(self, install: Coroutine[Any, Any, Path]) -> Path:
        """Await ``install`` while refreshing the published state (a long install must not let
        it expire)."""
        task = asyncio.create_task(install)
        try:
            while True:
                done, _ = await asyncio.wait([task], timeout=STATUS_SECONDS)
                if done:
                    return task.result()
                with contextlib.suppress(Exception):
                    await self._publish()
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task

    # --- the last set installed on this machine --------------------------------------------------
    def _remember(self, wanted: str, folder: Path | None) -> None:
        with contextlib.suppress(OSError):
            root = self.installer.root
            root.mkdir(parents=True, exist_ok=True)
            tmp = root / f"{LAST_GOOD}.{self.instance}"
            tmp.write_text(json.dumps({"hash": wanted, "folder": folder.name if folder else None}))
            tmp.replace(root / LAST_GOOD)

    def _fall_back(self) -> None:
        """At start, after a failure: serve with the set this machine last switched to."""
        try:
            last = json.loads((self.installer.root / LAST_GOOD).read_text())
            folder = self.installer.root / str(last["folder"]) if last.get("folder") else None
        except (OSError, ValueError, KeyError, TypeError):
            return
        if folder is None or not folder.is_dir():
            return
        self.folder = folder
        self.pool.switch_packages(str(folder))
        self.status = self.status.model_copy(update={"hash": str(last.get("hash") or ""),
                                                     "folder": folder.name})
        log.warning("serving with the package set last installed on this machine",
                    hash=self.status.hash)

    # --- the published state ---------------------------------------------------------------------
    async def _set(self, **changes: Any) -> None:
        self.status = self.status.model_copy(update={**changes, "update_time": time.time()})
        with contextlib.suppress(Exception):
            await self._publish()

    async def _publish(self) -> None:
        await self.redis.set(self.keys.python_packages_status(self.instance),
                             self.status.model_dump_json(), ex=STATUS_TTL_SECONDS)
