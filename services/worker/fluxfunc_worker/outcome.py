"""How a run on the pool ended: an :class:`End` (why) and the :class:`Outcome` built from it.

A run ends because its child answered (:attr:`End.ANSWERED`, the child's
:class:`~fluxfunc_worker.messages.DoneMessage` says how the function went), because the
worker stopped it (timeout, memory, cancel, lost lease, shutdown), because its child died,
or — while it still waited for a child — because it expired, was cancelled, lost or
released. :class:`Outcome` carries the task status that end maps to, and the fields the
task result is built from (:func:`~fluxfunc_worker.completion.result_from_outcome`).
"""

from __future__ import annotations

import signal
from dataclasses import dataclass
from enum import Enum

from fluxfunc_common.envelope import TaskStatus
from fluxfunc_worker.messages import DoneMessage


class End(Enum):
    """Why a run ended."""

    ANSWERED = "answered"  # its child answered: the function returned or raised
    TIMEOUT = "timeout"
    MEMORY = "memory"
    CANCELLED = "cancelled"
    EXPIRED = "expired"  # not started: its expiry passed while it waited for a child
    LOST = "lost"  # another worker owns the entry now
    SHUTDOWN = "shutdown"  # stopped or released by the worker's shutdown
    DIED = "died"  # its child process ended without answering

    @property
    def by_worker(self) -> bool:
        """Stopped by this worker for its own reasons (lost lease, shutdown): nothing of the
        run is written by this worker."""
        return self in _BY_WORKER


_BY_WORKER = frozenset({End.LOST, End.SHUTDOWN})
_STATUSES = {s.value: s for s in TaskStatus}
_FAILURE = TaskStatus.FAILURE


@dataclass(slots=True)
class Outcome:
    """How a run ended: why, the task status that maps to, and what it left."""

    end: End
    status: TaskStatus
    report: DoneMessage | None = None  # the child's answer (ANSWERED)
    exception: str | None = None  # the worker's account of a run that did not answer
    print_logs: str | None = None  # what it printed before it died or was stopped

    @classmethod
    def answered(cls, done: DoneMessage) -> Outcome:
        """The child's answer (an unknown status counts as a failure)."""
        return cls(End.ANSWERED, _STATUSES.get(done.get("status", ""), _FAILURE), done)

    @classmethod
    def unstarted(cls, end: End) -> Outcome:
        """A run ended while it waited for a child."""
        if end is End.EXPIRED:
            return cls(end, TaskStatus.EXPIRED, exception="FuncExpired: the task expired before it started")
        status = TaskStatus.CANCELLED if end is End.CANCELLED else _FAILURE
        return cls(end, status, exception=f"FuncCancelled: the task was {end.value} before it started")

    @classmethod
    def stopped(cls, end: End, *, timeout: float, memory_mb: int) -> Outcome:
        """A run whose child the worker stopped (``end``: why)."""
        if end is End.TIMEOUT:
            return cls(end, TaskStatus.TIMEOUT, exception=f"FuncTimeout: the function ran past its "
                                                          f"timeout of {timeout:g} s and was stopped")
        if end is End.MEMORY:
            return cls(end, _FAILURE, exception="MemoryError: the worker child exceeded its memory "
                                                f"limit (max_memory_mb={memory_mb}) and was stopped")
        if end is End.CANCELLED:
            return cls(end, TaskStatus.CANCELLED,
                       exception="FuncCancelled: the task was cancelled while it ran")
        return cls(end, _FAILURE, exception=f"FuncCancelled: the task was stopped ({end.value})")

    @classmethod
    def died(cls, code: int | None) -> Outcome:
        """A run whose child process ended without answering."""
        return cls(End.DIED, _FAILURE,
                   exception=f"WorkerChildDied: {describe_exit(code)} while running the task")

    @property
    def run_seconds(self) -> float | None:
        """How long the function ran, as its child measured it (None: it did not answer)."""
        report = self.report
        if report is None:
            return None
        started, ended = report.get("startTime"), report.get("endTime")
        return ended - started if started and ended else None


def describe_exit(code: int | None) -> str:
    """``worker child process exited with code 1`` / ``… was killed by signal SIGSEGV``."""
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = str(-code)
        return f"worker child process was killed by signal {name} (exit code {code})"
    return f"worker child process exited with code {code}"
