"""Console sessions: a random cookie, its SHA-256 the Redis key of the session (so a copy of
Redis holds no usable cookie), idle expiry by the key's TTL and a hard limit from sign-in.

The cookie is ``fluxfunc_session``: HttpOnly, SameSite=Strict, Path=/, Secure when the request
came over TLS (directly, or ``X-Forwarded-Proto: https`` from a ``server.trusted_proxies``
peer). A new session is made at every sign-in (the old cookie is never reused); the user's
role and state are read from the store on every request, so a role change or a disabled user
takes effect at once. Mutating requests authenticated by the cookie must come from the
Server's own origin (:func:`check_origin`).

A session records when it began and was last used, and the client address and user agent of
its sign-in, so a user can list their own sessions (:func:`list_of`) and end them all. When a
session ends, the editing locks taken through it are released
(:func:`fluxfunc_server.editlocks.release_session`).
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
from fluxfunc_server import editlocks
from fluxfunc_server.context import AppContext
from fluxfunc_server.peer import is_trusted
from fluxfunc_server.principal import Principal, Via

COOKIE = "fluxfunc_session"
MAX_USER_AGENT = 256


def _hash(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


async def create(ctx: AppContext, user: User, *, address: str | None = None,
                 user_agent: str | None = None) -> str:
    """A new session of ``user``, signed in from ``address`` with ``user_agent``; its cookie
    value."""
    sid = secrets.token_urlsafe(32)
    sid_hash = _hash(sid)
    accounts = ctx.settings.accounts
    now = ctx.clock.time()
    body = orjson.dumps({"username": user.username, "createdAt": now, "lastSeenAt": now,
                         "address": address, "userAgent": (user_agent or "")[:MAX_USER_AGENT] or None})
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
    session["lastSeenAt"] = ctx.clock.time()
    # renews the idle expiry; XX: a session ended meanwhile (sign-out elsewhere) stays ended
    await ctx.redis.set(ctx.keys.session(sid_hash), orjson.dumps(session),
                        ex=int(accounts.session_idle_minutes * 60), xx=True)
    return Principal(user.username, Role(user.role), Via.SESSION, sid_hash)


async def end(ctx: AppContext, sid_hash: str, username: str) -> None:
    """End one session, releasing the editing locks taken through it."""
    await ctx.redis.delete(ctx.keys.session(sid_hash))
    await ctx.redis.srem(ctx.keys.user_sessions(username), sid_hash)
    await editlocks.release_session(ctx, sid_hash, username)


async def end_all(ctx: AppContext, username: str, *, keep: str | None = None) -> int:
    """End every session of ``username`` but ``keep`` (a session hash), releasing their
    editing locks; how many were live."""
    index = ctx.keys.user_sessions(username)
    gone = [h for h in await _hashes(ctx, username) if h != keep]
    if not gone:
        return 0
    live = await ctx.redis.delete(*(ctx.keys.session(h) for h in gone))
    await ctx.redis.srem(index, *gone)
    for sid_hash in gone:
        await editlocks.release_session(ctx, sid_hash, username)
    return int(live)


async def list_of(ctx: AppContext, username: str, current: str | None) -> list[dict[str, object]]:
    """The live sessions of ``username``, last used first: when each began and was last used,
    the address and user agent of its sign-in, and whether it is ``current`` (a session hash).
    Neither the cookie nor its hash is answered."""
    hashes = await _hashes(ctx, username)
    max_age = ctx.settings.accounts.session_max_hours * 3600
    raws = await ctx.redis.mget([ctx.keys.session(h) for h in hashes]) if hashes else []
    seen: list[tuple[float, dict[str, object]]] = []
    for sid_hash, raw in zip(hashes, raws, strict=True):
        if raw is None:  # expired while idle: tidy the index
            await ctx.redis.srem(ctx.keys.user_sessions(username), sid_hash)
            continue
        session = orjson.loads(raw)
        if ctx.clock.time() - float(session["createdAt"]) > max_age:
            continue  # past the hard limit: its next use ends it
        last_seen = float(session.get("lastSeenAt", session["createdAt"]))
        seen.append((last_seen, {"createdAt": session["createdAt"], "lastSeenAt": last_seen,
                                 "address": session.get("address"),
                                 "userAgent": session.get("userAgent"),
                                 "isCurrent": sid_hash == current}))
    return [view for _, view in sorted(seen, key=lambda pair: pair[0], reverse=True)]


async def _hashes(ctx: AppContext, username: str) -> list[str]:
    members = await ctx.redis.smembers(ctx.keys.user_sessions(username))
    return [h.decode() if isinstance(h, bytes) else str(h) for h in members]


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
