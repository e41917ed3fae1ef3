"""Throttling failed sign-ins, per username and per client address, in Redis.

Each failure counts against both; from ``accounts.sign_in_failures`` failures on, each further
one locks sign-ins of that username or address for 15 s, doubling up to 15 minutes. A locked
sign-in answers 429 with ``Retry-After`` before the password is even checked. A success
clears the username's count (the address keeps its count: one address guessing many
accounts stays throttled). Counts are forgotten an hour after the last failure.
"""

from __future__ import annotations

import math

from fluxfunc_common.errors import RateLimited
from fluxfunc_server.context import AppContext

FIRST_LOCK_SECONDS = 15
MAX_LOCK_SECONDS = 900
COUNT_TTL_SECONDS = 3600


class SignInLocked(RateLimited):
    """Too many failed sign-ins: try again later."""

    def __init__(self, wait_seconds: int) -> None:
        super().__init__("too many failed sign-ins; try again later", {"waitSeconds": wait_seconds})
        self.headers = {"Retry-After": str(wait_seconds)}


def _subjects(username: str, address: str | None) -> list[tuple[str, str]]:
    return [("user", username.lower()), ("addr", address or "unknown")]


async def check(ctx: AppContext, username: str, address: str | None) -> None:
    """RateLimited (429, Retry-After) while the username or the address is locked."""
    for kind, who in _subjects(username, address):
        ttl_ms = await ctx.redis.pttl(ctx.keys.sign_in_lockout(kind, who))
        if ttl_ms > 0:
            wait = math.ceil(ttl_ms / 1000)
            raise SignInLocked(wait)


def lock_seconds(failures: int, limit: int) -> int:
    """How long the ``failures``-th failure locks (0 below ``limit``)."""
    if failures < limit:
        return 0
    return min(FIRST_LOCK_SECONDS << min(failures - limit, 16), MAX_LOCK_SECONDS)


async def failed(ctx: AppContext, username: str, address: str | None) -> None:
    """Count a failed sign-in; lock the username or address when it reached the limit."""
    limit = ctx.settings.accounts.sign_in_failures
    for kind, who in _subjects(username, address):
        key = ctx.keys.sign_in_failures(kind, who)
        async with ctx.redis.pipeline(transaction=True) as pipe:
            pipe.incr(key)
            pipe.expire(key, COUNT_TTL_SECONDS)
            count, _ = await pipe.execute()
        seconds = lock_seconds(int(count), limit)
        if seconds:
            await ctx.redis.set(ctx.keys.sign_in_lockout(kind, who), b"1", ex=seconds)


async def succeeded(ctx: AppContext, username: str) -> None:
    """Forget the username's failures."""
    await ctx.redis.delete(ctx.keys.sign_in_failures("user", username.lower()))
