"""``/api/v1/auth/…``: console sign-in and sign-out, who am I, changing one's password, and
one's own sessions (listed, or all ended: "sign out everywhere").

Sign-in checks the throttle first (:mod:`fluxfunc_server.lockout`), then the password (scrypt,
off the event loop; an unknown user costs the same as a wrong password), then makes a new
session (:mod:`fluxfunc_server.sessions`) and ends the one whose cookie came with the request,
if any: the session id is never carried over. Wrong username, wrong password and a disabled
user get the same 401. Ending a session releases the editing locks taken through it.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from fluxfunc_common import passwords
from fluxfunc_common.errors import BadRequest, UserAuthError
from fluxfunc_common.roles import Role
from fluxfunc_server import lockout, routing, schemas, sessions
from fluxfunc_server.access import VIEWER, Access, Rule
from fluxfunc_server.appkeys import CTX
from fluxfunc_server.auditing import ACTOR
from fluxfunc_server.handlers.reading import json_object
from fluxfunc_server.peer import client_ips
from fluxfunc_server.principal import PRINCIPAL, Principal, Via, principal_of
from fluxfunc_server.responses import ok
from fluxfunc_server.schemas_accounts import PasswordChange, SignIn

PATH = "/api/v1/auth"
AUDITED_PUBLIC = Rule(Access.PUBLIC, audit=True)


async def password_matches(password: str, stored: str | None) -> bool:
    """Verify off the event loop; ``stored`` None (no such user) still costs one hash."""
    result = await asyncio.to_thread(passwords.verify, password,
                                     stored if stored is not None else passwords.dummy_hash())
    return result and stored is not None


def client_address(request: web.Request) -> str | None:
    trusted = request.app[CTX].settings.server.trusted_networks
    return client_ips(request.remote, request.headers.get("X-Forwarded-For", ""), trusted)[0]


async def sign_in(request: web.Request) -> web.Response:
    """``POST /api/v1/auth/sign-in`` ``{"username", "password"}`` → the session cookie."""
    ctx = request.app[CTX]
    if request.headers.get("Origin"):
        sessions.check_origin(request)
    body = schemas.parse(SignIn, await json_object(request))
    address = client_address(request)
    await lockout.check(ctx, body.username, address)
    request[ACTOR] = body.username  # a refused attempt is audited (a throttled one is not)
    user = await ctx.store.find_user(body.username)
    matches = await password_matches(body.password, user.password_hash if user else None)
    if user is None or not matches or user.disabled:
        await lockout.failed(ctx, body.username, address)
        raise UserAuthError("wrong username or password")
    await lockout.succeeded(ctx, user.username)
    await _end_current(request)
    sid = await sessions.create(ctx, user, address=address,
                                user_agent=request.headers.get("User-Agent"))
    await ctx.store.update_user(user.username, last_sign_in=ctx.clock.time())
    request[PRINCIPAL] = Principal(user.username, Role(user.role), Via.SESSION)
    response = ok(request, {"username": user.username, "role": user.role})
    sessions.set_cookie(response, request, ctx, sid)
    return response


async def _end_current(request: web.Request) -> Principal | None:
    """End the session whose cookie came with the request; its principal, if it was live."""
    sid = request.cookies.get(sessions.COOKIE)
    if not sid:
        return None
    ctx = request.app[CTX]
    principal = await sessions.lookup(ctx, sid)
    if principal is not None and principal.session is not None:
        await sessions.end(ctx, principal.session, principal.name)
    return principal


async def sign_out(request: web.Request) -> web.Response:
    """``POST /api/v1/auth/sign-out``: ends the session (if any) and clears the cookie."""
    if request.cookies.get(sessions.COOKIE) and request.headers.get("Origin"):
        sessions.check_origin(request)
    principal = await _end_current(request)
    if principal is not None:
        request[PRINCIPAL] = principal
    response = ok(request, None)
    sessions.clear_cookie(response, request, request.app[CTX])
    return response


async def me(request: web.Request) -> web.Response:
    """``GET /api/v1/auth/me``: who the request authenticates as."""
    principal = principal_of(request)
    return ok(request, {"username": principal.name, "role": principal.role.value,
                        "via": principal.via.value})


def signed_in(request: web.Request, what: str) -> Principal:
    """The caller, a console session's user; BadRequest for a token or access key."""
    principal = principal_of(request)
    if principal.via is not Via.SESSION:
        raise BadRequest(f"only a signed-in user has {what} (tokens and access keys do not)")
    return principal


async def list_sessions(request: web.Request) -> web.Response:
    """``GET /api/v1/auth/sessions``: the caller's own live sessions, last used first."""
    principal = signed_in(request, "sessions")
    return ok(request, await sessions.list_of(request.app[CTX], principal.name, principal.session))


async def sign_out_everywhere(request: web.Request) -> web.Response:
    """``POST /api/v1/auth/sign-out-everywhere``: ends every session of the caller, this one
    included, and clears the cookie."""
    ctx = request.app[CTX]
    principal = signed_in(request, "sessions")
    ended = await sessions.end_all(ctx, principal.name)
    response = ok(request, {"username": principal.name, "ended": ended})
    sessions.clear_cookie(response, request, ctx)
    return response


async def change_password(request: web.Request) -> web.Response:
    """``POST /api/v1/auth/password`` ``{"oldPassword", "newPassword"}``: a signed-in user's
    own password; the user's other sessions end."""
    ctx = request.app[CTX]
    principal = signed_in(request, "a password")
    body = schemas.parse(PasswordChange, await json_object(request))
    user = await ctx.store.find_user(principal.name)
    if user is None or not await password_matches(body.old_password, user.password_hash):
        raise UserAuthError("wrong password")
    hashed = await asyncio.to_thread(passwords.hash_password, body.new_password)
    await ctx.store.update_user(user.username, password_hash=hashed)
    await sessions.end_all(ctx, user.username, keep=principal.session)
    return ok(request, {"username": user.username})


def add_routes(app: web.Application) -> None:
    routing.post(app, f"{PATH}/sign-in", sign_in, AUDITED_PUBLIC)
    routing.post(app, f"{PATH}/sign-out", sign_out, AUDITED_PUBLIC)
    routing.get(app, f"{PATH}/me", me, VIEWER)
    routing.post(app, f"{PATH}/password", change_password, VIEWER)
    routing.get(app, f"{PATH}/sessions", list_sessions, VIEWER)
    routing.post(app, f"{PATH}/sign-out-everywhere", sign_out_everywhere, VIEWER)
