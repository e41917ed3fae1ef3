"""Who may call a route: declared once, where the route is added (:mod:`fluxfunc_server.routing`),
and enforced by one middleware before the handler runs.

An :class:`Access` names the credentials a route needs; a :class:`Rule` adds, for the rare
route whose answer depends on what it is about, a test that opens it to anyone (a task of a
sync/async API is readable by its unguessable id). Missing credentials are a 401
``EUserAuth`` in the error envelope. Roles (admin, developer, viewer) would be further members
compared against the authenticated principal, a wrong one answering 403.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum

from aiohttp import web


class Access(Enum):
    """The credentials a route needs."""

    PUBLIC = "public"  # anyone (API entries check their own apiAuth; probes; one-time URLs)
    SIGNED = "signed"  # anyone, but access-key headers, when sent, must verify (SDK ping/echo)
    ADMIN = "admin"  # an admin bearer token or a signed access key


OpenWhen = Callable[[web.Request], Awaitable[bool]]


@dataclass(frozen=True)
class Rule:
    """The access of one route, and optionally when the route is open to anyone after all."""

    access: Access
    open_when: OpenWhen | None = None


ADMIN = Rule(Access.ADMIN)
PUBLIC = Rule(Access.PUBLIC)
SIGNED = Rule(Access.SIGNED)
