"""The zygote: a pre-imported process that forks new worker children on request.

Starting a child as a fresh interpreter costs 50–100 ms of CPU (interpreter start plus the
imports of the runtime), and with ``max_tasks_per_child`` at 1000 a busy worker replaces a
child every fraction of a second. The zygote is started once per pool, as a fresh interpreter
(``python -m fluxfunc_worker.zygote FD MEMORY_MB WORKER_PID``) that imports what a child
needs and then only waits on its control socket: no Redis socket, event loop or thread of
the worker is ever in it. For each request (one end of a new socketpair, passed with
``SCM_RIGHTS``) it creates a child with ``clone(CLONE_PARENT)`` — a fork whose parent is the
*worker*, not the zygote — and answers with the child's pid. A replacement then costs a fork
(about a millisecond) and the child starts with exactly the state a fresh one would have.

Because the worker is the child's real parent, everything stays as with a spawned child: the
worker reaps it and reads its exit status from the kernel (a segfault is still ``SIGSEGV``),
signals it by pid without reuse races (only the worker can reap it), and the child dies with
the worker (``PR_SET_PDEATHSIG``, set in the child). A zygote that dies costs nothing running;
the pool starts a new one, and falls back to spawning interpreters when it cannot.

The Python side of the fork mirrors :func:`os.fork` (``PyOS_BeforeFork`` /
``PyOS_AfterFork_Child``: locks re-initialised, ``register_at_fork`` hooks run, so ``random``
is reseeded). The zygote is single-threaded, so glibc's fork bookkeeping that a raw ``clone``
skips has nothing to protect. Linux on x86-64 and arm64 only (:func:`supported`).

:class:`Zygote` is the fast variant of the launcher's ``ChildStarter``; its plain variant spawns
a fresh interpreter per child (:class:`~fluxfunc_worker.launcher.Spawner`), used when the
zygote is not supported, cannot start or keeps failing, when ``worker.fast_paths`` is off, and
with ``FLUXFUNC_PLAIN_VARIANTS=1`` (docs/internals.md, "Fast paths and their plain variants").
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import os
import platform
import signal
import socket
import struct
import sys
from typing import TypedDict

from fluxfunc_worker import child

CLONE_PARENT = 0x00008000
SYS_CLONE = {"x86_64": 56, "aarch64": 220}
REPLY = struct.Struct("!q")  # the child's pid, or -errno
START_TIMEOUT = 30.0  # the zygote's imports
FORK_TIMEOUT = 5.0  # one fork takes milliseconds: a zygote this slow is abandoned
NAME = b"fluxfunc-zygote"


def supported() -> bool:
    """The zygote needs Linux (clone, pidfd) on an architecture whose clone number we know."""
    return (sys.platform == "linux" and platform.machine() in SYS_CLONE
            and hasattr(os, "pidfd_open") and hasattr(os, "P_PIDFD"))


# --- the zygote process ---------------------------------------------------------------------------
def clone_sibling() -> int:
    """Fork this process so that the new one is a child of *our parent*: 0 in the new process,
    its pid here; OSError when the kernel refuses."""
    # PyDLL: the GIL stays held across the fork, exactly as in os.fork.
    libc = ctypes.PyDLL(None, use_errno=True)
    libc.syscall.restype = ctypes.c_long
    api = ctypes.pythonapi
    api.PyOS_BeforeFork()
    pid = libc.syscall(SYS_CLONE[platform.machine()], CLONE_PARENT | signal.SIGCHLD, 0, 0, 0, 0)
    if pid == 0:
        api.PyOS_AfterFork_Child()
        return 0
    err = ctypes.get_errno()
    api.PyOS_AfterFork_Parent()
    if pid < 0:
        raise OSError(err, f"clone(CLONE_PARENT) failed: {os.strerror(err)}")
    return int(pid)


def _become_child(control: socket.socket, fd: int, memory_mb: int, worker_pid: int) -> None:
    """In the new process: drop the zygote's socket and serve tasks like a spawned child."""
    try:
        control.close()
        child.run_child(fd, memory_mb, worker_pid)
    finally:
        os._exit(70)  # run_child exits by itself; never fall back into the zygote's loop


def serve(control: socket.socket, memory_mb: int, worker_pid: int) -> None:
    """Answer fork requests until the worker closes the control socket."""
    control.send(b"R")
    while True:
        try:
            msg, fds, _flags, _addr = socket.recv_fds(control, 16, 4)
        except (ConnectionError, OSError):
            return
        if not msg:
            return
        if len(fds) != 1:
            for extra in fds:
                os.close(extra)
            control.send(REPLY.pack(-22))  # EINVAL: a request carries exactly one socket
            continue
        try:
            pid = clone_sibling()
        except OSError as exc:
            os.close(fds[0])
            control.send(REPLY.pack(-(exc.errno or 1)))
            continue
        if pid == 0:
            _become_child(control, fds[0], memory_mb, worker_pid)
        os.close(fds[0])
        control.send(REPLY.pack(pid))


def main() -> None:
    fd, memory_mb, worker_pid = (int(a) for a in sys.argv[1:4])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the worker decides when the zygote ends
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    child.die_with_parent(worker_pid)
    child.set_name(NAME)
    gc.collect()
    gc.freeze()  # what is imported now is never traversed by a child's collector: fewer page copies
    control = socket.socket(fileno=fd)
    with contextlib.suppress(ConnectionError, OSError):
        serve(control, memory_mb, worker_pid)
    os._exit(0)


# --- the worker's side ------------------------------------------------------------------------
class ZygoteInfo(TypedDict):
    """The zygote in the worker's heartbeat (``describe``)."""

    pid: int | None
    alive: bool
    forks: int
    starts: int


class ForkedProcess:
    """A child made by the zygote: the worker's own child, watched through a pidfd.

    The same surface as :class:`asyncio.subprocess.Process` that the pool uses (``pid``,
    ``returncode``, ``send_signal``, ``kill``, ``wait``); ``returncode`` is ``-N`` for a child
    killed by signal N."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._loop = asyncio.get_running_loop()
        self._exited: asyncio.Future[int] = self._loop.create_future()
        self._pidfd = os.pidfd_open(pid)
        self._loop.add_reader(self._pidfd, self._reap)

    def _reap(self) -> None:
        try:
            info = os.waitid(os.P_PIDFD, self._pidfd, os.WEXITED | os.WNOHANG)
        except ChildProcessError:  # reaped by someone else: the status is lost
            info = None
            code = 255
        else:
            if info is None:
                return  # not exited yet (spurious wake-up)
            code = info.si_status if info.si_code == os.CLD_EXITED else -info.si_status
        self._loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        self.returncode = code
        self._exited.set_result(code)

    def send_signal(self, sig: int) -> None:
        # No pid-reuse race: until the worker reaps it (returncode set) the pid stays ours.
        if self.returncode is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    async def wait(self) -> int:
        return await asyncio.shield(self._exited)


class Zygote:
    """The worker's handle on its zygote process: start it, ask it for children, stop it."""

    def __init__(self, memory_mb: int, environ: dict[str, str]) -> None:
        self.memory_mb = memory_mb
        self.environ = environ
        self.forks = 0
        self.starts = 0
        self._proc: asyncio.subprocess.Process | None = None
        self._control: socket.socket | None = None
        self._lock = asyncio.Lock()

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.returncode is None and self._control is not None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def returncode(self) -> int | None:
        return self._proc.returncode if self._proc is not None else None

    async def start(self) -> None:
        """Start a zygote (after the previous one, if any, is closed) and wait until it has
        imported everything (it says ``R``)."""
        await self.close()
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "fluxfunc_worker.zygote",
                str(theirs.fileno()), str(self.memory_mb), str(os.getpid()),
                pass_fds=[theirs.fileno()], stdin=asyncio.subprocess.DEVNULL, env=self.environ,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.setblocking(False)
        self._control = ours
        self.starts += 1
        try:
            hello = await asyncio.wait_for(loop.sock_recv(ours, 1), START_TIMEOUT)
        except BaseException:
            await self.close()
            raise
        if hello != b"R":
            await self.close()
            raise RuntimeError("the zygote exited at start")

    async def launch(self, theirs: socket.socket) -> ForkedProcess:
        """A new child serving ``theirs``, forked by this zygote (started again first when
        the last one is gone)."""
        if not self.alive:
            await self.start()
        return await self.fork(theirs)

    async def fork(self, child_socket: socket.socket) -> ForkedProcess:
        """A new child serving ``child_socket`` (the caller closes its copy). OSError/RuntimeError
        when the zygote is gone or the kernel refused the fork."""
        async with self._lock:
            control = self._control
            if control is None or not self.alive:
                raise RuntimeError("the zygote is not running")
            loop = asyncio.get_running_loop()
            try:
                socket.send_fds(control, [b"F"], [child_socket.fileno()])
                reply = await asyncio.wait_for(loop.sock_recv(control, REPLY.size), FORK_TIMEOUT)
            except (OSError, TimeoutError) as exc:
                await self._abandon()
                raise RuntimeError(f"the zygote did not answer: {exc!r}") from None
            if len(reply) != REPLY.size:
                await self._abandon()
                raise RuntimeError("the zygote exited")
            (pid,) = REPLY.unpack(reply)
            if pid < 0:
                raise OSError(-pid, f"the zygote could not fork: {os.strerror(-pid)}")
            self.forks += 1
            return ForkedProcess(pid)

    async def _abandon(self) -> None:
        """A zygote that stopped answering: kill it (a new one may be started)."""
        if self._proc is not None and self._proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.kill()
        await self.close()

    async def close(self) -> None:
        """Close the control socket (the zygote exits at EOF) and reap the process."""
        control, self._control = self._control, None
        if control is not None:
            control.close()
        proc = self._proc
        if proc is None:
            return
        try:
            await asyncio.wait_for(proc.wait(), 3)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()

    def describe(self) -> ZygoteInfo:
        return {"pid": self.pid, "alive": self.alive, "forks": self.forks, "starts": self.starts}


if __name__ == "__main__":
    main()
