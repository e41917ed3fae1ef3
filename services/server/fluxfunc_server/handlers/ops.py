"""Ops and health (SPEC §4.4): overview, dead letters, Prometheus metrics, probes.

``/healthz`` answers while the process runs; ``/readyz`` only when Redis and the store do;
``HEAD /`` is for load balancers. ``/metrics`` is unauthenticated, as Prometheus expects
(put it behind the network, not the internet).
"""

from __future__ import annotations

import json
from contextlib import suppress
from typing import Any

from aiohttp import web
from redis.exceptions import RedisError, ResponseError

from fluxfunc_common.errors import FluxfuncError, Unavailable
from fluxfunc_common.heartbeat import list_services
from fluxfunc_common.keys import GROUP
from fluxfunc_common.logs import get_logger
from fluxfunc_common.redisconn import ping as redis_ping
from fluxfunc_server import schemas
from fluxfunc_server.adminauth import require_admin
from fluxfunc_server.context import CTX, AppContext
from fluxfunc_server.metrics import CONTENT_TYPE, Metrics
from fluxfunc_server.responses import ok

log = get_logger("server.ops")

DEAD_SCAN_LIMIT = 10_000
ROLES = ("server", "worker", "beat")


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def _entry_ms(entry_id: Any) -> int | None:
    text = _text(entry_id)
    if not text:
        return None
    with suppress(ValueError):
        return int(text.split("-", 1)[0])
    return None


async def queue_names(ctx: AppContext) -> list[str]:
    """Configured queues plus every queue stream that exists in this namespace."""
    names = set(ctx.settings.worker.queues)
    async for key in ctx.redis.scan_iter(match=ctx.keys.queue_pattern(), count=500, _type="stream"):
        names.add(ctx.keys.queue_name(_text(key) or ""))
    return sorted(n for n in names if n)


async def _counter(ctx: AppContext, key: str) -> int:
    """A throughput counter: a plain integer, or a hash of counts (summed)."""
    try:
        raw = await ctx.redis.get(key)
        return int(raw) if raw is not None else 0
    except ResponseError:
        values = await ctx.redis.hvals(key)
        return sum(int(v) for v in values if (_text(v) or "").lstrip("-").isdigit())


async def _group(ctx: AppContext, stream: str) -> dict[str, Any]:
    try:
        groups = await ctx.redis.xinfo_groups(stream)
    except ResponseError:  # no such stream yet
        return {}
    for g in groups:
        if _text(g.get("name")) == GROUP:
            return dict(g)
    return {}


async def _dead_by_queue(ctx: AppContext) -> tuple[int, dict[str, int]]:
    total = int(await ctx.redis.xlen(ctx.keys.dead()))
    counts: dict[str, int] = {}
    for _, fields in await ctx.redis.xrange(ctx.keys.dead(), count=DEAD_SCAN_LIMIT):
        queue = _text(fields.get(b"queue") or fields.get("queue")) or "?"
        counts[queue] = counts.get(queue, 0) + 1
    return total, counts


async def queue_stats(ctx: AppContext) -> dict[str, Any]:
    """Per-queue figures (used by the overview and the Prometheus gauges)."""
    seconds, micros = await ctx.redis.time()
    now_ms = seconds * 1000 + micros // 1000
    minute = seconds // 60
    dead_total, dead = await _dead_by_queue(ctx)
    out = []
    for name in await queue_names(ctx):
        stream = ctx.keys.queue(name)
        group = await _group(ctx, stream)
        oldest = None
        if group.get("pending"):
            with suppress(ResponseError):
                summary = await ctx.redis.xpending(stream, GROUP)
                first_ms = _entry_ms(summary.get("min"))
                oldest = max(0.0, (now_ms - first_ms) / 1000) if first_ms is not None else None
        out.append({
            "name": name,
            "length": int(await ctx.redis.xlen(stream)),
            "pending": int(group.get("pending") or 0),
            "lag": None if group.get("lag") is None else int(group["lag"]),
            "consumers": int(group.get("consumers") or 0),
            "oldestPendingAge": oldest,
            "delayed": int(await ctx.redis.zcard(ctx.keys.delayed(name))),
            "deadLetters": dead.get(name, 0),
            "completedLastMinute": await _counter(ctx, ctx.keys.stats(name, minute - 1)),
            "completedThisMinute": await _counter(ctx, ctx.keys.stats(name, minute)),
        })
    return {"serverTime": now_ms / 1000, "queues": out, "deadLetters": dead_total}


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
    ctx = request.app[CTX]
    services: dict[str, list[dict[str, Any]]] = {role: [] for role in ROLES}
    for svc in await list_services(ctx.redis, ctx.keys):
        services.setdefault(str(svc.get("role", "unknown")), []).append(svc)
    stats = await queue_stats(ctx)
    return ok(request, {**stats, "services": services, "beat": await _beat(ctx)})


async def dead_letters(request: web.Request) -> web.Response:
    """``GET /api/v1/ops/dead-letters?count&start``."""
    await require_admin(request)
    q = schemas.query_of(request.query, schemas.DeadLetterQuery)
    letters = await request.app[CTX].streams.dead_letters(count=q.count, start=q.start)
    return ok(request, letters)


async def requeue(request: web.Request) -> web.Response:
    """``POST /api/v1/ops/dead-letters/{entry}/requeue``: back on its queue, attempt reset."""
    await require_admin(request)
    ctx = request.app[CTX]
    done = await ctx.streams.requeue_dead(request.match_info["entry"],
                                          max_len=ctx.settings.redis.queue_max_len)
    return ok(request, {"taskId": done.task_id, "entryId": done.entry_id, "duplicate": done.duplicate})


async def metrics(request: web.Request) -> web.Response:
    """``GET /metrics``: this process's counters plus deployment-wide queue gauges."""
    ctx = request.app[CTX]
    if ctx.metrics is None:
        ctx.metrics = Metrics()
    try:
        await ctx.metrics.refresh(ctx)
    except (RedisError, OSError, FluxfuncError) as exc:  # still serve the HTTP counters
        log.warning("metrics: queue figures unavailable", error=str(exc))
    return web.Response(body=ctx.metrics.render(), headers={"Content-Type": CONTENT_TYPE})


async def healthz(request: web.Request) -> web.Response:
    return ok(request, {"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    """200 when Redis answers PING and the store answers; 503 ESysUnavailable otherwise."""
    ctx = request.app[CTX]
    try:
        await redis_ping(ctx.redis, ctx.settings.redis)
    except (RedisError, OSError) as exc:
        raise Unavailable(f"Redis unreachable: {exc}") from None
    try:
        await ctx.store.ping()
    except Unavailable:
        raise
    except Exception as exc:
        raise Unavailable(f"store unreachable: {exc}") from None
    return ok(request, {"status": "ready"})


async def head_root(request: web.Request) -> web.Response:
    return web.Response(status=200)


def add_routes(app: web.Application) -> None:
    app.router.add_get("/api/v1/ops/overview", overview, allow_head=False)
    app.router.add_get("/api/v1/ops/dead-letters", dead_letters, allow_head=False)
    app.router.add_post("/api/v1/ops/dead-letters/{entry}/requeue", requeue)
    app.router.add_get("/metrics", metrics, allow_head=False)
    app.router.add_get("/healthz", healthz, allow_head=False)
    app.router.add_get("/readyz", readyz, allow_head=False)
    app.router.add_route("HEAD", "/", head_root)
