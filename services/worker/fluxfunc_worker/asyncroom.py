"""Room for ``async def`` tasks in the pool: which children run them and how many more they take.

A child is in one of three modes: idle, running one sync task, or running async tasks —
up to ``worker.async_per_child`` of them at once on its event loop (never a sync task beside
them: a sync function would stop the loop). :class:`AsyncRoom` keeps the children in async
mode that still *accept* tasks and the async jobs waiting for room.

Where an async task goes: the accepting child with the most async tasks that still has room
(children fill up one after the other, so the others stay free for sync tasks), else an idle
child, which enters async mode; else it waits. A child leaves async mode when its last async
task ends. A sync task that finds no idle child makes the accepting child with the fewest
async tasks *drain* (it takes no new ones) so it is free for that sync task as soon as they
end — async work never starves sync work.

Capacity. The worker reads one stream entry per free *place* (:mod:`~fluxfunc_worker.slots`):
a child is one place, a child accepting async tasks is ``async_per_child`` places. Each
change is reported to ``on_capacity`` with the new total, so the worker holds up to
``async_per_child`` entries per child running async tasks and one per other child — a sync
entry read into async room waits for a free child, and asks one to drain.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

from fluxfunc_common.logs import get_logger
from fluxfunc_worker.childproc import Child, Job
from fluxfunc_worker.outcome import End, Outcome

log = get_logger("worker.pool")

STOP_GRACE = 2.0  # seconds a cancelled async task has to answer before its child is killed


class AsyncRoom:
    """Async-mode children and the async jobs waiting for room (see the module docstring)."""

    def __init__(self, size: int, limit: int, *, stamp: Callable[[Child, Job], None],
                 resolve: Callable[[Job, Outcome], None],
                 on_capacity: Callable[[int], None] | None = None) -> None:
        self.size = size
        self._stamp = stamp  # the pool's: publish generation and package set of the child
        self._resolve = resolve
        self.limit = max(1, limit)
        self.on_capacity = on_capacity
        self.accepting: set[Child] = set()
        self.modal: set[Child] = set()  # every child in async mode (accepting or draining)
        self.waiting: deque[Job] = deque()

    @property
    def capacity(self) -> int:
        """Places: one per child, ``limit`` per child accepting async tasks."""
        return self.size + (self.limit - 1) * len(self.accepting)

    def pick(self) -> Child | None:
        """The accepting child with the most async tasks and room for one more."""
        best: Child | None = None
        for child in self.accepting:
            if self.has_room(child) and (best is None or len(child.async_jobs) > len(best.async_jobs)):
                best = child
        return best

    def has_room(self, child: Child) -> bool:
        return child.accepting and child.alive and not child.stopping and len(child.async_jobs) < self.limit

    def enter(self, child: Child) -> None:
        """An idle child takes its first async task."""
        child.accepting = True
        self._set(child, True)

    def close(self, child: Child) -> None:
        """The child takes no more async tasks (draining, retiring, stopped, or it left async
        mode)."""
        child.accepting = False
        self._set(child, False)

    def drain_one(self) -> None:
        """A sync task waits for a child: the accepting child with the fewest async tasks
        takes no new ones (unless one is draining already)."""
        if any(not c.accepting and c.alive for c in self.modal):
            return
        if self.accepting:
            self.close(min(self.accepting, key=lambda c: len(c.async_jobs)))

    # --- jobs -------------------------------------------------------------------------------
    def place(self, job: Job, idle: Callable[[], Child | None], free: Callable[[Child], None], *,
              holding: bool) -> None:
        """Start ``job`` on the child :meth:`pick` gives, else on an ``idle()`` child that
        enters async mode; else (or while the pool holds) it waits. A child that entered for
        a job that could not start (expired) is handed back (``free``)."""
        child = None if holding else self.pick()
        if child is None and not holding:
            child = idle()
            if child is not None:
                self.enter(child)
        if child is None:
            self.waiting.append(job)
        elif not self.start(child, job) and not child.async_jobs:
            self.forget(child)
            free(child)

    def start(self, child: Child, job: Job) -> bool:
        """Send async ``job`` to ``child`` (in async mode, with room); False when it may not
        start (ended, or expired)."""
        if job.future.done():
            return False
        if job.expires is not None and job.expires < time.time():
            self._resolve(job, Outcome.unstarted(End.EXPIRED))
            return False
        child.async_jobs[job.task_id] = job
        job.child = child
        self._stamp(child, job)
        job.message["isAsync"] = True
        child.send_soon(job.message)  # one write per child for a whole claim's tasks
        job.timer = asyncio.get_running_loop().call_later(job.timeout, self.stop, child, job, End.TIMEOUT)
        return True

    def refill(self, child: Child, *, holding: bool) -> bool:
        """Give ``child`` waiting async jobs while it has room; True when it runs any."""
        while self.has_room(child) and not holding:
            job = self.next_waiting()
            if job is None:
                break
            self.start(child, job)
        return bool(child.async_jobs)

    def stop(self, child: Child, job: Job, why: End) -> None:
        """Cancel one async task's coroutine; its child is killed (with every task it runs)
        only if the task has not answered within :data:`STOP_GRACE`."""
        if job.stopped is not None:  # (its waiter may be gone: the coroutine is stopped anyway)
            return
        job.stopped = why
        child.send({"type": "cancel", "id": job.task_id})
        job.killer = asyncio.get_running_loop().call_later(STOP_GRACE, self._unresponsive, child, job)

    def _unresponsive(self, child: Child, job: Job) -> None:
        if child.async_jobs.get(job.task_id) is job:
            log.warning("async task ignored its cancel: stopping its child", pid=child.pid,
                        task_id=job.task_id, tasks=len(child.async_jobs))
            self.close(child)
            child.halt()

    def next_waiting(self) -> Job | None:
        """The oldest async job still waiting (ended ones are skipped)."""
        while self.waiting:
            job = self.waiting.popleft()
            if not job.future.done():
                return job
        return None

    def _set(self, child: Child, accepting: bool) -> None:
        before = len(self.accepting)
        if accepting:
            self.accepting.add(child)
            self.modal.add(child)
        else:
            self.accepting.discard(child)
        if len(self.accepting) != before and self.on_capacity is not None:
            self.on_capacity(self.capacity)

    def forget(self, child: Child) -> None:
        """The child left async mode (its last async task ended) or ended."""
        self.close(child)
        self.modal.discard(child)
