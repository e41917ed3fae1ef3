"""Supervised child processes that run user code.

Each child is a real child process of the worker joined to it by a Unix socketpair carrying
:mod:`~fluxfunc_worker.messages` frames; it inherits no Redis socket, event loop or thread of
the worker. Children are forked by the pool's :mod:`zygote` (about a millisecond each) or,
when the zygote is not available, started as fresh interpreters (``python -m
fluxfunc_worker.child``, tens of milliseconds). The pool:

* hands a task to an idle child and resolves an :class:`Outcome` when it answers, dies or is
  stopped (timeout, memory, cancel, lost lease, shutdown);
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
import socket
import time
from collections import deque
from collections.abc import Callable

from fluxfunc_common.errors import FatalError
from fluxfunc_common.logs import get_logger
from fluxfunc_worker.childproc import Child, ChildProtocol, Job
from fluxfunc_worker.launcher import Launcher, LauncherInfo
from fluxfunc_worker.messages import DoneMessage, FromChild, RpcCall, RunMessage, ScriptChanges
from fluxfunc_worker.outcome import End, Outcome
from fluxfunc_worker.pkgswitch import PackageSwitch
from fluxfunc_worker.rpc import RpcError, RpcHandler, answer

__all__ = ["Job", "Outcome", "Pool", "RpcError", "RpcHandler"]

log = get_logger("worker.pool")

SPAWN_TIMEOUT = 30.0
WATCH_INTERVAL = 0.5


class PoolInfo(LauncherInfo):
    """Pool figures for the worker's heartbeat."""

    children: int
    waiting: int


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
    ) -> None:
        self.size = size
        self.max_tasks = max_tasks
        self.memory_mb = memory_mb
        self._rpc = rpc
        self._gen = gen
        self._idle: deque[Child] = deque()
        self._waiting: deque[Job] = deque()  # submitted while every child was busy
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
        while self._waiting:
            self._resolve(self._waiting.popleft(), Outcome.unstarted(End.SHUTDOWN))
        for child in list(self._children):
            if child.job is not None:
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
        """Children running a task."""
        return sum(1 for c in self._children if c.job is not None)

    def pids(self) -> list[int]:
        return [c.pid for c in self._children if c.alive]

    @property
    def spawned(self) -> int:
        """Children started as fresh interpreters (not forked by the zygote)."""
        return self.launcher.spawned

    def describe(self) -> PoolInfo:
        """Pool figures for the heartbeat."""
        return {"children": len(self._children), "waiting": len(self._waiting), **self.launcher.describe()}

    # --- running --------------------------------------------------------------------------------
    def submit(self, message: RunMessage, timeout: float, *, expires: float | None = None) -> Job:
        """Send a task to an idle child now (no event-loop turn in between), or queue it for
        the next child that frees up; one that waits past ``expires`` (epoch seconds) ends
        unstarted, :attr:`End.EXPIRED`."""
        job = Job(self, message, timeout, expires, asyncio.get_running_loop().create_future())
        child = None if self._holding else self._pop_idle()
        if child is None:
            self._waiting.append(job)
        elif not self._start(child, job):
            self._child_free(child)
        return job

    async def run(self, message: RunMessage, timeout: float, *,  # noqa: ASYNC109 (the task's limit)
                  expires: float | None = None) -> Outcome:
        """:meth:`submit` then :meth:`wait`: the outcome of the run, whatever happens."""
        return await self.wait(self.submit(message, timeout, expires=expires))

    async def wait(self, job: Job) -> Outcome:
        """The outcome of a submitted job; cancelling the wait stops its child."""
        try:
            return await job.future
        except asyncio.CancelledError:
            child = job.child
            if child is not None and child.job is job:
                child.stop(End.SHUTDOWN)
            raise

    def stop(self, job: Job, why: End) -> None:
        """Stop the child running ``job`` (cancel, lost lease, shutdown), or end it unstarted
        if it still waits for a child."""
        if job.future.done():
            return
        child = job.child
        if child is not None:
            if child.job is job:
                child.stop(why)
            return
        if job in self._waiting:
            self._waiting.remove(job)
        self._resolve(job, Outcome.unstarted(why))

    @property
    def queued(self) -> int:
        """Jobs waiting for a child."""
        return len(self._waiting)

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
        job.message["gen"], job.message["changed"] = self._gen(child.pid)  # published.stamp
        job.message["pkgs"] = self.packages.stamp(child.pid)
        child.send(job.message)
        job.timer = asyncio.get_running_loop().call_later(job.timeout, child.stop, End.TIMEOUT)
        return True

    def hold(self) -> None:
        """Start no more jobs (shutdown): what is submitted from now on, and what waits,
        stays unstarted until the worker stops it."""
        self._holding = True

    def _child_free(self, child: Child) -> None:
        """A child can take a task: the next waiting job, else it goes idle."""
        waiting = self._waiting
        while waiting and not self._holding:
            if self._start(child, waiting.popleft()):
                return
        self._idle.append(child)

    def _resolve(self, job: Job, outcome: Outcome) -> None:
        if job.timer is not None:
            job.timer.cancel()
        if not job.future.done():
            job.future.set_result(outcome)

    # --- child events ------------------------------------------------------------------------------
    def on_message(self, child: Child, message: FromChild) -> None:
        if message["type"] == "done":
            self._on_done(child, message)
        elif message["type"] == "rpc":
            self._track(asyncio.create_task(self._serve_rpc(child, message, child.job)))
        elif message["type"] == "print":
            if child.job is not None:
                child.job.prints.append(message["text"])
        elif message["type"] == "ready" and not child.ready.done():
            child.ready.set_result(None)

    def _on_done(self, child: Child, message: DoneMessage) -> None:
        job = child.job
        if job is None or job.stopped is not None:
            return  # being stopped: the process end resolves the job
        child.job = None
        child.tasks_done += 1
        retire = message.pop("retire", None)
        stale = self.packages.stale(child.pid)  # it ran tasks with a package set replaced since
        if retire or child.tasks_done >= self.max_tasks or stale:
            self._retire(child, retire or ("packages" if stale else "max_tasks_per_child"))
        else:
            self._child_free(child)  # its next task goes out before this one is bookkept
        self._resolve(job, Outcome.answered(message))

    async def _serve_rpc(self, child: Child, call: RpcCall, job: Job | None) -> None:
        reply = await answer(self._rpc, call, job.message if job else None)
        if child.alive and child.job is job:
            child.send(reply)

    def _retire(self, child: Child, why: str) -> None:
        """Let a child exit after its task; its replacement starts now, not at its exit."""
        log.debug("recycling child", pid=child.pid, reason=why, tasks=child.tasks_done)
        child.retire()
        if not self._closing:
            self._track(asyncio.create_task(self._spawn()))

    def _on_exit(self, child: Child, code: int | None) -> None:
        job = child.ended()
        self._children.discard(child)
        self.packages.forget(child.pid)
        if job is not None:
            ended = self._ended(job, code)
            if job.prints:  # what it printed before it died or was stopped
                ended.print_logs = "".join(job.prints)
            self._resolve(job, ended)
        if child.retiring or not child.started:
            return  # replaced when it retired / its starter tries again
        if job is None and not self._closing:
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
        delay = 0.1
        try:
            while not self._closing:
                try:
                    child = await self._start_child()
                except (OSError, TimeoutError, RuntimeError) as exc:
                    log.error("cannot start a worker child", error=str(exc))
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5)
                    continue
                self._child_free(child)
                return
        finally:
            self._spawning -= 1

    async def _start_child(self) -> Child:
        """A new ready child: forked by the zygote, else (or if that child fails to start)
        spawned as a fresh interpreter."""
        if self.launcher.forking:
            try:
                return await self._start_one(fork=True)
            except (OSError, RuntimeError, TimeoutError) as exc:
                self.launcher.failed(exc)
        return await self._start_one(fork=False)

    async def _start_one(self, *, fork: bool) -> Child:
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair()
        try:
            proc = await self.launcher.launch(theirs, fork=fork)
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        child = Child(self, proc)
        self._children.add(child)
        await loop.create_unix_connection(lambda: ChildProtocol(child), sock=ours)
        self._track(asyncio.create_task(self._wait_exit(child)))
        try:
            await asyncio.wait_for(asyncio.shield(child.ready), SPAWN_TIMEOUT)
        except TimeoutError:
            child.kill()
            raise
        if not child.alive:
            raise RuntimeError(f"worker child exited at start (code {child.proc.returncode})")
        child.started = True
        return child

    async def _wait_exit(self, child: Child) -> None:
        code = await child.proc.wait()
        if child.transport is not None:
            child.transport.close()
        if not child.ready.done():
            child.ready.set_result(None)
        self._on_exit(child, code)

    def _track(self, task: asyncio.Task[None]) -> None:
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # --- memory ---------------------------------------------------------------------------------------
    async def _watch_memory(self) -> None:
        while True:
            await asyncio.sleep(WATCH_INTERVAL)
            for child in list(self._children):
                if child.job is not None and child.rss_mb() > self.memory_mb:
                    log.warning("child over memory limit", pid=child.pid, limit_mb=self.memory_mb)
                    child.stop(End.MEMORY)

