"""``fluxfunc-server [--config PATH] [--port N] [--processes N] [--check]``: serve the HTTP API
on uvloop.

With more than one process (``--processes``, ``server.processes``, default one per core) this
process supervises N server processes that share the port (:mod:`fluxfunc_server.processes`).

Shutdown (first SIGTERM/SIGINT): stop accepting connections, let in-flight requests finish
within ``server.shutdown_seconds``, then close the waiter, the store and Redis. A second
signal stops at once. Connections are bounded in time (:mod:`fluxfunc_server.deadlines`).
It listens on ``server.host``: every interface (``0.0.0.0``) unless set, right in a container
behind the network's own boundary (``fluxfunc up`` sets 127.0.0.1). A bad config, or
Redis/SQL unreachable at start, is one line on stderr and a non-zero exit (2 = config, 3 = a
dependency is unavailable).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
from collections.abc import Sequence

from aiohttp import web

from fluxfunc_common.errors import FatalError
from fluxfunc_common.heartbeat import is_fresh
from fluxfunc_common.lifecycle import Shutdown, run_service, tune_gc
from fluxfunc_common.logs import configure_logging, get_logger
from fluxfunc_common.settings import Settings, load_settings
from fluxfunc_server.processes import child_command, notify_ready, process_count, supervise


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="fluxfunc-server", description="fluxfunc HTTP server")
    parser.add_argument("--config", help="YAML config file (else $FLUXFUNC_CONFIG, ./fluxfunc.yaml)")
    parser.add_argument("--port", type=int, help="listen on this port (overrides server.port)")
    parser.add_argument("--processes", type=_positive, help=(
        "server processes sharing the port (overrides server.processes; default one per core)"))
    parser.add_argument("--ready-fd", type=int, help=argparse.SUPPRESS)  # set by the supervisor
    parser.add_argument("--check", action="store_true",
                        help="exit 0 when this machine's server heartbeat is fresh, else 1")
    return parser.parse_args(argv)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def settings_from(args: argparse.Namespace) -> Settings:
    settings = load_settings(args.config)
    if args.port is not None:
        settings = settings.with_overrides(server={"port": args.port})
    return settings


async def serve(settings: Settings, shutdown: Shutdown, *, ready_fd: int | None = None) -> int:
    """Run the app until the first signal, then drain and close. Under a supervisor
    (``ready_fd`` set) the port is shared (``SO_REUSEPORT``) and "listening" is reported on
    ``ready_fd``."""
    from fluxfunc_server.app import create_app

    log = get_logger("server")
    runner = web.AppRunner(create_app(settings), access_log=None,
                           shutdown_timeout=settings.server.shutdown_seconds,
                           keepalive_timeout=settings.server.keepalive_timeout)
    try:
        await runner.setup()  # opens Redis, store, groups, waiter, heartbeat (or raises)
    except BaseException:
        await runner.cleanup()  # close what did open, in reverse, before the error is reported
        raise
    try:
        site = web.TCPSite(runner, settings.server.host, settings.server.port, backlog=1024,
                           reuse_port=ready_fd is not None or None)
        try:
            await site.start()
        except OSError as exc:
            raise FatalError(f"cannot listen on {settings.server.host}:{settings.server.port}: "
                             f"{exc.strerror}") from None
        tune_gc()  # its pause (a full collection) comes before the server says it is ready
        log.info("listening", host=settings.server.host, port=settings.server.port)
        notify_ready(ready_fd)
        await shutdown.wait()
        log.info("stopping", drain_seconds=settings.server.shutdown_seconds)
    finally:
        cleanup = asyncio.ensure_future(runner.cleanup())
        forced = asyncio.ensure_future(shutdown.forced.wait())
        await asyncio.wait({cleanup, forced}, return_when=asyncio.FIRST_COMPLETED)
        forced.cancel()
        if not cleanup.done():
            log.warning("second signal: stopping now")
            cleanup.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await cleanup
    log.info("stopped")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)

    async def service(shutdown: Shutdown) -> int:
        settings = settings_from(args)
        if args.check:
            return 0 if await is_fresh(settings, "server") else 1
        configure_logging(settings.log)
        count = process_count(args.processes, settings)
        if args.ready_fd is None and count > 1:
            return await supervise(child_command(argv), count, settings, shutdown)
        return await serve(settings, shutdown, ready_fd=args.ready_fd)

    return run_service(service)


if __name__ == "__main__":
    sys.exit(main())
