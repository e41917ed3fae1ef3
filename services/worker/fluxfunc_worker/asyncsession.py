"""``async def`` tasks inside a worker child: many at once on one event loop.

The parent sends an async task (a ``run`` message with ``isAsync``) only to a child that runs
no sync task, up to ``worker.async_per_child`` of them at a time. The child's main thread
keeps reading the socket (runs, cancels, RPC replies: :mod:`~fluxfunc_worker.child`); the
:class:`AsyncSession` runs each task as an asyncio task of its own on an event loop in a
thread of the child, and answers each with its own ``done`` message. Both ways go in batches:
the runs the main thread reads while the loop is busy start in one wake-up of the loop, and
the tasks that end in one turn of the loop are answered in one socket write.

Per task, as for a sync run: the ``DFF`` context (:func:`fluxfunc_worker.sdk.current`, a
context variable, so each coroutine sees its own task), the print output (a context variable
too: ``sys.stdout`` is a :class:`PrintRouter` that writes to the capture of the task whose
coroutine prints), the report. A ``cancel`` message (the parent's timeout, a cancel, a lost
lease, the shutdown) cancels that task's coroutine only; the parent decides what the run's
outcome is.

Imported by the child process only: standard library, orjson and the sdk.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

from fluxfunc_worker import sdk
from fluxfunc_worker.messages import RunMessage, RunReport
from fluxfunc_worker.printcapture import PrintCapture
from fluxfunc_worker.runtime import Runner, describe_exception, ended, succeeded, user_traceback

_capture: contextvars.ContextVar[PrintCapture | None] = contextvars.ContextVar("dff_print", default=None)

Ended = tuple[RunMessage, RunReport, "bytes | None"]  # a task's message, report and result JSON
Finish = Callable[[list[Ended]], None]  # the tasks that ended in one turn of the loop
PrintSink = Callable[[str, str], None]  # (task id, text)


class PrintRouter:
    """``sys.stdout`` while async tasks run: each write goes to the capture of the task whose
    coroutine (or ``DFF.aio`` thread) writes; anything else to the real stdout."""

    def __init__(self, fallback: TextIO) -> None:
        self.fallback = fallback

    def write(self, text: str) -> int:
        capture = _capture.get()
        if capture is None:
            return self.fallback.write(text)
        return capture.write(text)

    def flush(self) -> None:
        if _capture.get() is None:
            self.fallback.flush()

    def isatty(self) -> bool:
        return False


class AsyncSession:
    """The child's event loop for async tasks (a daemon thread, started on first use)."""

    def __init__(self, runner: Runner, finish: Finish, print_sink: PrintSink | None = None) -> None:
        self.runner = runner
        self.finish = finish
        self.print_sink = print_sink
        self.loop = asyncio.new_event_loop()
        self.tasks: dict[str, asyncio.Task[tuple[RunReport, bytes | None]]] = {}
        # Handed over in batches: a burst of tasks wakes the loop once from the main thread,
        # and the tasks that end together are answered in one socket write.
        self._inbox: list[RunMessage | str] = []  # a task to start, or the id of one to cancel
        self._inbox_lock = threading.Lock()
        self._ended: list[Ended] = []
        self._thread = threading.Thread(target=self._serve, name="fluxfunc-async", daemon=True)
        self._thread.start()
        if not isinstance(sys.stdout, PrintRouter):
            sys.stdout = PrintRouter(sys.stdout)

    def _serve(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    # --- from the main thread ---------------------------------------------------------------
    def submit(self, message: RunMessage) -> None:
        """Start the task of ``message`` on the loop."""
        self._hand_over(message)

    def cancel(self, task_id: str) -> None:
        """Cancel one task's coroutine (its ``finally`` blocks run; it reports as usual)."""
        self._hand_over(task_id)

    def _hand_over(self, what: RunMessage | str) -> None:
        """Starts and cancels reach the loop in order, the loop woken once per batch."""
        with self._inbox_lock:
            self._inbox.append(what)
            if len(self._inbox) > 1:
                return  # the loop is woken already
        self.loop.call_soon_threadsafe(self._take_inbox)

    # --- on the loop ------------------------------------------------------------------------
    def _take_inbox(self) -> None:
        with self._inbox_lock:
            batch, self._inbox = self._inbox, []
        for what in batch:
            if isinstance(what, str):
                self._cancel(what)
            else:
                self._start(what)

    def _start(self, message: RunMessage) -> None:
        task_id = message["id"]
        task = self.loop.create_task(self.run(message), name=task_id)
        self.tasks[task_id] = task
        task.add_done_callback(lambda t: self._end(message, t))

    def _cancel(self, task_id: str) -> None:
        task = self.tasks.get(task_id)
        if task is not None:
            task.cancel()

    def _end(self, message: RunMessage, task: asyncio.Task[tuple[RunReport, bytes | None]]) -> None:
        """Answer the worker however the task ended (cancelled before it began too), with the
        other tasks that end in this turn of the loop."""
        self.tasks.pop(message["id"], None)
        try:
            report, result = task.result()
        except BaseException as exc:
            report, result = {"status": "failure", "exception": describe_exception(exc),
                              "traceback": None}, None
        if not self._ended:
            self.loop.call_soon(self._answer)
        self._ended.append((message, report, result))

    def _answer(self) -> None:
        batch, self._ended = self._ended, []
        self.finish(batch)

    async def run(self, message: RunMessage) -> tuple[RunReport, bytes | None]:
        """One async task → (outcome fields, result JSON bytes or None); runs in this task's
        own context (asyncio copies it per task)."""
        runner = self.runner
        ctx = runner.prepare(message)
        task_id = ctx.task_id
        sink = None if self.print_sink is None else _bound(self.print_sink, task_id)
        capture = PrintCapture(sink=sink, masks=ctx.masks)
        sdk.async_task.set(ctx)
        _capture.set(capture)
        started = time.time()
        result: bytes | None = None
        try:
            value: Any = runner.invoke(ctx, message.get("kwargs") or {})
            if inspect.isawaitable(value):
                value = await value
            outcome, result = succeeded(value)
        except asyncio.CancelledError:  # the parent's cancel: it writes the outcome it chose
            outcome = {"status": "failure", "exception": "CancelledError", "traceback": None}
        except Exception as exc:
            outcome = runner.failed(exc)
        except BaseException as exc:  # SystemExit …: it ends this task, not the child's loop
            outcome = {"status": "failure", "exception": describe_exception(exc),
                       "traceback": user_traceback(exc)}
        return ended(outcome, capture, ctx, started), result


def _bound(sink: PrintSink, task_id: str) -> Callable[[str], None]:
    return lambda text: sink(task_id, text)
