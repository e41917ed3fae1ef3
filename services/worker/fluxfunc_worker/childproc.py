"""The parent's handle on one child process: its socket, the job it runs, how it is stopped.

A :class:`Child` sends typed messages (:mod:`~fluxfunc_worker.messages`) to its process and
hands what the process sends to its owner (the :class:`~fluxfunc_worker.pool.Pool`, through
:class:`ChildEvents`). Stopping is SIGUSR1 first (the user's ``finally`` blocks run), SIGKILL
after :data:`KILL_GRACE`; the job resolves when the process has ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, cast

import psutil

from fluxfunc_common.logs import get_logger
from fluxfunc_worker.ipc import FrameReader
from fluxfunc_worker.launcher import ChildProcess
from fluxfunc_worker.messages import FromChild, RunMessage, ToChild, encode
from fluxfunc_worker.outcome import End, Outcome

if TYPE_CHECKING:
    from fluxfunc_worker.pool import Pool

log = get_logger("worker.pool")

KILL_GRACE = 0.5
RETIRE_GRACE = 5.0  # seconds a retiring child has to exit by itself


@dataclass(eq=False)
class Job:
    """One task for one child: resolved (``future``) when the child answers, dies or is
    stopped — or, while it waits for a child, when it is stopped or expires."""

    pool: Pool
    message: RunMessage
    timeout: float
    expires: float | None  # epoch seconds: never started after this
    future: asyncio.Future[Outcome]
    stopped: End | None = None  # why the worker stopped it (its child's end then says so)
    timer: asyncio.TimerHandle | None = None
    child: Child | None = None
    prints: list[str] = field(default_factory=list)  # lines printed so far (kept on a crash)

    @property
    def task_id(self) -> str:
        return self.message["id"]

    @property
    def running(self) -> bool:
        """A child has it."""
        return self.child is not None

    def stop(self, why: End) -> None:
        """Stop its child, or end it now if it still waits for one."""
        self.pool.stop(self, why)


class ChildEvents(Protocol):
    def on_message(self, child: Child, message: FromChild) -> None: ...


class Child:
    """One child process and its socket."""

    def __init__(self, owner: ChildEvents, proc: ChildProcess) -> None:
        self.owner = owner
        self.proc = proc
        self.pid = proc.pid
        self.job: Job | None = None
        self.tasks_done = 0
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self.alive = True
        self.started = False  # ready once: its end is the pool's to replace (else the starter's)
        self.retiring = False
        self._killer: asyncio.TimerHandle | None = None
        self._ps: psutil.Process | None = None

    def send(self, message: ToChild) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(encode(message))

    def stop(self, why: End) -> None:
        """SIGUSR1 now, SIGKILL after the grace (the job resolves when the process ends)."""
        if self.job is not None and self.job.stopped is None:
            self.job.stopped = why
        if not self.alive or self._killer is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGUSR1)
        self._killer = asyncio.get_running_loop().call_later(KILL_GRACE, self.kill)

    def retire(self) -> None:
        """Ask it to exit after its task (killed if it has not within the grace)."""
        self.retiring = True
        self.send({"type": "exit"})
        self._killer = asyncio.get_running_loop().call_later(RETIRE_GRACE, self.kill)

    def kill(self) -> None:
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()

    def ended(self) -> Job | None:
        """The process has ended: the job it was running, if any."""
        self.alive = False
        if self._killer is not None:
            self._killer.cancel()
        job, self.job = self.job, None
        return job

    def rss_mb(self) -> float:
        try:
            if self._ps is None:
                self._ps = psutil.Process(self.pid)
            return float(self._ps.memory_info().rss) / (1024 * 1024)
        except (psutil.Error, OSError):
            return 0.0


class ChildProtocol(asyncio.Protocol):
    """The parent's end of a child's socket: frames in, to the child's owner."""

    def __init__(self, child: Child) -> None:
        self.child = child
        self.reader = FrameReader(lambda message: child.owner.on_message(child, message))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio.Transport: no isinstance check.
        self.child.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self.reader.feed(data)
        except ValueError as exc:  # a corrupt frame: the child is beyond trust
            log.error("bad frame from child", pid=self.child.pid, error=str(exc))
            self.child.kill()
