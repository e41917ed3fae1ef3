"""`fluxfunc-beat [--config PATH] [--check]`: run the Beat, or probe its heartbeat."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from contextlib import AsyncExitStack

from fluxfunc_beat.beat import Beat
from fluxfunc_common import ids
from fluxfunc_common.errors import FluxfuncError
from fluxfunc_common.heartbeat import heartbeat, is_fresh
from fluxfunc_common.lifecycle import Shutdown, fail, run_service
from fluxfunc_common.logs import configure_logging, get_logger
from fluxfunc_common.redisconn import open_redis
from fluxfunc_common.settings import Settings, load_settings
from fluxfunc_common.store import open_store


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fluxfunc-beat", description="fluxfunc Beat: cron jobs, delayed tasks, clean-up"
    )
    parser.add_argument("--config", help="YAML config file (else $FLUXFUNC_CONFIG, else ./fluxfunc.yaml)")
    parser.add_argument("--check", action="store_true",
                        help="exit 0 when this machine's Beat heartbeat is fresh")
    return parser


async def serve(settings: Settings, shutdown: Shutdown) -> int:
    """Open Redis and the store, heartbeat, and run the Beat until the first signal."""
    log = get_logger("beat")
    instance = ids.instance_id()
    async with AsyncExitStack() as stack:
        clients = await stack.enter_async_context(open_redis(settings.redis))
        store = await stack.enter_async_context(open_store(settings.store))
        beat = Beat(settings, clients, store, instance=instance)
        await stack.enter_async_context(
            heartbeat(clients.main, clients.keys, "beat", instance, extra=beat.describe)
        )
        log.info("started", instance=instance, lease_seconds=settings.beat.lease_seconds)
        await beat.run(shutdown.stopping)
        log.info("stopped", instance=instance, fired=beat.fired)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(args.config)
    except FluxfuncError as exc:
        return fail(exc.message)
    if args.check:
        return 0 if asyncio.run(is_fresh(settings, "beat")) else 1
    configure_logging(settings.log)

    async def service(shutdown: Shutdown) -> int:
        return await serve(settings, shutdown)

    return run_service(service)


if __name__ == "__main__":
    sys.exit(main())
