"""``DFF.THREAD``: a thread pool inside the worker child, for one task at a time (as in
DataFlux Func: no new task per call).

``submit(fn, *args, **kwargs)`` returns a key; ``get_result(key, wait=True)`` a
:class:`ThreadResult` (``key``, ``value``, ``error``) or None; ``get_all_results(wait=True)``
all of them; ``pop_result(wait=True)`` removes and returns the first finished one (None when
nothing was submitted, or nothing has finished and ``wait`` is False);
``wait_all_finished()``; ``set_pool_size(n)`` before the first submit (default 5);
``is_all_finished`` and ``pool_size`` are properties.

The pool belongs to the running task: waits never reach past the task's deadline (a result
not there by then is an error, ``TimeoutError``), and when the task ends, calls not started
are cancelled and the ones running are waited for — up to the deadline, when the worker stops
the child; a child that still has a running thread after its task retires (a new child takes
the next task), so no thread outlives its task.

Imported by the child process only: standard library.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import time
from collections.abc import Callable, Iterable
from typing import Any

DEFAULT_POOL_SIZE = 5


class ThreadResult:
    """One call's outcome: its ``value``, or the exception it raised as ``error``."""

    def __init__(self, key: str, value: Any = None, error: BaseException | None = None) -> None:
        self.key = key
        self.value = value
        self.error = error

    def __repr__(self) -> str:
        return f"ThreadResult(key={self.key!r}, value={self.value!r}, error={self.error!r})"


class ThreadHelper:
    """The ``DFF.THREAD`` of the child (one object shared by every script module)."""

    def __init__(self) -> None:
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._size: int | None = None
        self._futures: dict[str, concurrent.futures.Future[Any]] = {}
        self._counter = itertools.count(1)
        self._deadline: float | None = None  # time.monotonic() of the task's timeout
        self._prefix = "thread-result"
        self.in_async: Callable[[], bool] = lambda: False  # set by the sdk: an async task calls

    # --- the task's lifetime (the runtime calls these) ----------------------------------------
    def start(self, task_id: str, timeout: float | None) -> None:
        """A task begins: no pool yet, results keyed under the task id."""
        self.finish()
        self._deadline = time.monotonic() + timeout if timeout else None
        self._prefix = f"thread-result-{task_id}"

    def finish(self) -> bool:
        """The task ended: cancel what has not started, wait (to the deadline) for the rest;
        False when a thread is still running (the child then retires: no thread outlives
        its task's child)."""
        pool, self._pool = self._pool, None
        self._futures = {}
        self._size = None
        if pool is None:
            return True
        pool.shutdown(wait=False, cancel_futures=True)
        threads = list(getattr(pool, "_threads", ()))
        for thread in threads:
            thread.join(self._left())
        return not any(thread.is_alive() for thread in threads)

    def _left(self) -> float | None:
        return None if self._deadline is None else max(0.0, self._deadline - time.monotonic())

    # --- DataFlux Func's API ------------------------------------------------------------------
    @property
    def is_all_finished(self) -> bool:
        return all(f.done() for f in self._futures.values())

    @property
    def pool_size(self) -> int | None:
        return self._size

    def set_pool_size(self, pool_size: int) -> None:
        """The number of threads; ignored once the pool exists (after the first submit)."""
        try:
            size = int(pool_size)
        except (TypeError, ValueError):
            size = 0
        if size <= 0:
            raise ValueError("Invalid pool size, should be an integer which is greater than 0")
        if self._pool is None:
            self._size = size

    def create_pool(self) -> None:
        if self._pool is None:
            size = self._size or DEFAULT_POOL_SIZE
            self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=size,
                                                               thread_name_prefix="dff-thread")
            self._size = size

    def submit(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> str:
        """Run ``fn(*args, **kwargs)`` in the pool; the key of its result."""
        if self.in_async():  # the pool belongs to the one sync task of the child
            raise RuntimeError("DFF.THREAD is for sync functions; in an async def use asyncio "
                               "(asyncio.gather, asyncio.to_thread) or DFF.aio")
        if self._deadline is not None and self._left() == 0:
            raise TimeoutError("DFF.THREAD: the task's time is up; nothing more can be submitted")
        self.create_pool()
        assert self._pool is not None
        key = f"{self._prefix}-{next(self._counter)}"
        self._futures[key] = self._pool.submit(fn, *args, **kwargs)
        return key

    def get_result(self, key: str, wait: bool = True) -> ThreadResult | None:
        """The result of ``key`` (None for an unknown key, or one not done with ``wait=False``)."""
        return self._collect([str(key)], wait).get(str(key)) if self._futures else None

    def get_all_results(self, wait: bool = True) -> list[ThreadResult | None]:
        """Every result in submit order (None for one not done with ``wait=False``)."""
        return list(self._collect(list(self._futures), wait).values())

    def pop_result(self, wait: bool = True) -> ThreadResult | None:
        """Remove and return the first finished result."""
        if not self._futures:
            return None
        done = next((k for k, f in self._futures.items() if f.done()), None)
        if done is None and wait:
            finished, _ = concurrent.futures.wait(list(self._futures.values()), timeout=self._left(),
                                                  return_when=concurrent.futures.FIRST_COMPLETED)
            done = next((k for k, f in self._futures.items() if f in finished), None)
            if done is None:
                raise TimeoutError("DFF.THREAD: no result before the task's deadline")
        if done is None:
            return None
        return _outcome(done, self._futures.pop(done), None)

    def wait_all_finished(self) -> None:
        self._collect(list(self._futures), True)

    def _collect(self, keys: Iterable[str], wait: bool) -> dict[str, ThreadResult | None]:
        collected: dict[str, ThreadResult | None] = {}
        for key in keys:
            future = self._futures.get(key)
            if future is None or (not wait and not future.done()):
                collected[key] = None
                continue
            collected[key] = _outcome(key, future, self._left() if wait else 0)
        return collected


def _outcome(key: str, future: concurrent.futures.Future[Any], timeout: float | None) -> ThreadResult:
    try:
        return ThreadResult(key, future.result(timeout=timeout))
    except concurrent.futures.TimeoutError:
        return ThreadResult(key, None, TimeoutError("DFF.THREAD: no result before the task's deadline"))
    except concurrent.futures.CancelledError as exc:
        return ThreadResult(key, None, exc)
    except Exception as exc:
        return ThreadResult(key, None, exc)


THREAD = ThreadHelper()
"""The child's one pool (a child runs one task at a time)."""
