"""The OpenAPI operations of the accounts routes: sign-in and sessions, users, creating
tokens and access keys, the audit log and scripts' editing locks (``op`` is
:class:`fluxfunc_server.openapi.Op`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from fluxfunc_server.handlers import audit, auth, locks, users
from fluxfunc_server.schemas_accounts import (
    AuditListQuery,
    CredentialCreate,
    LockTake,
    PasswordChange,
    SignIn,
    UserCreate,
    UserUpdate,
)

T = TypeVar("T")
_STR, _NUM, _BOOL = {"type": "string"}, {"type": "number"}, {"type": "boolean"}
_NULLABLE_NUM = {"type": ["number", "null"]}
_ROLE = {"type": "string", "enum": ["viewer", "developer", "admin"]}
_WHO_PROPS = {"username": _STR, "role": _ROLE}
_WHO = {"type": "object", "properties": _WHO_PROPS}
_ME = {"type": "object", "properties": {"username": _STR, "role": _ROLE, "via": {
    "type": "string", "enum": ["session", "token", "accessKey"]}}}
_USER = {"type": "object", "properties": {"username": _STR, "role": _ROLE, "createdAt": _NUM,
                                          "lastSignInAt": _NULLABLE_NUM, "isDisabled": _BOOL}}
_SESSION = {"type": "object", "properties": {
    "createdAt": _NUM, "lastSeenAt": _NUM, "address": {"type": ["string", "null"]},
    "userAgent": {"type": ["string", "null"]}, "isCurrent": _BOOL}}
_LOCK = {"type": "object", "properties": {"holder": _STR, "expiresAt": _NUM}}
_LOCK_OR_NULL = {"anyOf": [_LOCK, {"type": "null"}]}
_AUDIT = {"type": "object", "properties": {
    "id": _STR, "time": _NUM, "username": _STR, "via": _STR, "method": _STR, "route": _STR,
    "entityId": {"type": ["string", "null"]}, "status": {"type": "integer"}}}


def operations(op: Callable[..., T]) -> list[T]:
    """Every accounts operation, in document order."""
    a, u = auth.PATH, users.PATH
    ops = [
        op("post", f"{a}/sign-in", "Sign in to the console: sets the session cookie (429 while "
           "throttled)", "auth", _WHO, body=SignIn, auth=[]),
        op("post", f"{a}/sign-out", "End the console session (releasing the editing locks taken "
           "through it) and clear its cookie", "auth",
           auth=[]),
        op("get", f"{a}/me", "Who the request authenticates as", "auth", _ME),
        op("post", f"{a}/password", "Change one's own password (the user's other sessions end)",
           "auth", _WHO, body=PasswordChange),
        op("get", f"{a}/sessions", "One's own console sessions, last used first (400 for a "
           "token or access key)", "auth", {"type": "array", "items": _SESSION}),
        op("post", f"{a}/sign-out-everywhere", "End all of one's console sessions, this one "
           "included, releasing their editing locks, and clear the cookie", "auth",
           {"type": "object", "properties": {"username": _STR, "ended": {"type": "integer"}}}),
        op("get", u, "List console users", "admin", {"type": "array", "items": _USER}),
        op("post", u, "Create a user (a generated password is answered once)", "admin",
           {"type": "object", "properties": {**_WHO_PROPS, "password": _STR}}, body=UserCreate),
        op("patch", u + "/{username}", "Change a user's role, state or password", "admin",
           _USER, body=UserUpdate),
        op("delete", u + "/{username}", "Delete a user", "admin",
           {"type": "object", "properties": {"username": _STR}}),
        op("get", audit.PATH, "The audit log, newest first (?before=<id> pages)", "admin",
           {"type": "array", "items": _AUDIT}, query=AuditListQuery),
        op("get", locks.PATH, "The editing lock of a script, or null", "management", _LOCK_OR_NULL),
        op("post", locks.PATH, "Take or renew the editing lock (409 when another holds it, "
           "unless force)", "management", _LOCK, body=LockTake),
        op("delete", locks.PATH, "Release one's own editing lock", "management"),
    ]
    for kind, secret in (("tokens", "token"), ("access-keys", "secret")):
        ops.append(op("post", f"/api/v1/admin/{kind}", f"Create one of the {kind} with a role "
                      f"(its {secret} is answered only now)", "admin",
                      {"type": "object", "properties": {"id": _STR, secret: _STR, "role": _ROLE}},
                      body=CredentialCreate))
    return ops
