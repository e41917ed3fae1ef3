"""``/api/v1/users``: console users (admin only). A user created without a password gets a
generated one, answered once. Disabling or deleting a user, or setting their password, ends
their sessions (a new role applies to their next request: sessions read it every time). The
last enabled admin cannot be demoted, disabled or deleted (nobody would be left to manage
users)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from fluxfunc_common import accounts, passwords
from fluxfunc_common.errors import Conflict
from fluxfunc_common.roles import Role
from fluxfunc_common.store import User
from fluxfunc_server import routing, schemas, sessions
from fluxfunc_server.access import ADMIN
from fluxfunc_server.appkeys import CTX
from fluxfunc_server.auditing import ENTITY_ID
from fluxfunc_server.context import AppContext
from fluxfunc_server.handlers.reading import json_object
from fluxfunc_server.responses import ok
from fluxfunc_server.schemas_accounts import UserCreate, UserUpdate

PATH = "/api/v1/users"


def view(user: User) -> dict[str, object]:
    """A user as the API shows it (never the hash)."""
    return {"username": user.username, "role": user.role, "createdAt": user.created,
            "lastSignInAt": user.last_sign_in, "isDisabled": user.disabled}


async def list_users(request: web.Request) -> web.Response:
    """``GET /api/v1/users``: every user, by name."""
    return ok(request, [view(u) for u in await request.app[CTX].store.list_users()])


async def create_user(request: web.Request) -> web.Response:
    """``POST /api/v1/users`` ``{"username", "role", "password"?}``."""
    ctx = request.app[CTX]
    body = schemas.parse(UserCreate, await json_object(request))
    request[ENTITY_ID] = body.username
    generated = await accounts.add_user(ctx.store, body.username, body.role, body.password)
    data: dict[str, object] = {"username": body.username, "role": body.role.value}
    if generated is not None:
        data["password"] = generated
    return ok(request, data)


async def _keeps_an_admin(ctx: AppContext, username: str) -> None:
    """Conflict when ``username`` is the last enabled admin."""
    admins = [u for u in await ctx.store.list_users() if u.role == Role.ADMIN and not u.disabled]
    if [u.username for u in admins] == [username]:
        raise Conflict("the last enabled admin cannot be demoted, disabled or deleted")


async def update_user(request: web.Request) -> web.Response:
    """``PATCH /api/v1/users/{username}`` ``{"role"?, "isDisabled"?, "password"?}``."""
    ctx = request.app[CTX]
    username = request.match_info["username"]
    body = schemas.parse(UserUpdate, await json_object(request))
    existing = await ctx.store.find_user(username)
    if existing is not None and (body.is_disabled or body.role not in (None, Role.ADMIN)):
        await _keeps_an_admin(ctx, username)
    hashed = None
    if body.password is not None:
        hashed = await asyncio.to_thread(passwords.hash_password, body.password)
    user = await ctx.store.update_user(
        username, role=body.role.value if body.role else None, disabled=body.is_disabled,
        password_hash=hashed)
    if body.is_disabled or hashed is not None:
        await sessions.end_all(ctx, username)
    return ok(request, view(user))


async def delete_user(request: web.Request) -> web.Response:
    """``DELETE /api/v1/users/{username}``."""
    ctx = request.app[CTX]
    username = request.match_info["username"]
    await _keeps_an_admin(ctx, username)
    await ctx.store.delete_user(username)
    await sessions.end_all(ctx, username)
    return ok(request, {"username": username})


def add_routes(app: web.Application) -> None:
    routing.get(app, PATH, list_users, ADMIN)
    routing.post(app, PATH, create_user, ADMIN)
    routing.add_route(app, "PATCH", PATH + "/{username}", update_user, ADMIN)
    routing.add_route(app, "DELETE", PATH + "/{username}", delete_user, ADMIN)
