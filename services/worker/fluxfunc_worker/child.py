"""The worker child process: ``python -m fluxfunc_worker.child FD MEMORY_MB PARENT_PID``, or
forked by the :mod:`zygote` (:func:`run_child`).

Either way a fresh interpreter state (no inherited Redis sockets, event loop or threads of
the worker) with one end of a socketpair as ``FD``. It runs sync tasks one at a time, in its
main thread, or ``async def`` tasks many at a time on an event loop
(:mod:`~fluxfunc_worker.asyncsession`) — never both at once (the parent sees to it) — and
asks the parent for anything that needs Redis or SQL (:class:`RpcClient`).

Signals: SIGINT/SIGTERM are ignored (a Ctrl-C or ``kill`` sent to the whole process group
must not end running tasks: the parent drains and decides); SIGUSR1 is the parent's "stop
now" (raises :class:`Stop` in the user's code so ``finally`` blocks run; SIGKILL follows
after a grace). The child dies with its parent (``PR_SET_PDEATHSIG``) so a SIGKILLed
worker leaves no orphan finishing a task that another worker now owns.
"""

from __future__ import annotations

import contextlib
import ctypes
import itertools
import os
import resource
import signal
import socket
import sys
import threading
from collections import deque
from collections.abc import Callable
from types import FrameType
from typing import cast

import orjson

from fluxfunc_worker import sdk, sitepath
from fluxfunc_worker.asyncsession import AsyncSession, Ended
from fluxfunc_worker.ipc import BlockingChannel
from fluxfunc_worker.messages import (
    DoneMessage,
    JSONObject,
    RpcCall,
    RpcReply,
    RunMessage,
    RunReport,
    ToChild,
)
from fluxfunc_worker.modcache import ScriptCache
from fluxfunc_worker.runtime import Runner, install_finder

PR_SET_PDEATHSIG = 1
READ_POLL = 0.1  # seconds a DFF call waits before it looks again at who reads the socket
PR_SET_NAME = 15
M_ARENA_MAX = -8  # mallopt parameter (glibc)
NAME = b"fluxfunc-child"


class Stop(BaseException):
    """The parent asked this child to stop (timeout, cancel, lost lease, memory)."""


class RpcClient:
    """Calls to the parent over the child's socket, from any thread of the child.

    While the main thread waits for the parent's next message (:attr:`listening`: between
    tasks, and all the time async tasks run) it reads every frame and hands each reply to its
    caller (:meth:`deliver`); while it runs a sync task, the calling thread reads the socket
    itself until its reply comes (one reader at a time)."""

    def __init__(self, channel: BlockingChannel) -> None:
        self.channel = channel
        self.listening = False
        self._read_lock = threading.Lock()
        self._seq = itertools.count(1)
        self._waiters: dict[int, Callable[[RpcReply], None]] = {}
        self._inbox: deque[ToChild] = deque()  # messages for the main thread another one read

    def call(self, method: str, params: JSONObject) -> object:
        box: list[RpcReply] = []
        arrived = threading.Event()

        def put(reply: RpcReply) -> None:
            box.append(reply)
            arrived.set()

        self._send(method, params, put)
        while not arrived.is_set():
            # a thread that finds the main thread listening (it holds the lock while it waits
            # for a frame) gets its reply from it; else it reads the socket itself
            if not self.listening and self._read_lock.acquire(timeout=READ_POLL):
                try:
                    if not arrived.is_set():
                        self._dispatch(self.channel.receive())
                finally:
                    self._read_lock.release()
            else:
                arrived.wait(READ_POLL)
        return _value(box[0])

    def _send(self, method: str, params: JSONObject, waiter: Callable[[RpcReply], None]) -> None:
        try:
            # encoded here, once: the frame embeds it as is (and a bad value fails in the caller)
            payload = orjson.Fragment(orjson.dumps(params, option=orjson.OPT_NON_STR_KEYS))
        except TypeError as exc:
            raise sdk.DFFError(f"DFF call {method}: value is not JSON-serialisable ({exc})") from None
        seq = next(self._seq)
        self._waiters[seq] = waiter
        call: RpcCall = {"type": "rpc", "seq": seq, "method": method, "params": cast(JSONObject, payload)}
        running = sdk.async_task.get()
        if running is not None:  # the parent serves it with that task's context
            call["task"] = running.task_id
        self.channel.send(call)

    def receive(self) -> ToChild | None:
        """The main thread's next message that is not a reply (replies go to their callers)."""
        with self._read_lock:
            while True:
                message = self._inbox.popleft() if self._inbox else self.channel.receive()
                if message is None or (message["type"] != "ok" and message["type"] != "err"):
                    return message
                self.deliver(message)

    def _dispatch(self, message: ToChild | None) -> None:
        if message is None:
            os._exit(0)  # the parent is gone
        if message["type"] == "ok" or message["type"] == "err":
            self.deliver(message)
        else:
            self._inbox.append(message)

    def deliver(self, reply: RpcReply) -> None:
        waiter = self._waiters.pop(reply["seq"], None)
        if waiter is not None:
            waiter(reply)


def _value(reply: RpcReply) -> object:
    if reply["type"] == "err":
        error = sdk.FuncCallError if reply.get("kind") == "func" else sdk.DFFError
        raise error(reply.get("message") or "DFF call failed")
    return reply["value"]


def die_with_parent(parent_pid: int) -> None:
    """SIGKILL this process when its parent ends; exit now if the parent is already gone."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:
        os._exit(0)


def set_name(name: bytes) -> None:
    """The process name ``ps``/``top``/psutil show (``comm``, 15 bytes at most)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).prctl(PR_SET_NAME, ctypes.c_char_p(name[:15]), 0, 0, 0)


def _limit_memory(memory_mb: int) -> None:
    """RLIMIT_AS = what this process maps now + the limit: big allocations raise MemoryError."""
    if memory_mb <= 0:
        return
    with contextlib.suppress(Exception):
        # one malloc arena for every thread: each extra arena reserves 64 MB of address
        # space, which the event loop's and DFF.aio's / DFF.THREAD's threads would otherwise
        # take out of the limit (CPython's own allocator needs no per-thread arenas)
        ctypes.CDLL(None).mallopt(M_ARENA_MAX, 1)
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[0])
        base = pages * os.sysconf("SC_PAGE_SIZE")
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        soft = base + memory_mb * 1024 * 1024
        if hard != resource.RLIM_INFINITY:
            soft = min(soft, hard)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    except (OSError, ValueError):
        pass


def _stop(signum: int, frame: FrameType | None) -> None:
    raise Stop()


def peak_rss_mb() -> float:
    """High-water resident size of this process in MB (ru_maxrss is KB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def serve(fd: int, memory_mb: int, parent_pid: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGUSR1, _stop)
    die_with_parent(parent_pid)
    set_name(NAME)
    channel = BlockingChannel(socket.socket(fileno=fd))
    rpc = RpcClient(channel)
    sdk.backend = rpc
    cache = ScriptCache(lambda script_id: _fetch_script(rpc, script_id))
    install_finder(cache)
    # each printed line also goes to the worker at once: it outlives a crash of this process
    runner = Runner(cache, memory_limit_mb=memory_mb or None,
                    print_sink=lambda text: channel.send({"type": "print", "text": text}))
    _limit_memory(memory_mb)
    channel.send({"type": "ready", "pid": os.getpid()})
    session: AsyncSession | None = None
    while True:
        rpc.listening = True
        message = rpc.receive()
        if message is None or message["type"] == "exit":
            return
        if message["type"] == "run":
            sitepath.use(message.get("pkgs"))
            if message.get("isAsync"):
                if session is None:
                    session = _session(runner, channel, memory_mb)
                session.submit(message)
                continue
            rpc.listening = False  # this thread runs the task: callers read their own replies
            channel.send(_done(message, *runner.run(message), memory_mb))
        elif message["type"] == "cancel" and session is not None:
            session.cancel(message["id"])


def _session(runner: Runner, channel: BlockingChannel, memory_mb: int) -> AsyncSession:
    """The event loop of this child's async tasks (docs/worker.md, Async functions)."""
    def finish(ended: list[Ended]) -> None:
        peak_mb = peak_rss_mb() if memory_mb else 0.0  # once for the tasks that ended together
        channel.send_many([_done(message, report, result, memory_mb, peak_mb)
                           for message, report, result in ended])

    def printed(task_id: str, text: str) -> None:
        channel.send({"type": "print", "text": text, "id": task_id})

    return AsyncSession(runner, finish, printed)


def _done(message: RunMessage, report: RunReport, result: bytes | None, memory_mb: int,
          peak_mb: float | None = None) -> DoneMessage:
    """The ``done`` answer to ``message``: the run's report, its result as pre-encoded JSON, and
    whether this child retires (it hit or came near its memory limit; ``peak_mb``: the
    process's high-water resident size if just measured)."""
    done = cast(DoneMessage, report)  # completed in place: no copy per task
    done["type"] = "done"
    done["id"] = message["id"]
    if memory_mb and (done.pop("memory", False) or (peak_mb or peak_rss_mb()) > memory_mb):
        done["retire"] = "memory"
    if result is not None:
        done["result"] = orjson.Fragment(result)
    return done


def _fetch_script(rpc: RpcClient, script_id: str) -> tuple[str, int] | None:
    found = rpc.call("script", {"scriptId": script_id})
    if not isinstance(found, list) or len(found) != 2:
        return None
    code, version = found
    return str(code), int(version)


def run_child(fd: int, memory_mb: int, parent_pid: int) -> None:
    """Serve until told to exit or the parent goes away, then end the process."""
    with contextlib.suppress(Stop, BrokenPipeError, ConnectionResetError, KeyboardInterrupt):
        serve(fd, memory_mb, parent_pid)
    with contextlib.suppress(Exception):
        sdk.close_connectors()  # DFF.CONN clients of this child
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    os._exit(0)


def main() -> None:
    fd, memory_mb, parent_pid = (int(a) for a in sys.argv[1:4])
    run_child(fd, memory_mb, parent_pid)


if __name__ == "__main__":
    main()
