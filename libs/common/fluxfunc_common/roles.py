"""Roles of the people and credentials that manage a deployment (docs/security.md, "Roles").

``viewer`` reads; ``developer`` also changes scripts, entry points, env variables and runs
functions; ``admin`` also manages users, tokens, access keys, API auth definitions,
connectors, import/export and reads the audit log. Each role includes the ones below it.
"""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    """A role, comparable by what it may do (``Role.ADMIN.covers(Role.VIEWER)``)."""

    VIEWER = "viewer"
    DEVELOPER = "developer"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _RANK[self]

    def covers(self, needed: Role) -> bool:
        """Whether this role may do what ``needed`` may."""
        return self.rank >= needed.rank


_RANK = {Role.VIEWER: 1, Role.DEVELOPER: 2, Role.ADMIN: 3}
