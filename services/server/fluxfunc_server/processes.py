"""``fluxfunc-server --processes N``: N server processes sharing one port (docs/operations.md,
"Scaling").

The supervisor (the process the operator started) runs no app of its own. It starts N copies
of the same command with ``--processes 1 --ready-fd FD``; each child listens with
``SO_REUSEPORT`` and the kernel spreads new connections over them. Each child is a whole
Server: its own instance id, reply stream, heartbeat and ``/metrics``.

- Start: every child must report "listening" on its ready pipe. One that exits first (bad
  config, Redis down, port taken) stops the others and the supervisor exits with that child's
  code (2 = config, 3 = a dependency is unavailable).
- Running: a child that exits is started again after a backoff (0.5 s doubling to 30 s, back
  to 0.5 s once a child has run for 30 s).
- Stop: the first SIGTERM/SIGINT is forwarded once to every child (each drains within
  ``server.shutdown_seconds``), a second one is forwarded as "stop now"; exit 0.

Children run in their own session (a Ctrl-C reaches only the supervisor) and get a SIGTERM
from the kernel should the supervisor die.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from fluxfunc_common.lifecycle import Shutdown, sleep_or_stop
from fluxfunc_common.logs import get_logger
from fluxfunc_common.proc.children import Child, die_with_parent, stop_all
from fluxfunc_common.settings import Settings

log = get_logger("server.supervisor")

BACKOFF_FIRST = 0.5
BACKOFF_MAX = 30.0
STABLE_SECONDS = 30.0
READY = b"1"


def process_count(requested: int | None, settings: Settings) -> int:
    """``--processes``, else ``server.processes``, else one per usable core. Port 0 ("any free
    port") means one process: each would get a port of its own."""
    if settings.server.port == 0:
        return 1
    count = requested or settings.server.processes
    if count:
        return count
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def notify_ready(fd: int | None) -> None:
    """In a child: tell the supervisor this process listens (no-op when not supervised)."""
    if fd is None:
        return
    with contextlib.suppress(OSError):
        os.write(fd, READY)
    with contextlib.suppress(OSError):
        os.close(fd)


@dataclass
class Slot:
    """One of the N places a child runs in, restarted in place."""

    index: int
    command: Sequence[str]
    child: Child | None = None
    started: float = 0.0
    failures: int = 0
    _ready_fd: int | None = field(default=None, repr=False)

    async def start(self) -> None:
        read_fd, write_fd = os.pipe()
        argv = [*self.command, "--processes", "1", "--ready-fd", str(write_fd)]
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, pass_fds=(write_fd,),
                start_new_session=True, preexec_fn=die_with_parent)
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        self.child = Child(f"server-{self.index}", argv, proc=proc)
        self._ready_fd = read_fd
        self.started = time.monotonic()
        log.info("server process started", slot=self.index, pid=proc.pid)

    async def ready(self) -> bool:
        """True once the child listens; False when it exited first (the pipe closed)."""
        fd, self._ready_fd = self._ready_fd, None
        if fd is None:
            return False
        read = asyncio.get_running_loop().run_in_executor(None, os.read, fd, 1)
        read.add_done_callback(lambda _: os.close(fd))  # not before the read ends, even if cancelled
        return await asyncio.shield(read) == READY

    async def exit_code(self) -> int:
        assert self.child is not None
        return await self.child.wait()

    def backoff(self) -> float:
        """Seconds to wait before the next start."""
        if time.monotonic() - self.started >= STABLE_SECONDS:
            self.failures = 0
        delay = min(BACKOFF_FIRST * 2.0 ** self.failures, BACKOFF_MAX)
        self.failures += 1
        return delay


def child_command(argv: Sequence[str] | None) -> list[str]:
    """The command line of a child: this one (``--processes``/``--ready-fd`` are appended, and
    the last occurrence of an option wins)."""
    return [sys.executable, "-m", "fluxfunc_server", *(sys.argv[1:] if argv is None else argv)]


async def start_all(slots: Sequence[Slot], shutdown: Shutdown) -> int | None:
    """Start every slot; None when all listen (or a signal came), else the exit code of the
    first that failed. The first slot starts alone: a bad config or an unreachable dependency
    is then said once, by that one process, and the others are never started."""
    code = await _start_group(slots[:1], shutdown)
    if code is None and not shutdown.stopping.is_set() and len(slots) > 1:
        code = await _start_group(slots[1:], shutdown)
    return code


async def _start_group(slots: Sequence[Slot], shutdown: Shutdown) -> int | None:
    for slot in slots:
        await slot.start()
    readiness: asyncio.Future[list[bool]] = asyncio.gather(*(slot.ready() for slot in slots))
    stopping: asyncio.Future[None] = asyncio.ensure_future(shutdown.wait())
    watched: set[asyncio.Future[Any]] = {readiness, stopping}
    await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    if not readiness.done():  # a signal during the start: the caller stops the children
        readiness.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await readiness
        return None
    for slot, ok in zip(slots, readiness.result(), strict=True):
        if not ok and not shutdown.stopping.is_set():
            code = await slot.exit_code()
            # the child has said why on stderr; this is the supervisor's record of it
            log.info("server process did not start", slot=slot.index, code=code)
            return code if code > 0 else 1
    return None


async def keep(slot: Slot, shutdown: Shutdown) -> None:
    """Restart ``slot``'s child whenever it exits, until the supervisor stops."""
    while True:
        code = await slot.exit_code()
        if shutdown.stopping.is_set():
            return
        delay = slot.backoff()
        log.warning("server process exited; restarting", slot=slot.index, code=code,
                    delay_seconds=delay)
        if await sleep_or_stop(shutdown.stopping, delay):
            return
        await slot.start()
        if await slot.ready():
            log.info("server process listening again", slot=slot.index)


async def supervise(command: Sequence[str], count: int, settings: Settings,
                    shutdown: Shutdown) -> int:
    """Run ``count`` children of ``command`` until a signal; see the module docstring."""
    slots = [Slot(i, command) for i in range(count)]
    keepers: list[asyncio.Task[None]] = []
    code: int | None = None
    try:
        code = await start_all(slots, shutdown)
        if code is None and not shutdown.stopping.is_set():
            log.info("serving", processes=count, port=settings.server.port)
            keepers = [asyncio.create_task(keep(s, shutdown), name=f"keep-{s.index}") for s in slots]
            await shutdown.wait()
    finally:
        for task in keepers:
            task.cancel()
        for task in keepers:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        children = [s.child for s in slots if s.child is not None]
        await stop_all(children, grace=settings.server.shutdown_seconds + 5, force=shutdown.forced)
    log.info("stopped")
    return code or 0
