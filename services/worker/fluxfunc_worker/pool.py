"""Supervised child processes that run user code.

Each child is a real child process of the worker joined to it by a Unix socketpair carrying
:mod:`ipc` frames; it inherits no Redis socket, event loop or thread of the worker. Children
are forked by the pool's :mod:`zygote` (about a millisecond each) or, when the zygote is not
available, started as fresh interpreters (``python -m fluxfunc_worker.child``, tens of
milliseconds). The pool:

* hands a task to an idle child and resolves an :class:`Outcome` when it answers, dies or is
  stopped (timeout, memory, cancel, lost lease, shutdown);
* stops a child with SIGUSR1 (``finally`` blocks run) and SIGKILL after a short grace;
* watches the resident size of busy children (psutil) against ``max_memory_mb``;
* recycles a child after ``max_tasks_per_child`` tasks — its replacement is started as soon
  as it retires, not when it has exited — and replaces every child that ends;
* restarts a zygote that died, and spawns interpreters if it keeps failing;
* serves the children's DFF calls (``rpc`` frames) with a handler given by the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, cast

import psutil

from fluxfunc_common.errors import FatalError
from fluxfunc_common.logs import get_logger
from fluxfunc_worker.ipc import FrameReader, encode
from fluxfunc_worker.launcher import ChildProcess, Launcher

log = get_logger("worker.pool")

KILL_GRACE = 0.5
SPAWN_TIMEOUT = 30.0
WATCH_INTERVAL = 0.5

RpcHandler = Callable[[str, dict[str, Any], dict[str, Any] | None], Awaitable[Any]]


class RpcError(Exception):
    """A DFF call the worker refused or could not serve; ``kind`` tells the child which error."""

    def __init__(self, message: str, kind: str = "dff") -> None:
        super().__init__(message)
        self.kind = kind


@dataclass
class Outcome:
    """How a run ended: ``status`` plus the fields of the task result."""

    status: str
    fields: dict[str, Any] = field(default_factory=dict)


Abort = Callable[[], "Outcome | None"]


@dataclass(eq=False)
class Job:
    """One task for one child: resolved (``future``) when the child answers, dies or is
    stopped — or, while it waits for a child, when ``abort`` says it must not start."""

    message: dict[str, Any]
    timeout: float
    future: asyncio.Future[Outcome]
    abort: Abort | None = None
    kill_reason: str | None = None
    timer: asyncio.TimerHandle | None = None
    child: Child | None = None
    prints: list[str] = field(default_factory=list)  # lines printed so far (kept on a crash)

    @property
    def task_id(self) -> str:
        return str(self.message["id"])


class Child:
    """One child process and its socket."""

    def __init__(self, pool: Pool, proc: ChildProcess) -> None:
        self.pool = pool
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

    def send(self, message: dict[str, Any]) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(encode(message))

    def stop(self, reason: str) -> None:
        """SIGUSR1 now, SIGKILL after the grace (the job resolves when the process ends)."""
        if self.job is not None and self.job.kill_reason is None:
            self.job.kill_reason = reason
        if not self.alive or self._killer is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.proc.send_signal(signal.SIGUSR1)
        self._killer = asyncio.get_running_loop().call_later(KILL_GRACE, self.kill)

    def kill(self) -> None:
        if self.alive:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()

    def rss_mb(self) -> float:
        try:
            if self._ps is None:
                self._ps = psutil.Process(self.pid)
            return float(self._ps.memory_info().rss) / (1024 * 1024)
        except (psutil.Error, OSError):
            return 0.0


class _ChildProtocol(asyncio.Protocol):
    def __init__(self, child: Child) -> None:
        self.child = child
        self.reader = FrameReader(lambda message: child.pool._on_message(child, message))

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not subclasses of asyncio.Transport: no isinstance check.
        self.child.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        try:
            self.reader.feed(data)
        except ValueError as exc:  # a corrupt frame: the child is beyond trust
            log.error("bad frame from child", pid=self.child.pid, error=str(exc))
            self.child.kill()


class Pool:
    """``size`` supervised children; :meth:`run` one task at a time on each."""

    def __init__(
        self,
        size: int,
        *,
        max_tasks: int,
        memory_mb: int,
        rpc: RpcHandler,
        gen: Callable[[], int | None] = lambda: None,
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
        self._background: set[asyncio.Task[Any]] = set()
        self._watcher: asyncio.Task[None] | None = None
        self.launcher = Launcher(memory_mb, use_zygote=use_zygote)

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
            self._resolve(self._waiting.popleft(), Outcome("shutdown", {
                "exception": "FuncCancelled: the task was shutdown before it started"}))
        for child in list(self._children):
            if child.job is not None:
                child.stop("shutdown")
            else:
                child.send({"t": "exit"})
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

    def describe(self) -> dict[str, Any]:
        """Pool figures for the heartbeat."""
        return {"children": len(self._children), "waiting": len(self._waiting), **self.launcher.describe()}

    # --- running --------------------------------------------------------------------------------
    def submit(self, message: dict[str, Any], timeout: float, *, abort: Abort | None = None) -> Job:
        """Send a task to an idle child now (no event-loop turn in between), or queue it for
        the next child that frees up. ``abort`` is asked just before it starts: an outcome
        there ends the job unstarted (cancelled, lost, released, expired meanwhile)."""
        job = Job(message, timeout, asyncio.get_running_loop().create_future(), abort)
        child = None if self._holding else self._pop_idle()
        if child is None:
            self._waiting.append(job)
        elif not self._start(child, job):
            self._child_free(child)
        return job

    async def run(self, message: dict[str, Any], timeout: float, *,  # noqa: ASYNC109 (the task's limit)
                  abort: Abort | None = None) -> Outcome:
        """:meth:`submit` then :meth:`wait`: the outcome of the run, whatever happens."""
        return await self.wait(self.submit(message, timeout, abort=abort))

    async def wait(self, job: Job) -> Outcome:
        """The outcome of a submitted job; cancelling the wait stops its child."""
        try:
            return await job.future
        except asyncio.CancelledError:
            child = job.child
            if child is not None and child.job is job:
                child.stop("shutdown")
            raise

    @property
    def queued(self) -> int:
        """Jobs waiting for a child."""
        return len(self._waiting)

    def is_waiting(self, task_id: str) -> bool:
        """``task_id`` is submitted but not started (every child was busy)."""
        return any(job.task_id == task_id for job in self._waiting)

    def _pop_idle(self) -> Child | None:
        idle = self._idle
        while idle:
            child = idle.popleft()
            if child.alive and not child.retiring:
                return child
        return None

    def _start(self, child: Child, job: Job) -> bool:
        """Send ``job`` to ``child``; False (job resolved unstarted) when its abort says so."""
        if job.future.done():
            return False  # its waiter was cancelled
        aborted = job.abort() if job.abort is not None else None
        if aborted is not None:
            job.future.set_result(aborted)
            return False
        child.job = job
        job.child = child
        job.message["gen"] = self._gen()
        child.send(job.message)
        job.timer = asyncio.get_running_loop().call_later(job.timeout, child.stop, "timeout")
        return True

    def hold(self) -> None:
        """Start no more jobs (shutdown): what is submitted from now on, and what waits,
        stays unstarted until the worker ends it (``stop_task``)."""
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

    def stop_task(self, task_id: str, reason: str) -> bool:
        """Stop the child running ``task_id`` (cancel, lost lease), or end it unstarted if it
        still waits for a child (its ``abort`` gives the outcome); False when not here."""
        for child in self._children:
            if child.job is not None and child.job.task_id == task_id:
                child.stop(reason)
                return True
        for job in self._waiting:
            if job.task_id == task_id and not job.future.done():
                self._waiting.remove(job)
                aborted = job.abort() if job.abort is not None else None
                job.future.set_result(aborted or Outcome(reason, {
                    "exception": f"FuncCancelled: the task was {reason} before it started"}))
                return True
        return False

    # --- child events ------------------------------------------------------------------------------
    def _on_message(self, child: Child, message: dict[str, Any]) -> None:
        kind = message.get("t")
        if kind == "done":
            self._on_done(child, message)
        elif kind == "rpc":
            job = child.job
            self._track(asyncio.create_task(self._serve_rpc(child, message, job)))
        elif kind == "print" and child.job is not None:
            child.job.prints.append(str(message.get("x", "")))
        elif kind == "ready" and not child.ready.done():
            child.ready.set_result(None)

    def _on_done(self, child: Child, message: dict[str, Any]) -> None:
        job = child.job
        if job is None or job.kill_reason is not None:
            return  # being stopped: the process end resolves the job
        child.job = None
        child.tasks_done += 1
        retire = message.pop("retire", None)
        if retire or child.tasks_done >= self.max_tasks:
            self._retire(child, retire or "max_tasks_per_child")
        else:
            self._child_free(child)  # its next task goes out before this one is bookkept
        self._resolve(job, Outcome(str(message.pop("status", "failure")), message))

    async def _serve_rpc(self, child: Child, message: dict[str, Any], job: Job | None) -> None:
        reply: dict[str, Any] = {"n": message.get("n")}
        try:
            value = await self._rpc(str(message.get("m")), message.get("p") or {},
                                    job.message if job else None)
            reply.update(t="ok", v=value)
        except RpcError as exc:
            reply.update(t="err", message=str(exc), kind=exc.kind)
        except Exception as exc:
            log.warning("DFF call failed", method=message.get("m"), error=repr(exc))
            reply.update(t="err", message=f"{type(exc).__name__}: {exc}")
        if child.alive and child.job is job:
            child.send(reply)

    def _retire(self, child: Child, why: str) -> None:
        """Let a child exit after its task; its replacement starts now, not at its exit."""
        child.retiring = True
        log.debug("recycling child", pid=child.pid, reason=why, tasks=child.tasks_done)
        child.send({"t": "exit"})
        child._killer = asyncio.get_running_loop().call_later(5, child.kill)
        if not self._closing:
            self._track(asyncio.create_task(self._spawn()))

    def _on_exit(self, child: Child, code: int | None) -> None:
        child.alive = False
        if child._killer is not None:
            child._killer.cancel()
        self._children.discard(child)
        job, child.job = child.job, None
        if job is not None:
            ended = self._ended(job, code)
            if job.prints:  # what it printed before it died or was stopped
                ended.fields.setdefault("printLogs", "".join(job.prints))
            self._resolve(job, ended)
        if child.retiring or not child.started:
            return  # replaced when it retired / its starter tries again
        if job is None and not self._closing:
            log.warning("idle child exited", pid=child.pid, code=code)
        if not self._closing:
            self._track(asyncio.create_task(self._spawn()))

    def _ended(self, job: Job, code: int | None) -> Outcome:
        reason = job.kill_reason
        if reason == "timeout":
            return Outcome("timeout", {"exception": f"FuncTimeout: the function ran past its timeout "
                                                    f"of {job.timeout:g} s and was stopped"})
        if reason == "memory":
            return Outcome("failure", {"exception": "MemoryError: the worker child exceeded its memory "
                                                    f"limit (max_memory_mb={self.memory_mb}) and was "
                                                    "stopped"})
        if reason == "cancelled":
            return Outcome(reason, {"exception": "FuncCancelled: the task was cancelled while it ran"})
        if reason is not None:
            return Outcome(reason, {"exception": f"FuncCancelled: the task was stopped ({reason})"})
        return Outcome("failure", {"exception": f"WorkerChildDied: {describe_exit(code)} while running "
                                                "the task"})

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
        await loop.create_unix_connection(lambda: _ChildProtocol(child), sock=ours)
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

    def _track(self, task: asyncio.Task[Any]) -> None:
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    # --- memory ---------------------------------------------------------------------------------------
    async def _watch_memory(self) -> None:
        while True:
            await asyncio.sleep(WATCH_INTERVAL)
            for child in list(self._children):
                if child.job is not None and child.rss_mb() > self.memory_mb:
                    log.warning("child over memory limit", pid=child.pid, limit_mb=self.memory_mb)
                    child.stop("memory")


def describe_exit(code: int | None) -> str:
    """``worker child process exited with code 1`` / ``… was killed by signal SIGSEGV``."""
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = str(-code)
        return f"worker child process was killed by signal {name} (exit code {code})"
    return f"worker child process exited with code {code}"
