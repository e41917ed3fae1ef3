"""The editing lock of a script: who has it open in the console's editor.

Opening a script for editing takes the lock for ``accounts.edit_lock_seconds`` (the console
renews it every third of that); another user sees who holds it and until when, and can only
take it over explicitly (``force``, audited). While a user holds it, draft saves
(``PATCH /api/v1/scripts/{id}``), publishing and deleting by another signed-in user are
refused (409); API callers
with a token or access key are not (they do not use the editor), nor is anyone once the lock
expired. The lock is one Redis key (``keys.edit_lock``) written under ``WATCH``.

A lock remembers the console session that last took or renewed it (indexed by
``keys.session_locks``): when that session ends (sign-out, sign-out everywhere, a password
change, the user disabled or deleted), its locks are released at once instead of lingering
until they expire. The same user editing in another browser re-takes the lock at its next
renewal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import orjson
from aiohttp import web
from redis.exceptions import WatchError

from fluxfunc_common.errors import Locked, Unavailable
from fluxfunc_server.appkeys import CTX
from fluxfunc_server.context import AppContext
from fluxfunc_server.principal import Via, principal_of

ATTEMPTS = 5


@dataclass(frozen=True)
class EditLock:
    """Who holds a script's lock and until when (epoch s); ``session`` is the hash of the
    console session that last took or renewed it (never shown)."""

    holder: str
    expires_at: float
    session: str | None = None

    def view(self) -> dict[str, object]:
        return {"holder": self.holder, "expiresAt": self.expires_at}


def _parse(raw: bytes | str | None) -> EditLock | None:
    if raw is None:
        return None
    value = orjson.loads(raw)
    session = value.get("session")
    return EditLock(str(value["holder"]), float(value["expiresAt"]),
                    str(session) if session is not None else None)


def _dump(lock: EditLock) -> bytes:
    return orjson.dumps({**lock.view(), "session": lock.session})


def held_elsewhere(lock: EditLock) -> Locked:
    return Locked(f"{lock.holder} is editing this script", lock.view())


async def current(ctx: AppContext, script_id: str) -> EditLock | None:
    """The lock of ``script_id``, or None when nobody holds it."""
    return _parse(await ctx.redis.get(ctx.keys.edit_lock(script_id)))


async def take(ctx: AppContext, script_id: str, holder: str, *, session: str | None = None,
               force: bool = False) -> EditLock:
    """Take or renew the lock for ``holder`` (through console ``session``, if any); Locked
    (409) when another holds it, unless ``force``."""
    key, ttl = ctx.keys.edit_lock(script_id), ctx.settings.accounts.edit_lock_seconds
    for _ in range(ATTEMPTS):
        async with ctx.redis.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(key)
                held = _parse(await pipe.get(key))
                if held is not None and held.holder != holder and not force:
                    raise held_elsewhere(held)
                lock = EditLock(holder, ctx.clock.time() + ttl, session)
                pipe.multi()  # type: ignore[no-untyped-call]
                pipe.set(key, _dump(lock), ex=ttl)
                if session is not None:  # the index lives as long as a lock it lists can
                    pipe.sadd(ctx.keys.session_locks(session), script_id)
                    pipe.expire(ctx.keys.session_locks(session), ttl)
                await pipe.execute()
                return lock
            except WatchError:
                continue
    raise Unavailable("the editing lock is contended; try again")


async def release(ctx: AppContext, script_id: str, holder: str) -> None:
    """Release ``holder``'s lock (nothing when nobody holds it; Locked when another does)."""
    def mine(held: EditLock) -> bool:
        if held.holder != holder:
            raise held_elsewhere(held)
        return True
    await _release_if(ctx, script_id, mine)


async def release_session(ctx: AppContext, session: str, holder: str) -> None:
    """Release the locks ``holder`` last took or renewed through ``session`` (one taken over
    since, or renewed from another session, stays)."""
    index = ctx.keys.session_locks(session)
    for member in await ctx.redis.smembers(index):
        script_id = member.decode() if isinstance(member, bytes) else str(member)
        await _release_if(ctx, script_id,
                          lambda held: held.holder == holder and held.session == session)
    await ctx.redis.delete(index)


async def _release_if(ctx: AppContext, script_id: str,
                      releasable: Callable[[EditLock], bool]) -> None:
    """Delete the lock of ``script_id`` when it is held and ``releasable`` says so, under
    ``WATCH`` (a renewal or take-over in between is not lost)."""
    key = ctx.keys.edit_lock(script_id)
    for _ in range(ATTEMPTS):
        async with ctx.redis.pipeline(transaction=True) as pipe:
            try:
                await pipe.watch(key)
                held = _parse(await pipe.get(key))
                if held is None or not releasable(held):
                    return
                pipe.multi()  # type: ignore[no-untyped-call]
                pipe.delete(key)
                await pipe.execute()
                return
            except WatchError:
                continue
    raise Unavailable("the editing lock is contended; try again")


async def check_draft_save(request: web.Request, script_id: str) -> None:
    """The scripts resource's guard: a signed-in user may not change a script another user
    has locked (token and access-key callers may)."""
    principal = principal_of(request)
    if principal.via is not Via.SESSION:
        return
    lock = await current(request.app[CTX], script_id)
    if lock is not None and lock.holder != principal.name:
        raise held_elsewhere(lock)
