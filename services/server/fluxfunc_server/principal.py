"""Who is calling: the :class:`Principal` a request authenticated as, stored on the request
by the access middleware (:mod:`fluxfunc_server.routing`) for handlers and the audit log."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from aiohttp import web

from fluxfunc_common.errors import UserAuthError
from fluxfunc_common.roles import Role


class Via(StrEnum):
    """The credential a principal presented."""

    SESSION = "session"
    TOKEN = "token"
    ACCESS_KEY = "accessKey"


@dataclass(frozen=True)
class Principal:
    """A console user (``name`` = username), or a token/access key (``token:<id>``,
    ``ak:<id>``), with its role; ``session`` is the hash of a console session's cookie."""

    name: str
    role: Role
    via: Via
    session: str | None = None


PRINCIPAL = web.RequestKey("fluxfunc_principal", Principal)


def principal_of(request: web.Request) -> Principal:
    """The request's principal (routes with a role level always have one)."""
    found: Principal | None = request.get(PRINCIPAL)
    if found is None:
        raise UserAuthError("authentication required")
    return found
