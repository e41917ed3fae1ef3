"""``DFF.aio``: the awaitable form of every ``DFF`` call, for ``async def`` functions.

``await DFF.aio.FUNC(...)``, ``await DFF.aio.CACHE.get(key)``, ``await DFF.aio.STORE.set(...)``,
``await DFF.aio.ENV("name")`` … take the same arguments and give the same answers as the
plain members. A plain ``DFF`` call waits for the worker's answer and so holds the child's
event loop — every other async task of the child waits with it; the ``aio`` form runs the
same call on a small thread pool of the child (:data:`THREADS` threads, the calling task's
context copied: scope, call chain, masks) while the loop goes on with the other tasks. The
call itself is the same RPC to the worker: nothing differs but who waits.

Imported by the child process only: standard library.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import functools
import threading
from typing import Any

THREADS = 16  # DFF calls of one child's async tasks waiting for the worker at once

_executor: concurrent.futures.ThreadPoolExecutor | None = None
_lock = threading.Lock()


def _pool() -> concurrent.futures.ThreadPoolExecutor:
    global _executor
    with _lock:
        if _executor is None:
            _executor = concurrent.futures.ThreadPoolExecutor(THREADS, thread_name_prefix="dff-aio")
        return _executor


async def in_thread(func: Any, /, *args: Any, **kwargs: Any) -> Any:
    """``func(*args, **kwargs)`` on the aio threads, in a copy of the caller's context."""
    call = functools.partial(contextvars.copy_context().run, func, *args, **kwargs)
    return await asyncio.get_running_loop().run_in_executor(_pool(), call)


class Awaitable:
    """The awaitable mirror of one ``DFF`` member: attributes mirror its attributes, a call
    returns a coroutine of the member's call (``DFF.aio.CACHE.hget(...)``)."""

    __slots__ = ("_name", "_target")

    def __init__(self, target: Any, name: str) -> None:
        self._target = target
        self._name = name

    def __getattr__(self, name: str) -> Awaitable:
        if name.startswith("_"):
            raise AttributeError(name)
        return Awaitable(getattr(self._target, name), f"{self._name}.{name}")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if not callable(self._target):
            raise TypeError(f"{self._name} is not callable")
        return in_thread(self._target, *args, **kwargs)

    def __repr__(self) -> str:
        return f"<awaitable {self._name}>"
