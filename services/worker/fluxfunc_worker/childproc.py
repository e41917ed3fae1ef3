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
from collections.abc import Iterable
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
    is_async: bool = False  # an async def: one of many on its child's event loop
    killer: asyncio.TimerHandle | None = None  # an async job not answering its cancel

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
        self.job: Job | None = None  # its sync task
        self.async_jobs: dict[str, Job] = {}  # its async tasks (never beside a sync one)
        self.accepting = False  # takes more async tasks (set by the pool's AsyncRoom)
        self.retire_after: str | None = None  # retires when its last async task ends (why)
        self.tasks_done = 0
        self.ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None
        self.alive = True
        self.started = False  # ready once: its end is the pool's to replace (else the starter's)
        self.retiring = False
        self._killer: asyncio.TimerHandle | None = None
        self._ps: psutil.Process | None = None
        self._later: list[bytes] = []  # frames of send_soon, written in one go

    def send(self, message: ToChild) -> None:
        """Write ``message`` now (after any frames :meth:`send_soon` holds: order is kept)."""
        if self._later:
            self._later.append(encode(message))
            self._flush()
        elif self.transport is not None and not self.transport.is_closing():
            self.transport.write(encode(message))

    def send_soon(self, message: ToChild) -> None:
        """Write ``message`` once the event loop has run what is ready now, in one write with
        every other message sent so meanwhile: the tasks a claim brings cost their child one
        socket write, not one per task."""
        if not self._later:
            asyncio.get_running_loop().call_soon(self._flush)
        self._later.append(encode(message))

    def _flush(self) -> None:
        frames, self._later = self._later, []
        if frames and self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(frames))

    @property
    def stopping(self) -> bool:
        """Being stopped or retiring: it takes no more tasks."""
        return self._killer is not None

    @property
    def busy(self) -> bool:
        """Running a sync task or async ones."""
        return self.job is not None or bool(self.async_jobs)

    def stop(self, why: End) -> None:
        """Stop the process and every task it runs: SIGUSR1 now, SIGKILL after the grace
        (the jobs resolve when the process ends)."""
        for job in self.jobs():
            if job.stopped is None:
                job.stopped = why
        self.halt()

    def jobs(self) -> list[Job]:
        """Every task it runs."""
        return [self.job, *self.async_jobs.values()] if self.job is not None else [*self.async_jobs.values()]

    def halt(self) -> None:
        """SIGUSR1 now, SIGKILL after the grace, whatever its tasks (those not stopped for a
        reason of their own end as the child's death)."""
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

    def ended(self) -> list[Job]:
        """The process has ended: the jobs it was running."""
        self.alive = False
        if self._killer is not None:
            self._killer.cancel()
        jobs = self.jobs()
        self.job = None
        self.async_jobs = {}
        return jobs

    def rss_mb(self) -> float:
        try:
            if self._ps is None:
                self._ps = psutil.Process(self.pid)
            return float(self._ps.memory_info().rss) / (1024 * 1024)
        except (psutil.Error, OSError):
            return 0.0


def over_memory(children: Iterable[Child], limit_mb: int) -> list[Child]:
    """The busy children whose resident size is over ``limit_mb`` (each logged)."""
    found = [c for c in list(children) if c.busy and c.rss_mb() > limit_mb]
    for child in found:
        log.warning("child over memory limit", pid=child.pid, limit_mb=limit_mb, tasks=len(child.jobs()))
    return found


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
