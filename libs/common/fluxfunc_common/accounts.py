"""Console users, shared by ``fluxfunc admin create-user``, ``fluxfunc up`` (the first
``admin``) and the Server's ``/api/v1/users``: a user is stored with a scrypt hash of its
password (:mod:`fluxfunc_common.passwords`), a generated one when none is given."""

from __future__ import annotations

import asyncio
import re

from fluxfunc_common import passwords
from fluxfunc_common.roles import Role
from fluxfunc_common.store import AccountStore

FIRST_ADMIN = "admin"
# no ":" so a username never looks like ``token:<id>`` or ``ak:<id>`` in the audit log
USERNAME = r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$"


async def add_user(store: AccountStore, username: str, role: Role,
                   password: str | None = None) -> str | None:
    """Store a user; the generated password when none was given (shown once), else None.
    Conflict when the name is taken; ValueError for a malformed name or a too short or too
    long password."""
    if not re.match(USERNAME, username):
        raise ValueError("a username is 1-64 letters, digits or `_.@-`, the first a letter or digit")
    if password is not None:
        passwords.check_strength(password)
    chosen = password or passwords.generate_password()
    hashed = await asyncio.to_thread(passwords.hash_password, chosen)
    await store.add_user(username, role.value, hashed)
    return None if password is not None else chosen


async def ensure_first_admin(store: AccountStore) -> str | None:
    """Create the ``admin`` user when there are no users yet; its password (else None)."""
    if await store.count_users():
        return None
    return await add_user(store, FIRST_ADMIN, Role.ADMIN)
