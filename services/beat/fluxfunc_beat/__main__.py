"""`fluxfunc-beat [--config PATH] [--check]`: run the Beat, or probe its heartbeat.

``--check`` (a container healthcheck) exits 0 only while the heartbeat of the Beat started on
this machine is fresh and its main loop has run recently; otherwise one line on stderr and
exit 1 (unhealthy) or 2 (Redis unreachable, bad config). Starting with Redis or the store
unreachable also ends with one line and a non-zero exit, not a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from collections.abc import Sequence
from contextlib import AsyncExitStack

from redis.exceptions import RedisError

from fluxfunc_beat.beat import Beat
from fluxfunc_common import ids
from fluxfunc_common.errors import FluxfuncError, Unavailable
from fluxfunc_common.heartbeat import heartbeat, local_instances
from fluxfunc_common.keys import Keys
from fluxfunc_common.lifecycle import Shutdown, fail, run_service
from fluxfunc_common.logs import configure_logging, get_logger
from fluxfunc_common.redisconn import describe, make_client, open_redis
from fluxfunc_common.settings import Settings, load_settings
from fluxfunc_common.store import open_store

MIN_LOOP_STALE_SECONDS = 60.0


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


async def check(settings: Settings) -> str | None:
    """None when healthy, else why not; raises Unavailable when Redis does not answer."""
    ns = settings.redis.namespace
    instances = local_instances("beat", ns)
    if not instances:
        return "no Beat is running on this machine (no live state file)"
    client = make_client(settings.redis)
    try:
        raws = [await client.get(Keys(ns).svc("beat", instance)) for instance in instances]
    except (RedisError, OSError) as exc:
        raise Unavailable(f"Redis unreachable at {describe(settings.redis)}: {exc}") from None
    finally:
        await client.aclose()
    stale = max(MIN_LOOP_STALE_SECONDS, 4 * settings.beat.lease_seconds)
    for instance, raw in zip(instances, raws, strict=True):
        if raw is None:
            return f"the heartbeat of Beat {instance} is missing or expired"
        loop_time = json.loads(raw).get("loopTime")
        if loop_time is not None and time.time() - float(loop_time) > stale:
            idle = time.time() - float(loop_time)
            return f"Beat {instance} is alive but its main loop has not run for {idle:.0f}s"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = load_settings(args.config)
    except FluxfuncError as exc:
        return fail(exc.message)
    if args.check:
        try:
            problem = asyncio.run(check(settings))
        except FluxfuncError as exc:
            return fail(exc.message)
        if problem:
            print(f"fluxfunc-beat: unhealthy: {problem}", file=sys.stderr, flush=True)
            return 1
        return 0
    configure_logging(settings.log)

    async def service(shutdown: Shutdown) -> int:
        return await serve(settings, shutdown)

    return run_service(service)


if __name__ == "__main__":
    sys.exit(main())
