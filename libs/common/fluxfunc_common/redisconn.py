"""Redis clients: one pooled client for commands, one dedicated client for blocking reads.

redis-py 8 retries a timed-out command for about a minute by default, which turns a
``BLOCK`` read into a silent hang; the blocking client therefore has a socket timeout above
the block time and no automatic retry.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from fluxfunc_common.errors import Unavailable
from fluxfunc_common.keys import Keys
from fluxfunc_common.settings import RedisSettings

BLOCK_MS = 2000


@dataclass(frozen=True)
class RedisClients:
    """The pair of clients a process uses, plus its key names."""

    main: aioredis.Redis
    blocking: aioredis.Redis
    keys: Keys


def _sentinel_client(settings: RedisSettings, **kwargs: Any) -> aioredis.Redis:
    assert settings.sentinel is not None
    hosts = []
    for h in settings.sentinel.hosts:
        host, _, port = h.rpartition(":")
        hosts.append((host or h, int(port or 26379)))
    # Sentinels get their own short timeouts: an empty dict would leave a dead Sentinel host
    # able to hang master discovery (redis-py only copies socket_* options when given None).
    sentinel_kwargs: dict[str, Any] = {"socket_timeout": 2, "socket_connect_timeout": 2}
    if settings.sentinel.sentinel_password:
        sentinel_kwargs["password"] = settings.sentinel.sentinel_password.get_secret_value()
    password = settings.sentinel.password.get_secret_value() if settings.sentinel.password else None
    # Through a typed alias: redis-py types Sentinel.__init__ from 8.2 on, not before.
    new_sentinel: Callable[..., Sentinel] = Sentinel
    sentinel = new_sentinel(hosts, sentinel_kwargs=sentinel_kwargs, password=password)
    client: aioredis.Redis = sentinel.master_for(settings.sentinel.service, **kwargs)
    return client


def make_client(settings: RedisSettings, *, blocking: bool = False) -> aioredis.Redis:
    """A client for commands (pooled, bounded, retried) or for blocking reads."""
    if blocking:
        kwargs: dict[str, Any] = {
            "socket_timeout": BLOCK_MS / 1000 + 3,
            "socket_connect_timeout": 5,
            "retry": Retry(NoBackoff(), 0),
            "max_connections": 4,
        }
    else:
        kwargs = {
            "socket_timeout": 10,
            "socket_connect_timeout": 5,
            "retry": Retry(ExponentialBackoff(cap=1, base=0.05), 3),
            "max_connections": settings.max_connections,
        }
    kwargs["health_check_interval"] = 30
    if settings.sentinel:
        return _sentinel_client(settings, **kwargs)
    pool = aioredis.BlockingConnectionPool.from_url(settings.url, timeout=20, **kwargs)
    return aioredis.Redis(connection_pool=pool)


def describe(settings: RedisSettings) -> str:
    """Where Redis is, without its password."""
    if settings.sentinel:
        return f"sentinel {','.join(settings.sentinel.hosts)} service {settings.sentinel.service}"
    url = settings.url
    if "@" in url:
        scheme, _, rest = url.partition("://")
        url = f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url


async def ping(client: aioredis.Redis, settings: RedisSettings) -> None:
    """Raise :class:`Unavailable` naming the address when Redis does not answer."""
    try:
        await client.ping()
    except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
        raise Unavailable(f"Redis unreachable at {describe(settings)}: {exc}") from None


@asynccontextmanager
async def open_redis(settings: RedisSettings, *, check: bool = True) -> AsyncIterator[RedisClients]:
    """Open both clients (checking Redis answers) and close them on exit."""
    main = make_client(settings)
    blocking = make_client(settings, blocking=True)
    try:
        if check:
            await ping(main, settings)
        yield RedisClients(main=main, blocking=blocking, keys=Keys(settings.namespace))
    finally:
        await blocking.aclose()
        await main.aclose()
