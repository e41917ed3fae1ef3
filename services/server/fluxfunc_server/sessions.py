"""Console sessions: a random cookie, its SHA-256 the Redis key of the session (so a copy of
Redis holds no usable cookie), idle expiry by the key's TTL and a hard limit from sign-in.

The cookie is ``fluxfunc_session``: HttpOnly, SameSite=Strict, Path=/, Secure when the request
came over TLS (directly, or ``X-Forwarded-Proto: https`` from a ``server.trusted_proxies``
peer). A new session is made at every sign-in (the old cookie is never reused); the user's
role and state are read from the store on every request, so a role change or a disabled user
takes effect at once. Mutating requests authenticated by the cookie must come from the
Server's own origin (:func:`check_origin`).
"""

from __future__ import annotations

import hashlib
import secrets
from urllib.parse import urlsplit

import orjson
from aiohttp import web

from fluxfunc_common.errors import Forbidden
from fluxfunc_common.roles import Role
from fluxfunc_common.store import User
from fluxfunc_server.context import AppContext
from fluxfunc_server.peer import is_trusted
from fluxfunc_server.principal import Principal, Via

COOKIE = "fluxfunc_session"


def _hash(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


async def create(ctx: AppContext, user: User) -> str:
    """A new session of ``user``; its cookie value."""
    sid = secrets.token_urlsafe(32)
    sid_hash = _hash(sid)
    accounts = ctx.settings.accounts
    body = orjson.dumps({"username": user.username, "createdAt": ctx.clock.time()})
    async with ctx.redis.pipeline(transaction=True) as pipe:
        pipe.set(ctx.keys.session(sid_hash), body, ex=int(accounts.session_idle_minutes * 60))
        pipe.sadd(ctx.keys.user_sessions(user.username), sid_hash)
        pipe.expire(ctx.keys.user_sessions(user.username), int(accounts.session_max_hours * 3600))
        await pipe.execute()
    return sid


async def lookup(ctx: AppContext, sid: str) -> Principal | None:
    """The principal of a live session cookie (its idle expiry renewed), else None."""
    sid_hash = _hash(sid)
    raw = await ctx.redis.get(ctx.keys.session(sid_hash))
    if raw is None:
        return None
    session = orjson.loads(raw)
    accounts = ctx.settings.accounts
    if ctx.clock.time() - float(session["createdAt"]) > accounts.session_max_hours * 3600:
        await end(ctx, sid_hash, str(session["username"]))
        return None
    user = await ctx.store.find_user(str(session["username"]))
    if user is None or user.disabled:
        await end(ctx, sid_hash, str(session["username"]))
        return None
    await ctx.redis.expire(ctx.keys.session(sid_hash), int(accounts.session_idle_minutes * 60))
    return Principal(user.username, Role(user.role), Via.SESSION, sid_hash)


async def end(ctx: AppContext, sid_hash: str, username: str) -> None:
    """End one session."""
    await ctx.redis.delete(ctx.keys.session(sid_hash))
    await ctx.redis.srem(ctx.keys.user_sessions(username), sid_hash)


async def end_all(ctx: AppContext, username: str, *, keep: str | None = None) -> None:
    """End every session of ``username`` but ``keep`` (a session hash)."""
    index = ctx.keys.user_sessions(username)
    hashes = [h.decode() if isinstance(h, bytes) else str(h) for h in await ctx.redis.smembers(index)]
    gone = [h for h in hashes if h != keep]
    if gone:
        await ctx.redis.delete(*(ctx.keys.session(h) for h in gone))
        await ctx.redis.srem(index, *gone)


def over_tls(request: web.Request, ctx: AppContext) -> bool:
    """Whether the request came over TLS, to us or to a trusted proxy in front."""
    if request.secure:
        return True
    proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return proto == "https" and is_trusted(request.remote, ctx.settings.server.trusted_networks)


def set_cookie(response: web.StreamResponse, request: web.Request, ctx: AppContext, sid: str) -> None:
    response.set_cookie(COOKIE, sid, httponly=True, samesite="Strict", path="/",
                        secure=over_tls(request, ctx))


def clear_cookie(response: web.StreamResponse, request: web.Request, ctx: AppContext) -> None:
    response.del_cookie(COOKIE, path="/", httponly=True, samesite="Strict",
                        secure=over_tls(request, ctx))


def check_origin(request: web.Request) -> None:
    """403 unless ``Origin`` (or, without one, ``Referer``) names this Server's own host: a
    cookie is sent with cross-site requests a browser makes, the Origin header tells them."""
    sent = request.headers.get("Origin") or request.headers.get("Referer")
    if not sent or sent == "null":
        raise Forbidden("a request signed in by cookie must send an Origin header")
    if urlsplit(sent).netloc.lower() != request.host.lower():
        raise Forbidden("cross-origin request refused", {"origin": sent})
