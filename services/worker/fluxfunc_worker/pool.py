"""Supervised child processes that run user code.

Each child is a real child process of the worker joined to it by a Unix socketpair carrying
:mod:`~fluxfunc_worker.messages` frames; it inherits no Redis socket, event loop or thread of
the worker. Children are forked by the pool's :mod:`zygote` (about a millisecond each) or,
when the zygote is not available, started as fresh interpreters (``python -m
fluxfunc_worker.child``, tens of milliseconds). The pool:

* hands a sync task to an idle child, an ``async def`` one to a child running async tasks
  with room (:mod:`~fluxfunc_worker.asyncroom`), and resolves an :class:`Outcome` when it
  answers, dies or is stopped (timeout, memory, cancel, lost lease, shutdown);
* stops a child with SIGUSR1 (``finally`` blocks run) and SIGKILL after a short grace;
* watches the resident size of busy children (psutil) against ``max_memory_mb``;
* recycles a child after ``max_tasks_per_child`` tasks — its replacement is started as soon
  as it retires, not when it has exited — and replaces every child that ends;
* restarts a zygote that died, and spawns interpreters if it keeps failing;
* serves the children's DFF calls (``rpc`` frames) with a handler given by the worker
  (:mod:`~fluxfunc_worker.rpc`).

One child process is a :class:`~fluxfunc_worker.childproc.Child`; one task on it a
:class:`~fluxfunc_worker.childproc.Job`; how it ended an :class:`~fluxfunc_worker.outcome.Outcome`.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable

from fluxfunc_common.errors import FatalError
from fluxfunc_common.logs import get_logger
from fluxfunc_worker.asyncroom import AsyncRoom
from fluxfunc_worker.childproc import Child, Job, over_memory
from fluxfunc_worker.childstart import keep_starting, start_child
from fluxfunc_worker.launcher import Launcher, LauncherInfo
from fluxfunc_worker.messages import DoneMessage, FromChild, RpcCall, RunMessage, ScriptChanges
from fluxfunc_worker.outcome import End, Outcome
from fluxfunc_worker.pkgswitch import PackageSwitch
from fluxfunc_worker.rpc import RpcError, RpcHandler, answer

__all__ = ["Job", "Outcome", "Pool", "RpcError", "RpcHandler"]

log = get_logger("worker.pool")

WATCH_INTERVAL = 0.5


class PoolInfo(LauncherInfo):
    """Pool figures for the worker's heartbeat."""

    children: int
    waiting: int
    asyncRunning: int


class Pool:
    """``size`` supervised children; :meth:`run` one task at a time on each."""

    def __init__(
        self,
        size: int,
        *,
        max_tasks: int,
        memory_mb: int,
        rpc: RpcHandler,
        gen: Callable[[int], tuple[int | None, ScriptChanges | None]] = lambda pid: (None, None),
        use_zygote: bool = True,
        async_limit: int = 1,
        on_capacity: Callable[[int], None] | None = None,
    ) -> None:
        self.size = size
        self.max_tasks = max_tasks
        self.memory_mb = memory_mb
        self._rpc = rpc
        self._gen = gen
        self._idle: deque[Child] = deque()
        self._waiting: deque[Job] = deque()  # sync jobs submitted while every child was busy
        self.room = AsyncRoom(size, async_limit, stamp=self._stamp, resolve=self._resolve,
                              on_capacity=on_capacity)  # async tasks' children and queue
        self._holding = False
        self._children: set[Child] = set()
        self._spawning = 0
        self._closing = False
        self._background: set[asyncio.Task[None]] = set()
        self._watcher: asyncio.Task[None] | None = None
        self.launcher = Launcher(memory_mb, use_zygote=use_zygote)
        self.packages = PackageSwitch()  # the extra package set new tasks get (docs/packages.md)

    # --- lifecycle ---------------------------------------------------------------------------
    async def start(self) -> None:
        """Start every child and wait until all are ready; FatalError when they cannot start
        (a broken interpreter or environment must fail the worker at once, not loop)."""
        await self.launcher.start()
        started = await asyncio.gather(*(self._start_child() for _ in range(self.size)),
                                       return_exceptions=True)
        failed = [r for r in started if isinstance(r, BaseException)]
        if failed:
            for child in started:
                if isinstance(child, Child):
                    child.kill()
            self._closing = True
            await self.launcher.close()
            raise FatalError(f"cannot start the worker's child processes: {failed[0]}")
        for child in started:
            assert isinstance(child, Child)
            self._child_free(child)
        self._watcher = asyncio.create_task(self._watch_memory(), name="pool-memory")

    async def close(self) -> None:
        """Stop every child (running ones are killed: drain first)."""
        self._closing = True
        if self._watcher:
            self._watcher.cancel()
        for job in [*self._waiting, *self.room.waiting]:
            self._resolve(job, Outcome.unstarted(End.SHUTDOWN))
        for child in list(self._children):
            if child.busy:
                child.stop(End.SHUTDOWN)
            else:
                child.send({"type": "exit"})
        deadline = asyncio.get_running_loop().time() + 3
        for child in list(self._children):
            remaining = deadline - asyncio.get_running_loop().time()
            try:
                await asyncio.wait_for(child.proc.wait(), max(remaining, 0.05))
            except TimeoutError:
                child.kill()
                await child.proc.wait()
        for task in list(self._background):
            task.cancel()
        await self.launcher.close()

    async def __aenter__(self) -> Pool:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def busy(self) -> int:
        """Children running a task (sync, or async ones)."""
        return sum(1 for c in self._children if c.busy)

    def pids(self) -> list[int]:
        return [c.pid for c in self._children if c.alive]
    @property
    def spawned(self) -> int:
        """Children started as fresh interpreters (not forked by the zygote)."""
        return self.launcher.spawned

    def describe(self) -> PoolInfo:
        return {"children": len(self._children), "waiting": self.queued,
                "asyncRunning": sum(len(c.async_jobs) for c in self._children), **self.launcher.describe()}

    # --- running --------------------------------------------------------------------------------
    def submit(self, message: RunMessage, timeout: float, *, expires: float | None = None,
               is_async: bool = False) -> Job:
        """Send a task to a child now (no event-loop turn in between) — a sync one to an idle
        child, an async one where :class:`AsyncRoom` says — or queue it for the next child
        that frees up; one that waits past ``expires`` (epoch seconds) ends unstarted,
        :attr:`End.EXPIRED`."""
        job = Job(self, message, timeout, expires, asyncio.get_running_loop().create_future(),
                  is_async=is_async)
        if is_async:
            self.room.place(job, self._pop_idle, self._child_free, holding=self._holding)
            return job
        child = None if self._holding else self._pop_idle()
        if child is None:
            self._waiting.append(job)
            self.room.drain_one()
        elif not self._start(child, job):
            self._child_free(child)
        return job

    async def run(self, message: RunMessage, timeout: float, *,  # noqa: ASYNC109 (the task's limit)
                  expires: float | None = None, is_async: bool = False) -> Outcome:
        """:meth:`submit` then :meth:`wait`: the outcome of the run, whatever happens."""
        return await self.wait(self.submit(message, timeout, expires=expires, is_async=is_async))

    async def wait(self, job: Job) -> Outcome:
        """The outcome of a submitted job; cancelling the wait stops its child."""
        try:
            return await job.future
        except asyncio.CancelledError:
            self._stop_running(job, End.SHUTDOWN)
            raise

    def stop(self, job: Job, why: End) -> None:
        """Stop the child running ``job`` (cancel, lost lease, shutdown), or end it unstarted
        if it still waits for a child."""
        if job.future.done() or self._stop_running(job, why):
            return
        if job in self._waiting:  # (a waiting async job is skipped once resolved)
            self._waiting.remove(job)
        self._resolve(job, Outcome.unstarted(why))

    def _stop_running(self, job: Job, why: End) -> bool:
        """Stop ``job`` on its child (a sync one: the child; an async one: its coroutine);
        False when no child has it."""
        child = job.child
        if child is not None and child.job is job:
            child.stop(why)
        elif child is not None and child.async_jobs.get(job.task_id) is job:
            self.room.stop(child, job, why)
        return child is not None

    @property
    def queued(self) -> int:
        """Jobs waiting for a child."""
        return len(self._waiting) + len(self.room.waiting)

    def _pop_idle(self) -> Child | None:
        idle = self._idle
        while idle:
            child = idle.popleft()
            if child.alive and not child.retiring:
                if not self.packages.stale(child.pid):
                    return child
                self._retire(child, "packages")
        return None

    def switch_packages(self, folder: str | None) -> None:
        """New tasks get the package set in ``folder``; idle children that ran tasks with
        another set are recycled now, busy ones after their task."""
        if self.packages.switch(folder):
            for child in [c for c in self._idle if c.alive and not c.retiring]:
                if self.packages.stale(child.pid):
                    self._retire(child, "packages")

    def _start(self, child: Child, job: Job) -> bool:
        """Send ``job`` to ``child``; False when it may not start (already ended, or expired:
        it ends unstarted)."""
        if job.future.done():
            return False  # stopped, or its waiter was cancelled
        if job.expires is not None and job.expires < time.time():
            self._resolve(job, Outcome.unstarted(End.EXPIRED))
            return False
        child.job = job
        job.child = child
        self._stamp(child, job)
        child.send(job.message)
        job.timer = asyncio.get_running_loop().call_later(job.timeout, child.stop, End.TIMEOUT)
        return True

    def _on_async_done(self, child: Child, message: DoneMessage) -> None:
        job = child.async_jobs.pop(message["id"], None)
        if job is None:
            return
        child.tasks_done += 1
        retire = message.pop("retire", None) or self._retire_reason(child)
        if retire:
            child.retire_after = child.retire_after or retire
            self.room.close(child)
        if job.stopped is None:
            outcome = Outcome.answered(message)
        else:  # cancelled by the worker: the reason is the outcome, what it printed is kept
            outcome = self._ended(job, None)
            outcome.print_logs = message.get("printLogs")
        if not self.room.refill(child, holding=self._holding):
            self.room.forget(child)  # its last async task: it is a whole child again
            if child.retire_after:
                self._retire(child, child.retire_after)
            elif child.alive and not child.stopping:
                self._child_free(child)
        self._resolve(job, outcome)

    def _retire_reason(self, child: Child) -> str | None:
        """Why a child that ended a task retires (None: it does not)."""
        if child.tasks_done >= self.max_tasks:
            return "max_tasks_per_child"
        return "packages" if self.packages.stale(child.pid) else None

    def _stamp(self, child: Child, job: Job) -> None:
        """What ``child`` must know before the run: publish generation, package set."""
        job.message["gen"], job.message["changed"] = self._gen(child.pid)  # published.stamp
        job.message["pkgs"] = self.packages.stamp(child.pid)

    def hold(self) -> None:
        """Start no more jobs (shutdown): what is submitted from now on, and what waits,
        stays unstarted until the worker stops it."""
        self._holding = True

    def _child_free(self, child: Child) -> None:
        """A child can take a task: the next waiting sync job (async ones can share a child:
        they come second), else waiting async jobs, else it goes idle."""
        waiting = self._waiting
        while waiting and not self._holding:
            if self._start(child, waiting.popleft()):
                return
        if self.room.waiting and not self._holding:
            self.room.enter(child)
            if self.room.refill(child, holding=self._holding):
                return
            self.room.forget(child)
        self._idle.append(child)

    def _resolve(self, job: Job, outcome: Outcome) -> None:
        if job.timer is not None:
            job.timer.cancel()
        if job.killer is not None:
            job.killer.cancel()
        if not job.future.done():
            job.future.set_result(outcome)

    # --- child events ------------------------------------------------------------------------------
    def on_message(self, child: Child, message: FromChild) -> None:
        if message["type"] == "done":
            self._on_done(child, message)
        elif message["type"] == "rpc":
            self._track(asyncio.create_task(self._serve_rpc(child, message, child.job)))
        elif message["type"] == "print":
            job = child.async_jobs.get(message["id"]) if "id" in message else child.job
            if job is not None:
                job.prints.append(message["text"])
        elif message["type"] == "ready" and not child.ready.done():
            child.ready.set_result(None)

    def _on_done(self, child: Child, message: DoneMessage) -> None:
        if message["id"] in child.async_jobs:
            self._on_async_done(child, message)
            return
        job = child.job
        if job is None or job.stopped is not None:
            return  # being stopped: the process end resolves the job
        child.job = None
        child.tasks_done += 1
        retire = message.pop("retire", None) or self._retire_reason(child)
        if retire:
            self._retire(child, retire)
        else:
            self._child_free(child)  # its next task goes out before this one is bookkept
        self._resolve(job, Outcome.answered(message))

    async def _serve_rpc(self, child: Child, call: RpcCall, job: Job | None) -> None:
        made_async = "task" in call  # by one of its async tasks: answered while it lives
        if made_async:
            job = child.async_jobs.get(call["task"])
        reply = await answer(self._rpc, call, job.message if job else None)
        if child.alive and (made_async or child.job is job):
            child.send(reply)

    def _retire(self, child: Child, why: str) -> None:
        """Let a child exit after its task; its replacement starts now, not at its exit."""
        log.debug("recycling child", pid=child.pid, reason=why, tasks=child.tasks_done)
        child.retire()
        if not self._closing:
            self._track(asyncio.create_task(self._spawn()))

    def _on_exit(self, child: Child, code: int | None) -> None:
        jobs = child.ended()
        self._children.discard(child)
        self.room.forget(child)
        self.packages.forget(child.pid)
        for job in jobs:
            ended = self._ended(job, code)
            if job.prints:  # what it printed before it died or was stopped
                ended.print_logs = "".join(job.prints)
            self._resolve(job, ended)
        if child.retiring or not child.started:
            return  # replaced when it retired / its starter tries again
        if not jobs and not self._closing:
            log.warning("idle child exited", pid=child.pid, code=code)
        if not self._closing:
            self._track(asyncio.create_task(self._spawn()))

    def _ended(self, job: Job, code: int | None) -> Outcome:
        if job.stopped is None:
            return Outcome.died(code)
        return Outcome.stopped(job.stopped, timeout=job.timeout, memory_mb=self.memory_mb)

    # --- spawning ---------------------------------------------------------------------------------------
    async def _spawn(self) -> None:
        self._spawning += 1
        try:
            child = await keep_starting(self._start_child, lambda: self._closing)
            if child is not None:
                self._child_free(child)
        finally:
            self._spawning -= 1

    async def _start_child(self) -> Child:
        """A new ready child (:func:`~fluxfunc_worker.childstart.start_child`)."""
        return await start_child(self.launcher, self, on_start=self._children.add, on_exit=self._on_exit,
                                 track=self._track)

    def _track(self, task: asyncio.Task[None]) -> None:
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # --- memory ---------------------------------------------------------------------------------------
    async def _watch_memory(self) -> None:
        while True:
            await asyncio.sleep(WATCH_INTERVAL)
            for child in over_memory(self._children, self.memory_mb):
                self.room.close(child)
                child.stop(End.MEMORY)  # every task it runs fails with the memory error

