"""Who may call a route: declared once, where the route is added (:mod:`fluxfunc_server.routing`),
and enforced by one middleware before the handler runs.

An :class:`Access` names the credentials a route needs: none, or a principal (a console
session, a bearer token or an access key) whose :class:`~fluxfunc_common.roles.Role` covers
the route's level; a :class:`Rule` adds, for the rare route whose answer depends on what it is
about, a test that opens it to anyone (a task of a sync/async API is readable by its
unguessable id). Missing credentials are a 401 ``EUserAuth``, a role too low a 403
``EForbidden``. Which level each route has: docs/http-api.md, "Authentication".
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum

from aiohttp import web

from fluxfunc_common.roles import Role


class Access(Enum):
    """The credentials a route needs."""

    PUBLIC = "public"  # anyone (API entries check their own apiAuth; probes; one-time URLs)
    SIGNED = "signed"  # anyone, but access-key headers, when sent, must verify (SDK ping/echo)
    VIEWER = "viewer"  # any principal: reads
    DEVELOPER = "developer"  # scripts, entry points, env variables, runs
    ADMIN = "admin"  # users, tokens, access keys, API auths, connectors, import/export, audit

    @property
    def role(self) -> Role | None:
        """The least role a principal needs; None when no principal is needed."""
        return _ROLE_OF.get(self)


_ROLE_OF = {Access.VIEWER: Role.VIEWER, Access.DEVELOPER: Role.DEVELOPER, Access.ADMIN: Role.ADMIN}


OpenWhen = Callable[[web.Request], Awaitable[bool]]


@dataclass(frozen=True)
class Rule:
    """The access of one route, and optionally when the route is open to anyone after all."""

    access: Access
    open_when: OpenWhen | None = None
    audit: bool | None = None  # None: mutating calls are audited when a role is needed

    def audited(self, method: str) -> bool:
        """Whether a call with ``method`` to this route goes into the audit log."""
        if method not in MUTATING:
            return False
        return self.access.role is not None if self.audit is None else self.audit


MUTATING = frozenset({"POST", "PUT", "PATCH", "DELETE"})
VIEWER = Rule(Access.VIEWER)
DEVELOPER = Rule(Access.DEVELOPER)
ADMIN = Rule(Access.ADMIN)
PUBLIC = Rule(Access.PUBLIC)
SIGNED = Rule(Access.SIGNED)
