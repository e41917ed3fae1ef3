"""``fluxfunc-worker [--config PATH] [--queues a,b] [--concurrency N] [--check]``.

Loads the settings once (CLI flags override ``worker.queues`` / ``worker.concurrency``),
opens Redis, the store and the child pool in order (closed in reverse by an
``AsyncExitStack``), heartbeats, freezes what start-up made out of the cyclic GC, and runs
the :class:`~fluxfunc_worker.worker.Worker` until the first SIGTERM/SIGINT (second forces).
A bad config or an unreachable Redis/database is one clear line on stderr and a non-zero
exit; ``--check`` exits 0 only while this machine's worker heartbeat is fresh.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from contextlib import AsyncExitStack

from pydantic import ValidationError

from fluxfunc_common import ids
from fluxfunc_common.errors import ConfigError, FluxfuncError
from fluxfunc_common.heartbeat import heartbeat, is_fresh
from fluxfunc_common.lifecycle import Shutdown, fail, run_service, tune_gc
from fluxfunc_common.logs import LogOutput, configure_logging
from fluxfunc_common.redisconn import open_redis
from fluxfunc_common.settings import Settings, load_settings
from fluxfunc_common.store import open_store
from fluxfunc_worker.worker import Worker


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fluxfunc-worker", description="fluxfunc Worker: runs published functions from the queues"
    )
    parser.add_argument("--config", help="YAML config file (else $FLUXFUNC_CONFIG, else ./fluxfunc.yaml)")
    parser.add_argument("--queues", help="comma-separated queues in priority order (overrides worker.queues)")
    parser.add_argument("--concurrency", type=int, help="child processes (overrides worker.concurrency)")
    parser.add_argument("--check", action="store_true",
                        help="exit 0 when this machine's worker heartbeat is fresh")
    return parser


def apply_flags(settings: Settings, args: argparse.Namespace) -> Settings:
    """``--queues`` / ``--concurrency`` over the loaded settings (validated like the file)."""
    worker: dict[str, object] = {}
    if args.queues is not None:
        worker["queues"] = args.queues
    if args.concurrency is not None:
        worker["concurrency"] = args.concurrency
    if not worker:
        return settings
    try:
        return settings.with_overrides(worker=worker)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"invalid command-line option: {problems}") from None

async def serve(settings: Settings, shutdown: Shutdown, logs: LogOutput | None = None) -> int:
    """Open the resources in order, run the worker, close them in reverse."""
    instance = ids.instance_id()
    async with AsyncExitStack() as stack:
        clients = await stack.enter_async_context(open_redis(settings.redis))
        store = await stack.enter_async_context(open_store(settings.store))
        await store.ping()
        worker = Worker(settings, clients, store, instance=instance,
                        task_line=logs.info_line("worker", fast=settings.worker.fast_paths) if logs else None)
        await stack.enter_async_context(worker.pool)
        tune_gc()  # its pause (a full collection) comes before the worker says it is up
        await stack.enter_async_context(
            heartbeat(clients.main, clients.keys, "worker", instance, extra=worker.describe)
        )
        return await worker.run(shutdown)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = apply_flags(load_settings(args.config), args)
    except FluxfuncError as exc:
        return fail(exc.message)
    if args.check:
        return 0 if asyncio.run(is_fresh(settings, "worker")) else 1
    try:
        settings.require_secret()  # it decrypts password env variables: refuse a weak one now
    except FluxfuncError as exc:
        return fail(exc.message)
    logs = configure_logging(settings.log)

    async def service(shutdown: Shutdown) -> int:
        return await serve(settings, shutdown, logs)

    return run_service(service)


if __name__ == "__main__":
    sys.exit(main())
