"""Process heartbeats: ``{ns}:svc:{role}:{instance}`` refreshed while a service runs, and the
``--check`` probe that exits 0 only while the heartbeats of this machine's processes are fresh.

Each process also writes its instance id to a small state file of its own (named with its
pid), so that a health-check command run in the same container (a separate process) knows
which keys to look at.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from fluxfunc_common import __version__
from fluxfunc_common.keys import Keys
from fluxfunc_common.lifecycle import every
from fluxfunc_common.settings import Settings

INTERVAL = 5.0
TTL_FACTOR = 3


def _state_dir() -> Path:
    return Path(os.environ.get("FLUXFUNC_STATE_DIR") or tempfile.gettempdir())


def state_file(role: str, namespace: str, pid: int | None = None) -> Path:
    """Where a running service records its instance id (``$FLUXFUNC_STATE_DIR`` or tmp): one
    file per process, so several processes of one role on a machine are each checked."""
    return _state_dir() / f"fluxfunc-{namespace}-{role}-{pid or os.getpid()}.instance"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, another user's
        return True
    return True


def local_instances(role: str, namespace: str) -> list[str]:
    """Instance ids of this machine's running ``role`` processes (state files of processes
    that are gone — a SIGKILL leaves its file — are removed)."""
    found = []
    for path in sorted(_state_dir().glob(f"fluxfunc-{namespace}-{role}-*.instance")):
        pid = path.stem.rsplit("-", 1)[-1]
        if not pid.isdigit() or not _alive(int(pid)):
            with suppress(OSError):
                path.unlink()
            continue
        with suppress(OSError):
            if instance := path.read_text().strip():
                found.append(instance)
    return found


def describe(role: str, instance: str, started: float, **extra: object) -> dict[str, object]:
    """The JSON body of a heartbeat key."""
    return {
        "role": role,
        "instance": instance,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "version": __version__,
        "startTime": started,
        "lastHeartbeat": time.time(),
        **extra,
    }


@asynccontextmanager
async def heartbeat(
    redis: aioredis.Redis,
    keys: Keys,
    role: str,
    instance: str,
    *,
    extra: Callable[[], Mapping[str, object]] | None = None,
    interval: float = INTERVAL,
) -> AsyncIterator[None]:
    """Beat every ``interval`` seconds while the block runs; delete the key on exit."""
    started = time.time()
    key = keys.svc(role, instance)
    path = state_file(role, keys.ns)

    async def beat_once() -> None:
        body = describe(role, instance, started, **(extra() if extra else {}))
        async with redis.pipeline(transaction=False) as pipe:
            pipe.set(key, json.dumps(body), px=int(interval * TTL_FACTOR * 1000))
            pipe.sadd(keys.svc_index(), key)
            await pipe.execute()

    async def beat_quietly() -> None:  # Redis away for a while: the key expires, as it should
        with suppress(Exception):
            await beat_once()

    await beat_once()
    with suppress(OSError):
        path.write_text(instance)
    stop = asyncio.Event()
    task = asyncio.create_task(every(interval, beat_quietly, stop, first=False), name=f"heartbeat-{role}")
    try:
        yield
    finally:
        stop.set()
        task.cancel()  # a beat blocked on a stalled Redis is not waited for
        with suppress(asyncio.CancelledError):
            await task
        with suppress(Exception):
            await redis.delete(key)
            await redis.srem(keys.svc_index(), key)
        with suppress(OSError):
            path.unlink()


async def is_fresh(settings: Settings, role: str) -> bool:
    """True when this machine runs ``role`` processes and every one has a live heartbeat key."""
    from fluxfunc_common.redisconn import make_client

    instances = local_instances(role, settings.redis.namespace)
    if not instances:
        return False
    keys = Keys(settings.redis.namespace)
    client = make_client(settings.redis)
    try:
        return int(await client.exists(*[keys.svc(role, i) for i in instances])) == len(instances)
    except Exception:
        return False
    finally:
        await client.aclose()


async def list_services(redis: aioredis.Redis, keys: Keys) -> list[dict[str, Any]]:
    """Every live heartbeat (all roles), for the ops overview and ``/metrics``: the members of
    ``keys.svc_index`` (two commands whatever the size of the keyspace); the keys of processes
    that died without deleting theirs have expired and leave the index here."""
    index = keys.svc_index()
    members = sorted(await redis.smembers(index))
    values = await redis.mget(members) if members else []
    out, gone = [], []
    for key, raw in zip(members, values, strict=True):
        if not raw:
            gone.append(key)
            continue
        with suppress(ValueError):
            out.append(json.loads(raw))
    if gone:
        await redis.srem(index, *gone)
    return sorted(out, key=lambda s: (s.get("role", ""), s.get("instance", "")))
