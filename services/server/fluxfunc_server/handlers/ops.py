"""Ops and health (SPEC §4.4): overview, dead letters, Prometheus metrics, probes.

``/healthz`` answers while the process runs; ``/readyz`` only when Redis and the store do;
``HEAD /`` is for load balancers. ``/metrics`` is unauthenticated, as Prometheus expects
(put it behind the network, not the internet). Queue figures come from
:mod:`fluxfunc_common.inspect`, the same code ``fluxfunc streams`` prints.
"""

from __future__ import annotations

import json
from contextlib import suppress
from typing import Any

from aiohttp import web
from redis.exceptions import RedisError

from fluxfunc_common import inspect
from fluxfunc_common.errors import FluxfuncError, NotFound, Unavailable
from fluxfunc_common.heartbeat import list_services
from fluxfunc_common.logs import get_logger
from fluxfunc_common.redisconn import ping as redis_ping
from fluxfunc_common.streams import is_entry_id
from fluxfunc_common.taskstats import read_task_stats
from fluxfunc_server import schemas
from fluxfunc_server.adminauth import require_admin
from fluxfunc_server.context import CTX, AppContext
from fluxfunc_server.metrics import CONTENT_TYPE
from fluxfunc_server.responses import ok

log = get_logger("server.ops")

ROLES = ("server", "worker", "beat")


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


async def queue_stats(ctx: AppContext) -> dict[str, Any]:
    """``serverTime``, per-queue figures (configured queues plus every queue stream of the
    namespace) and the total of dead letters; used by the overview and ``/metrics``."""
    queues = await inspect.discover_queues(ctx.redis, ctx.keys, ctx.settings.worker.queues)
    rows = await inspect.queue_stats(ctx.redis, ctx.keys, queues)
    now_ms = await inspect.server_ms(ctx.redis)
    return {"serverTime": now_ms / 1000, "queues": rows,
            "deadLetters": int(await ctx.redis.xlen(ctx.keys.dead()))}


async def _beat(ctx: AppContext) -> dict[str, Any]:
    leader_raw, epoch_raw = await ctx.redis.mget(ctx.keys.beat_leader(), ctx.keys.beat_epoch())
    leader: Any = _text(leader_raw)
    if leader:
        with suppress(ValueError):
            leader = json.loads(leader)
    epoch = _text(epoch_raw)
    return {"leader": leader, "epoch": int(epoch) if epoch and epoch.isdigit() else None}


async def overview(request: web.Request) -> web.Response:
    """``GET /api/v1/ops/overview``: services by role, queues, dead letters, Beat leadership."""
    await require_admin(request)
    schemas.query_of(request.query, schemas.NoQuery)
    ctx = request.app[CTX]
    services: dict[str, list[dict[str, Any]]] = {role: [] for role in ROLES}
    for svc in await list_services(ctx.redis, ctx.keys):
        services.setdefault(str(svc.get("role", "unknown")), []).append(svc)
    stats = await queue_stats(ctx)
    return ok(request, {**stats, "services": services, "beat": await _beat(ctx)})


async def dead_letters(request: web.Request) -> web.Response:
    """``GET /api/v1/ops/dead-letters?count&start``: oldest first from ``start``."""
    await require_admin(request)
    q = schemas.query_of(request.query, schemas.DeadLetterQuery)
    letters = await request.app[CTX].streams.dead_letters(count=q.count, start=q.start)
    return ok(request, letters)


async def requeue(request: web.Request) -> web.Response:
    """``POST /api/v1/ops/dead-letters/{entry}/requeue``: back on its queue, attempt reset."""
    await require_admin(request)
    ctx = request.app[CTX]
    entry = request.match_info["entry"]
    if not is_entry_id(entry):
        raise NotFound(f"no dead letter {entry!r} (entry ids look like 1700000000000-0)")
    done = await ctx.streams.requeue_dead(entry, max_len=ctx.settings.redis.queue_max_len)
    return ok(request, {"taskId": done.task_id, "entryId": done.entry_id, "duplicate": done.duplicate})


async def metrics(request: web.Request) -> web.Response:
    """``GET /metrics``: this process's HTTP counters plus deployment-wide task and queue figures."""
    ctx = request.app[CTX]
    try:
        ctx.metrics.set_tasks(await read_task_stats(ctx.redis, ctx.keys))
        ctx.metrics.set_queues(await queue_stats(ctx))
    except (RedisError, OSError, FluxfuncError) as exc:  # still serve the HTTP counters
        log.warning("metrics: task and queue figures unavailable", error=str(exc))
    return web.Response(body=ctx.metrics.render(), headers={"Content-Type": CONTENT_TYPE})


async def healthz(request: web.Request) -> web.Response:
    """``GET /healthz``: 200 while the process runs (no dependency is checked)."""
    return ok(request, {"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """200 when Redis answers PING and the store answers; 503 ESysUnavailable otherwise."""
    ctx = request.app[CTX]
    await redis_ping(ctx.redis, ctx.settings.redis)
    try:
        await ctx.store.ping()
    except Unavailable:
        raise
    except Exception as exc:
        raise Unavailable(f"store unreachable: {type(exc).__name__}") from None
    return ok(request, {"status": "ready"})


async def head_root(request: web.Request) -> web.Response:
    """``HEAD /``: an empty 200 for load balancers."""
    return web.Response(status=200)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/ops/overview", overview, allow_head=False)
    app.router.add_get("/api/v1/ops/dead-letters", dead_letters, allow_head=False)
    app.router.add_post("/api/v1/ops/dead-letters/{entry}/requeue", requeue)
    app.router.add_get("/metrics", metrics, allow_head=False)
    app.router.add_get("/healthz", healthz, allow_head=False)
    app.router.add_get("/readyz", readyz, allow_head=False)
    app.router.add_route("HEAD", "/", head_root)
