"""Ops and health: overview, dead letters, Prometheus metrics, probes.

``/healthz`` answers while the process runs (liveness); ``/readyz`` only when Redis and the
store answer and the store takes a write, within 1 s whatever hangs, naming what failed;
``HEAD /`` is for load balancers. ``/metrics`` is unauthenticated, as Prometheus expects,
unless ``server.metrics_token`` is set (then a bearer token); keep it off the internet either
way: it names every func. Queue figures come from
:mod:`fluxfunc_common.queuestats`, the same code ``fluxfunc streams`` prints.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import time
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from contextlib import suppress
from typing import TypedDict

from aiohttp import web
from pydantic import SecretStr
from redis.exceptions import RedisError

from fluxfunc_common import queuestats, subscriptionstats
from fluxfunc_common.errors import FluxfuncError, NotFound, Unavailable, UserAuthError
from fluxfunc_common.heartbeat import list_services
from fluxfunc_common.logs import get_logger
from fluxfunc_common.queues import func_queues
from fluxfunc_common.redisconn import ping as redis_ping
from fluxfunc_common.store import Entity
from fluxfunc_common.store.kv import INTERNAL_SCOPE
from fluxfunc_common.streams import is_entry_id
from fluxfunc_common.taskstats import forget_funcs, read_task_stats
from fluxfunc_common.text import as_optional_text
from fluxfunc_server import routing, schemas
from fluxfunc_server.access import DEVELOPER, PUBLIC, VIEWER
from fluxfunc_server.appkeys import CTX
from fluxfunc_server.context import AppContext
from fluxfunc_server.metrics import CONTENT_TYPE
from fluxfunc_server.responses import ok

log = get_logger("server.ops")

ROLES = ("server", "worker", "beat")


class QueueFigures(TypedDict):
    """The queue part of the overview (``schemas_out.Overview``)."""

    serverTime: float
    queues: Sequence[queuestats.QueueRow]
    deadLetters: int


class BeatView(TypedDict):
    leader: object  # the leader's heartbeat JSON (or its raw text)
    epoch: int | None


async def queue_stats(ctx: AppContext, extra: Iterable[str] = ()) -> QueueFigures:
    """``serverTime``, per-queue figures (configured queues, ``extra`` and every queue stream of
    the namespace) and the total of dead letters; used by the overview and ``/metrics``."""
    queues = await queuestats.discover_queues(ctx.redis, ctx.keys, [*ctx.settings.worker.queues, *extra])
    rows = await queuestats.queue_stats(ctx.redis, ctx.keys, queues)
    now_ms = await queuestats.server_ms(ctx.redis)
    return {"serverTime": now_ms / 1000, "queues": rows,
            "deadLetters": int(await ctx.redis.xlen(ctx.keys.dead()))}


async def _beat(ctx: AppContext) -> BeatView:
    leader_raw, epoch_raw = await ctx.redis.mget(ctx.keys.beat_leader(), ctx.keys.beat_epoch())
    text = as_optional_text(leader_raw)
    leader: object = text
    if text:
        with suppress(ValueError):
            leader = json.loads(text)
    epoch = as_optional_text(epoch_raw)
    return {"leader": leader, "epoch": int(epoch) if epoch and epoch.isdigit() else None}


async def overview(request: web.Request) -> web.Response:
    """``GET /api/v1/ops/overview``: services by role, queues, dead letters, Beat leadership."""
    schemas.query_of(request.query, schemas.NoQuery)
    ctx = request.app[CTX]
    services: dict[str, list[Mapping[str, object]]] = {role: [] for role in ROLES}
    for svc in await list_services(ctx.redis, ctx.keys):
        services.setdefault(str(svc.get("role", "unknown")), []).append(svc)
    stats = await queue_stats(ctx, await func_queues(ctx.store))  # flags the unread ones
    return ok(request, {**stats, "services": services, "beat": await _beat(ctx)})


async def dead_letters(request: web.Request) -> web.Response:
    """``GET /api/v1/ops/dead-letters?count&start``: oldest first from ``start``."""
    q = schemas.query_of(request.query, schemas.DeadLetterQuery)
    letters = await request.app[CTX].streams.dead_letters(count=q.count, start=q.start)
    return ok(request, letters)


async def requeue(request: web.Request) -> web.Response:
    """``POST /api/v1/ops/dead-letters/{entry}/requeue``: back on its queue, attempt reset."""
    ctx = request.app[CTX]
    entry = request.match_info["entry"]
    if not is_entry_id(entry):
        raise NotFound(f"no dead letter {entry!r} (entry ids look like 1700000000000-0)")
    done = await ctx.streams.requeue_dead(entry, max_len=ctx.settings.redis.queue_max_len)
    return ok(request, {"taskId": done.task_id, "entryId": done.entry_id, "duplicate": done.duplicate})


async def _func_ids(ctx: AppContext) -> set[str]:
    ids: set[str] = set()
    cursor: str | None = None
    while True:
        page = await ctx.store.list(Entity.FUNC, limit=1000, cursor=cursor)
        ids.update(str(f["id"]) for f in page.items)
        cursor = page.next_cursor
        if not cursor:
            return ids


async def _set_metrics_queues(ctx: AppContext) -> None:
    """Like :func:`queue_stats` for the configured queues and those a live worker reads,
    found without scanning the keyspace."""
    queues = set(ctx.settings.worker.queues) | await queuestats.live_queues(ctx.redis, ctx.keys)
    rows = await queuestats.queue_stats(ctx.redis, ctx.keys, sorted(queues))
    ctx.metrics.set_queues(rows, int(await ctx.redis.xlen(ctx.keys.dead())))


async def _set_metrics_subscriptions(ctx: AppContext) -> None:
    """The subscription message counts, without connectors that no longer exist (the store is
    read only when there are counts)."""
    counts = await subscriptionstats.read(ctx.redis, ctx.keys)
    if counts:
        known = {c.id for c in await ctx.store.list_connectors()}
        counts = await subscriptionstats.forget(ctx.redis, ctx.keys, counts, known.__contains__)
    ctx.metrics.set_subscriptions(counts)


def _check_metrics_token(request: web.Request, token: SecretStr | None) -> None:
    if token is None:
        return
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
            given.strip().encode(), token.get_secret_value().encode()):
        raise UserAuthError("/metrics needs `Authorization: Bearer <server.metrics_token>`")


async def metrics(request: web.Request) -> web.Response:
    """``GET /metrics``: this process's HTTP counters plus deployment-wide task and queue
    figures. A fixed number of Redis commands per queue and per metric, whatever else Redis
    holds; funcs that no longer exist are left out (and dropped from the statistics)."""
    ctx = request.app[CTX]
    _check_metrics_token(request, ctx.settings.server.metrics_token)
    try:
        stats = await read_task_stats(ctx.redis, ctx.keys)
        funcs = await _func_ids(ctx)
        ctx.metrics.set_tasks(await forget_funcs(ctx.redis, ctx.keys, stats, funcs.__contains__))
        await _set_metrics_queues(ctx)
        await _set_metrics_subscriptions(ctx)
        ctx.metrics.set_beats(await list_services(ctx.redis, ctx.keys))
    except (RedisError, OSError, FluxfuncError) as exc:  # still serve the HTTP counters
        log.warning("metrics: task and queue figures unavailable", error=str(exc))
    return web.Response(body=ctx.metrics.render(), headers={"Content-Type": CONTENT_TYPE})


async def healthz(request: web.Request) -> web.Response:
    """``GET /healthz``: 200 while the process runs (no dependency is checked), with this
    process's instance id, so a launcher can tell its own server from another on that port."""
    return ok(request, {"status": "ok", "instance": request.app[CTX].server_id})


READY_CHECK_SECONDS = 0.8  # each readiness check; the answer comes within 1 s
READY_SCOPE = INTERNAL_SCOPE  # store scope of the readiness write probe (one row per Server)
_probes: set[asyncio.Task[None]] = set()  # write probes still running after their deadline


async def _check(what: str, probe: Awaitable[None]) -> str:
    """``"ok"``, or why ``probe`` failed or did not answer within READY_CHECK_SECONDS. The
    probe is shielded: a store write is never cancelled half-way, it ends on its own."""
    task = asyncio.ensure_future(probe)
    _probes.add(task)
    task.add_done_callback(_probes.discard)
    try:
        await asyncio.wait_for(asyncio.shield(task), READY_CHECK_SECONDS)
    except TimeoutError:
        return f"{what}: no answer within {READY_CHECK_SECONDS:g} s"
    except FluxfuncError as exc:  # already names the dependency
        return exc.message
    except Exception as exc:
        return f"{what}: {exc or type(exc).__name__}"
    return "ok"


async def _store_write(ctx: AppContext) -> None:
    """A real write (an expiring DFF.STORE row of this Server): a store that answers reads
    but cannot commit (a full disk, a read-only database) is not ready."""
    await ctx.store.kv_set(READY_SCOPE, f"readyz:{ctx.server_id}", time.time(), expires=300)


async def _store_checks(ctx: AppContext) -> tuple[str, str]:
    store = await _check("store unreachable", ctx.store.ping())
    if store != "ok":
        return store, "not tried"
    return store, await _check("store cannot write", _store_write(ctx))


async def readyz(request: web.Request) -> web.Response:
    """200 when Redis answers PING and the store answers and takes a write, each within its
    own short timeout (the answer comes within 1 s whatever hangs); else 503 ESysUnavailable
    naming what is unreachable or unhealthy (``detail.checks``)."""
    ctx = request.app[CTX]
    redis, (store, write) = await asyncio.gather(
        _check("Redis unreachable", redis_ping(ctx.redis, ctx.settings.redis)), _store_checks(ctx))
    checks = {"redis": redis, "store": store, "storeWrite": write}
    failed = [v for v in checks.values() if v not in ("ok", "not tried")]
    if failed:
        raise Unavailable("not ready: " + "; ".join(failed), detail={"checks": checks})
    return ok(request, {"status": "ready", "checks": checks})


async def head_root(request: web.Request) -> web.Response:
    """``HEAD /``: an empty 200 for load balancers."""
    return web.Response(status=200)


def add_routes(app: web.Application) -> None:
    routing.get(app, "/api/v1/ops/overview", overview, VIEWER)
    routing.get(app, "/api/v1/ops/dead-letters", dead_letters, VIEWER)
    routing.post(app, "/api/v1/ops/dead-letters/{entry}/requeue", requeue, DEVELOPER)
    routing.get(app, "/metrics", metrics, PUBLIC)  # or server.metrics_token, checked by metrics()
    routing.get(app, "/healthz", healthz, PUBLIC)
    routing.get(app, "/readyz", readyz, PUBLIC)
    routing.add_route(app, "HEAD", "/", head_root, PUBLIC)
