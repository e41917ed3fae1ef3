"""Starting one child process for the pool: forked by the zygote, else spawned, then joined
to the parent by its socketpair and waited for until it says it is ready.

The child's process end is watched from the start (``on_exit``), so a child that dies while
starting, or at any time later, is reported exactly once.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable

from fluxfunc_common.logs import get_logger
from fluxfunc_worker.childproc import Child, ChildEvents, ChildProtocol
from fluxfunc_worker.launcher import Launcher

log = get_logger("worker.pool")

SPAWN_TIMEOUT = 30.0


async def keep_starting(start: Callable[[], Awaitable[Child]], closing: Callable[[], bool]) -> Child | None:
    """``start()`` until it gives a child (backing off from 0.1 to 5 s between failures);
    None when ``closing()`` turns true first."""
    delay = 0.1
    while not closing():
        try:
            return await start()
        except (OSError, TimeoutError, RuntimeError) as exc:
            log.error("cannot start a worker child", error=str(exc))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5)
    return None


async def start_child(launcher: Launcher, owner: ChildEvents, *, on_start: Callable[[Child], None],
                      on_exit: Callable[[Child, int | None], None],
                      track: Callable[[asyncio.Task[None]], None]) -> Child:
    """A new ready child: forked by the zygote, else (or if that child fails to start)
    spawned as a fresh interpreter. ``on_start``: it exists (before it is ready);
    ``on_exit``: its process ended; ``track``: a background task of the owner's."""
    if launcher.forking:
        try:
            return await _start_one(launcher, owner, on_start, on_exit, track, fork=True)
        except (OSError, RuntimeError, TimeoutError) as exc:
            launcher.failed(exc)
    return await _start_one(launcher, owner, on_start, on_exit, track, fork=False)


async def _start_one(launcher: Launcher, owner: ChildEvents, on_start: Callable[[Child], None],
                     on_exit: Callable[[Child, int | None], None],
                     track: Callable[[asyncio.Task[None]], None], *, fork: bool) -> Child:
    loop = asyncio.get_running_loop()
    ours, theirs = socket.socketpair()
    try:
        proc = await launcher.launch(theirs, fork=fork)
    except BaseException:
        ours.close()
        raise
    finally:
        theirs.close()
    child = Child(owner, proc)
    on_start(child)
    await loop.create_unix_connection(lambda: ChildProtocol(child), sock=ours)
    track(asyncio.create_task(_wait_exit(child, on_exit)))
    try:
        await asyncio.wait_for(asyncio.shield(child.ready), SPAWN_TIMEOUT)
    except TimeoutError:
        child.kill()
        raise
    if not child.alive:
        raise RuntimeError(f"worker child exited at start (code {child.proc.returncode})")
    child.started = True
    return child


async def _wait_exit(child: Child, on_exit: Callable[[Child, int | None], None]) -> None:
    code = await child.proc.wait()
    if child.transport is not None:
        child.transport.close()
    if not child.ready.done():
        child.ready.set_result(None)
    on_exit(child, code)
