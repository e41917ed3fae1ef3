"""Process lifecycle shared by the three services.

The sequence (docs/operations.md, "Failures and recovery"): signal → stop fetching → drain
within a deadline → release what is left → close resources. :func:`run_service` owns the event
loop, installs SIGTERM/SIGINT handlers (first signal stops gracefully, second forces), and turns
startup errors into one clear line and a non-zero exit code instead of a traceback wall.

Every loop that sleeps between rounds and must end promptly on a stop event sleeps with
:func:`sleep_or_stop` (or runs its rounds with :func:`every`): one way to sleep interruptibly.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import sys
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from fluxfunc_common.errors import FatalError, FluxfuncError, RetryableError


class Shutdown:
    """Signals from the outside world: ``stopping`` after the first, ``forced`` after the second."""

    def __init__(self) -> None:
        self.stopping = asyncio.Event()
        self.forced = asyncio.Event()

    def request(self) -> None:
        if self.stopping.is_set():
            self.forced.set()
        self.stopping.set()

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.request)

    async def wait(self) -> None:
        await self.stopping.wait()


ServiceMain = Callable[[Shutdown], Coroutine[Any, Any, int | None]]


GC_YOUNG_THRESHOLD = 10_000  # allocations between young collections (Python's default: 700)


def tune_gc() -> None:
    """For a long-running service, once it has started: what start-up made (modules,
    settings, pools) lives as long as the process, so it is frozen out of the cyclic GC, whose
    full passes over it a burst of thousands of requests or tasks in flight would set off again
    and again; and young passes come every 10,000 allocations, not 700."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])


def _use_uvloop() -> None:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        return
    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())


def fail(message: str, code: int = 2) -> int:
    """Print one clear line for the operator and return the exit code."""
    print(f"fluxfunc: error: {message}", file=sys.stderr, flush=True)
    return code


def run_service(main: ServiceMain, *, uvloop: bool = True) -> int:
    """Run ``main(shutdown)`` until it returns; map known errors to one line and exit code."""
    if uvloop:
        _use_uvloop()

    async def runner() -> int:
        shutdown = Shutdown()
        shutdown.install(asyncio.get_running_loop())
        return (await main(shutdown)) or 0

    try:
        return asyncio.run(runner())
    except FatalError as exc:
        return fail(exc.message)
    except RetryableError as exc:
        return fail(exc.message, 3)
    except FluxfuncError as exc:
        return fail(exc.message)
    except KeyboardInterrupt:
        return 130


async def drain(tasks: set[asyncio.Task[Any]], deadline: float) -> set[asyncio.Task[Any]]:
    """Wait up to ``deadline`` seconds for ``tasks``; return the ones still running."""
    if not tasks:
        return set()
    _, pending = await asyncio.wait(tasks, timeout=max(deadline, 0))
    return pending


async def sleep_or_stop(stop: asyncio.Event, seconds: float) -> bool:
    """Sleep ``seconds`` or until ``stop`` is set, whichever comes first; True when ``stop`` is
    set. A zero or negative ``seconds`` still yields to the event loop once."""
    if stop.is_set():
        return True
    if seconds <= 0:
        await asyncio.sleep(0)
    else:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=seconds)
    return stop.is_set()


async def every(
    interval: float, step: Callable[[], Awaitable[object]], stop: asyncio.Event, *, first: bool = True
) -> None:
    """Call ``step`` every ``interval`` seconds (start to start) until ``stop`` is set; errors are
    logged and do not end it. ``first=False`` waits one interval before the first call."""
    from fluxfunc_common.logs import get_logger

    log = get_logger("lifecycle")
    if not first and await sleep_or_stop(stop, interval):
        return
    while not stop.is_set():
        started = time.monotonic()
        try:
            await step()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a periodic chore must survive a bad round
            log.warning("periodic step failed", step=getattr(step, "__name__", "?"), error=str(exc))
        await sleep_or_stop(stop, interval - (time.monotonic() - started))
