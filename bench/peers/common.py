"""What every adapter and driver shares: settings from the environment, the client interface.

``compare.py`` passes everything through environment variables so that the same adapter
module works as a worker settings module (arq, saq, Celery import it by name), inside the
peer front and inside the throughput driver:

- ``BENCH_REDIS_URL``: the private Redis of this run;
- ``BENCH_CONCURRENCY``: tasks one worker process runs at a time (same for every system);
- ``BENCH_ARQ_POLL``: arq's poll delay in seconds (``arq-default``: 0.5, else 0.01);
- ``BENCH_FF_URL`` / ``BENCH_FF_TOKEN`` / ``BENCH_FF_NS``: fluxfunc's Server, admin token and
  Redis namespace (fluxfunc only).
"""

from __future__ import annotations

import asyncio
import importlib
import os
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

SYSTEMS = ("fluxfunc", "arq", "saq", "celery", "arq-default")
# Systems that are another configuration of an adapter.
MODULES = {"arq-default": "arq"}

# The per-call timeout every client waits for one result, far above any sane latency.
CALL_TIMEOUT = 30.0


def redis_url() -> str:
    return os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")


def concurrency() -> int:
    return int(os.environ.get("BENCH_CONCURRENCY", "4"))


class Client(Protocol):
    """How the driver and the front talk to one system."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def enqueue(self, x: Any) -> str:
        """Queue one no-op task; return its id."""

    async def enqueue_many(self, xs: list[Any]) -> list[str]:
        """Queue many tasks as fast as the library allows; return their ids in order."""

    async def call(self, x: Any) -> Any:
        """Queue one task and wait for its result."""

    async def missing(self, ids: list[str]) -> list[str]:
        """The ids among ``ids`` whose result is not available yet (one or few round trips)."""


async def enqueue_concurrently(enqueue: Callable[[Any], Awaitable[str]], xs: list[Any],
                               chunk: int = 100) -> list[str]:
    """For a system with no bulk enqueue: what a user gets fastest, ``chunk`` calls at once."""
    ids: list[str] = []
    for i in range(0, len(xs), chunk):
        ids += await asyncio.gather(*(enqueue(x) for x in xs[i:i + chunk]))
    return ids


def load_client(system: str) -> Client:
    """The ``Client`` of ``system`` (its module is imported only now)."""
    if system not in SYSTEMS:
        raise SystemExit(f"unknown system {system!r}; choose from {', '.join(SYSTEMS)}")
    module = importlib.import_module(f"{MODULES.get(system, system)}_app")
    client: Client = module.Client()
    return client
