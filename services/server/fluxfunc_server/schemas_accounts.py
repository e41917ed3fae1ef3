"""Request models of the accounts routes: sign-in, passwords, users, tokens, audit, locks."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from fluxfunc_common.accounts import USERNAME
from fluxfunc_common.passwords import MAX_PASSWORD_CHARS, MIN_PASSWORD_CHARS
from fluxfunc_common.roles import Role
from fluxfunc_server.schemas import Body, Query

Username = Annotated[str, Field(pattern=USERNAME, max_length=64)]
NewPassword = Annotated[str, Field(min_length=MIN_PASSWORD_CHARS, max_length=MAX_PASSWORD_CHARS)]
AnyPassword = Annotated[str, Field(max_length=MAX_PASSWORD_CHARS)]
Name = Annotated[str, Field(min_length=1, max_length=191)]


class SignIn(Body):
    username: Annotated[str, Field(min_length=1, max_length=191)]
    password: AnyPassword


class PasswordChange(Body):
    old_password: AnyPassword
    new_password: NewPassword


class UserCreate(Body):
    username: Username
    role: Role = Field(strict=False)
    password: NewPassword | None = Field(default=None, description=(
        "generated (and answered once) when omitted"))


class UserUpdate(Body):
    role: Role | None = Field(default=None, strict=False)
    is_disabled: bool | None = None
    password: NewPassword | None = None


class CredentialCreate(Body):
    name: Name
    role: Role = Field(default=Role.ADMIN, strict=False)


class AuditListQuery(Query):
    limit: int = Field(default=50, ge=1, le=500)
    before: Annotated[str, Field(max_length=64)] | None = None
    username: Annotated[str, Field(max_length=191)] | None = None
    route: Annotated[str, Field(max_length=191)] | None = None


class LockTake(Body):
    force: bool = False
