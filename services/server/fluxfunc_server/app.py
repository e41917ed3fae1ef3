"""The Server application: ``create_app(settings)``.

Resources are opened through aiohttp's ``cleanup_ctx``, in this order, and closed in reverse
(a resource is closed only if it was opened): Redis clients → store (migrated when
``store.auto_migrate``) → consumer groups of ``worker.queues`` → the reply waiter → the
``server`` heartbeat. On shutdown aiohttp first stops listening and lets in-flight requests
finish (the runner's ``shutdown_timeout``), then runs this teardown, so sync calls still
waiting keep their waiter until they are answered.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from fluxfunc_common import ids
from fluxfunc_common.crypto import cipher_for
from fluxfunc_common.heartbeat import heartbeat
from fluxfunc_common.redisconn import open_redis
from fluxfunc_common.settings import Settings
from fluxfunc_common.store import open_store
from fluxfunc_common.streams import StreamProtocol
from fluxfunc_server import console, openapi
from fluxfunc_server.appkeys import CALL_LIMITS, CALLER, CATALOG, CTX, REDIS, SETTINGS
from fluxfunc_server.auditing import audit_middleware
from fluxfunc_server.bodies import BodyLimits
from fluxfunc_server.caller import Caller
from fluxfunc_server.catalog import DEFAULT_TTL, Catalog
from fluxfunc_server.context import AppContext
from fluxfunc_server.deadlines import make_body_deadline
from fluxfunc_server.files import upload_target
from fluxfunc_server.handlers import (
    api_auths,
    audit,
    auth,
    connectors,
    credentials,
    draft_run,
    invoke,
    locks,
    manage,
    ops,
    ping,
    python_packages,
    resources,
    tasks,
    transfer,
    users,
)
from fluxfunc_server.handlers.reading import MB
from fluxfunc_server.middlewares import make_error_middleware
from fluxfunc_server.routing import access_middleware
from fluxfunc_server.waiter import ReplyWaiter


def create_app(settings: Settings, *, server_id: str | None = None,
               catalog_ttl: float = DEFAULT_TTL) -> web.Application:
    """The aiohttp application of one Server process (nothing is opened until startup).

    ``catalog_ttl`` is how long an entry point or func read from the store is reused by
    invocations (tests use 0: every call sees the latest management change)."""
    max_bytes = int(settings.server.max_body_mb * MB)
    app = web.Application(client_max_size=max_bytes,
                          middlewares=[make_error_middleware(max_bytes),
                                       make_body_deadline(settings.server.body_timeout),
                                       audit_middleware, access_middleware])
    app[SETTINGS] = settings
    app[CALL_LIMITS] = BodyLimits(max_bytes, settings.server.max_json_depth,
                                  uploads=upload_target(settings.resources))
    instance = server_id or ids.instance_id()
    cipher = cipher_for(settings)  # a missing secret fails before anything opens

    async def redis_clients(app: web.Application) -> AsyncIterator[None]:
        async with open_redis(settings.redis) as clients:
            app[REDIS] = clients
            yield

    async def store(app: web.Application) -> AsyncIterator[None]:
        clients = app[REDIS]
        async with open_store(settings.store) as opened:
            streams = StreamProtocol(clients.main, clients.keys, blocking=clients.blocking)
            ctx = AppContext(settings=settings, redis=clients.main, keys=clients.keys,
                             streams=streams, store=opened, cipher=cipher, server_id=instance,
                             waiter=ReplyWaiter(streams, instance))
            app[CTX] = ctx
            app[CATALOG] = Catalog(opened, ttl=catalog_ttl)
            app[CALLER] = Caller(ctx)
            yield

    async def consumer_groups(app: web.Application) -> AsyncIterator[None]:
        await app[CTX].streams.ensure_groups(settings.worker.queues)
        yield

    async def reply_waiter(app: web.Application) -> AsyncIterator[None]:
        waiter = app[CTX].waiter
        await waiter.start()
        try:
            yield
        finally:
            await waiter.stop()

    async def server_heartbeat(app: web.Application) -> AsyncIterator[None]:
        ctx = app[CTX]

        def extra() -> dict[str, int]:
            return {"port": settings.server.port, "syncWaiting": ctx.waiter.pending}

        async with heartbeat(ctx.redis, ctx.keys, "server", ctx.server_id, extra=extra):
            yield

    app.cleanup_ctx.extend([redis_clients, store, consumer_groups, reply_waiter, server_heartbeat])
    add_routes(app)
    return app


def add_routes(app: web.Application) -> None:
    """Every route of the Server, each with its access (:mod:`fluxfunc_server.routing`):
    invocation, tasks, management, ops, and last the OpenAPI document of them all."""
    invoke.add_routes(app)
    tasks.add_routes(app)
    manage.add_routes(app)
    ops.add_routes(app)
    credentials.add_routes(app)
    ping.add_routes(app)
    resources.add_routes(app)
    python_packages.add_routes(app)
    transfer.add_routes(app)  # export / import
    connectors.add_routes(app)  # DFF.CONN connectors
    api_auths.add_routes(app)  # reusable API auth definitions
    auth.add_routes(app)  # console sign-in, sign-out, me, password
    users.add_routes(app)  # console users
    audit.add_routes(app)  # the audit log
    locks.add_routes(app)  # scripts' editing locks
    draft_run.add_routes(app)  # running a script's draft (the console's Run panel)
    console.add_routes(app)  # the web console's static files (public)
    openapi.add_routes(app)
