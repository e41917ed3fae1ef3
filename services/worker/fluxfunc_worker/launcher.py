"""How the pool's child processes come to be: forked by the :mod:`zygote`, or spawned as fresh
interpreters (``python -m fluxfunc_worker.child``) when the zygote is not available.

Either way the result is a real child of the worker with the same surface
(:class:`ChildProcess`), serving one end of a socketpair. A zygote that died is started again
on the next request; after :data:`ZYGOTE_FAILURES` failures within :data:`ZYGOTE_WINDOW`
seconds (it keeps dying, the kernel refuses ``clone``, its children die at start) the
launcher gives it up and spawns from then on.

The seam: both ways are a :class:`ChildStarter` (``launch`` a child serving a socket,
``close``). :class:`Spawner` is the plain variant; the :class:`~fluxfunc_worker.zygote.Zygote`
is the fast one, used unless ``worker.fast_paths`` is off or ``FLUXFUNC_PLAIN_VARIANTS=1``
(docs/internals.md, "Fast paths and their plain variants").
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from typing import Protocol, TypedDict

from fluxfunc_common.fastpaths import use_fast
from fluxfunc_common.logs import get_logger
from fluxfunc_worker import zygote

log = get_logger("worker.pool")

ZYGOTE_FAILURES = 3
ZYGOTE_WINDOW = 60.0


class ChildProcess(Protocol):
    """What the pool needs of a child process (asyncio's Process, or a zygote's fork)."""

    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | None: ...

    def send_signal(self, sig: int) -> None: ...

    def kill(self) -> None: ...

    async def wait(self) -> int: ...


class LauncherInfo(TypedDict):
    """How children came to be, for the worker's heartbeat."""

    forked: int
    spawned: int
    zygote: zygote.ZygoteInfo | None


class ChildStarter(Protocol):
    """Starts worker children, each serving one end of a socketpair."""

    async def launch(self, theirs: socket.socket) -> ChildProcess: ...

    async def close(self) -> None: ...


class Spawner:
    """The plain variant: every child a fresh interpreter, ``python -m fluxfunc_worker.child``
    (interpreter start and imports: about 120 ms of CPU each, against a few milliseconds for a
    fork of the zygote)."""

    def __init__(self, memory_mb: int) -> None:
        self.memory_mb = memory_mb

    async def launch(self, theirs: socket.socket) -> ChildProcess:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "fluxfunc_worker.child",
            str(theirs.fileno()), str(self.memory_mb), str(os.getpid()),
            pass_fds=[theirs.fileno()], stdin=asyncio.subprocess.DEVNULL, env=child_environ(),
        )

    async def close(self) -> None:
        """Spawned children are the pool's to stop: nothing to close here."""


class Launcher:
    """Starts child processes for a pool whose children have ``memory_mb`` each."""

    def __init__(self, memory_mb: int, *, use_zygote: bool = True) -> None:
        self.memory_mb = memory_mb
        self._use_zygote = use_fast(use_zygote) and zygote.supported()
        self._plain: ChildStarter = Spawner(memory_mb)
        self._zygote: zygote.Zygote | None = None
        self._failures: list[float] = []
        self.forked = 0
        self.spawned = 0

    @property
    def forking(self) -> bool:
        """New children are forked by the zygote (else spawned)."""
        return self._zygote is not None

    @property
    def zygote_pid(self) -> int | None:
        return self._zygote.pid if self._zygote is not None and self._zygote.alive else None

    async def start(self) -> None:
        """Start the zygote (a warning, and spawning, when it cannot start)."""
        if not self._use_zygote:
            return
        self._zygote = zygote.Zygote(self.memory_mb, child_environ())
        try:
            await self._zygote.start()
        except (OSError, RuntimeError, TimeoutError) as exc:
            log.warning("cannot start the zygote; children are spawned as fresh interpreters",
                        error=str(exc) or repr(exc))
            self._zygote = None

    async def launch(self, theirs: socket.socket, *, fork: bool) -> ChildProcess:
        """A new child process serving ``theirs``: forked (a new zygote first if the last one
        is gone) or spawned."""
        if fork and self._zygote is not None:
            if not self._zygote.alive:
                log.warning("the zygote is gone; starting a new one", code=self._zygote.returncode)
            forked = await self._zygote.launch(theirs)
            self.forked += 1
            return forked
        proc = await self._plain.launch(theirs)
        self.spawned += 1
        return proc

    def failed(self, exc: BaseException) -> None:
        """A fork, or a forked child's start, failed: count it; too many and spawn from now on."""
        now = asyncio.get_running_loop().time()
        self._failures = [t for t in self._failures if now - t < ZYGOTE_WINDOW] + [now]
        if len(self._failures) < ZYGOTE_FAILURES:
            log.warning("the zygote failed; spawning this child", error=str(exc) or repr(exc))
            return
        log.error("the zygote keeps failing; children are spawned as fresh interpreters from now on",
                  error=str(exc) or repr(exc))
        z, self._zygote = self._zygote, None
        if z is not None:
            task = asyncio.create_task(z.close())
            task.add_done_callback(lambda t: t.exception())  # closing is best effort

    async def close(self) -> None:
        if self._zygote is not None:
            await self._zygote.close()

    def describe(self) -> LauncherInfo:
        z = self._zygote
        return {"forked": self.forked, "spawned": self.spawned, "zygote": z.describe() if z else None}


def child_environ() -> dict[str, str]:
    """The worker's environment minus fluxfunc's own settings (the deployment secret)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLUXFUNC_")}
    env.setdefault("MALLOC_ARENA_MAX", "2")  # keep thread arenas from eating the RLIMIT_AS budget
    return env
