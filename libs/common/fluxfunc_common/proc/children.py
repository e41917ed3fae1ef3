"""Child service processes of a supervisor (``fluxfunc up``): start, watch, stop in order.

Each child gets its own session, so a Ctrl-C in the terminal reaches only the supervisor,
which then sends exactly one SIGTERM (a second SIGTERM would mean "force" to a service,
see :mod:`fluxfunc_common.lifecycle`). On Linux each child also asks the kernel for a
SIGTERM when its parent dies, so even a SIGKILLed supervisor leaves no orphans behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import signal
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """``preexec_fn``: SIGTERM this process when the parent exits (Linux; a no-op elsewhere)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class Child:
    """One named child process."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str] | None = None
    proc: asyncio.subprocess.Process | None = field(default=None, repr=False)

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv, env=dict(self.env) if self.env is not None else None,
            stdin=asyncio.subprocess.DEVNULL, start_new_session=True, preexec_fn=die_with_parent)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode if self.proc else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    def signal(self, sig: int) -> None:
        if self.running:
            assert self.proc is not None
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)

    async def wait(self) -> int:
        assert self.proc is not None
        return await self.proc.wait()


async def first_exit(children: Sequence[Child]) -> Child:
    """Wait until any child exits; that child."""
    waits = {asyncio.ensure_future(c.wait()): c for c in children}
    try:
        done, _ = await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        return waits[next(iter(done))]
    finally:
        for fut in waits:
            fut.cancel()


async def stop_all(children: Sequence[Child], *, grace: float, force: asyncio.Event | None = None,
                   kill_after: float = 5.0) -> None:
    """SIGTERM every child; a second SIGTERM when ``force`` is set; SIGKILL after ``grace`` (+
    ``kill_after`` for the forced stop) for any still running. Returns when all have exited."""
    alive = [c for c in children if c.running]
    for c in alive:
        c.signal(signal.SIGTERM)
    waiting: asyncio.Future[Any] = asyncio.gather(*(c.wait() for c in alive))
    forced: asyncio.Future[Any] | None = asyncio.ensure_future(force.wait()) if force else None
    try:
        watched: set[asyncio.Future[Any]] = {waiting, *([forced] if forced else [])}
        await asyncio.wait(watched, timeout=grace, return_when=asyncio.FIRST_COMPLETED)
        if not waiting.done():
            for c in alive:
                c.signal(signal.SIGTERM)  # the second signal: services stop at once
            await asyncio.wait({waiting}, timeout=kill_after)
        if not waiting.done():
            for c in alive:
                c.signal(signal.SIGKILL)
            await waiting
    finally:
        if forced:
            forced.cancel()
