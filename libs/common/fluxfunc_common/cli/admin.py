"""`fluxfunc admin`: credentials for the management API and console users.

- ``create-token [--config PATH] [--name NAME] [--role ROLE]``: a new bearer token (role
  ``admin`` unless given). Only its SHA-256 is stored; the token itself is printed once, as
  the last line of the output, so a script can take it with ``tail -n 1``.
- ``create-access-key [--config PATH] [--name NAME] [--role ROLE]``: a DataFlux Func style
  access key for the SDK's request signing; its secret is stored encrypted with ``secret``
  and printed once (last two lines: the key id, then the secret).
- ``create-user NAME --role ROLE [--password-stdin]``: a console user; the generated
  password is printed once (last line), or the password is read from stdin.
- ``list-tokens`` / ``list-access-keys``: one line per credential (id, name, created, role,
  and ``revoked`` for a revoked token); ``revoke-token ID`` / ``revoke-access-key ID``.
- ``rotate-secret``: re-encrypt every stored secret with ``secret``; run it after moving the
  old secret to ``previous_secrets`` (see docs/security.md).

The instance is found as every command finds it (:mod:`fluxfunc_common.cli.instance`); the first
output line names it.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime
from typing import Any

from fluxfunc_common import accounts, credentials
from fluxfunc_common.cli.instance import CONFIG_HELP, announce, load_instance
from fluxfunc_common.crypto import cipher_for
from fluxfunc_common.errors import BadRequest, FluxfuncError, RetryableError
from fluxfunc_common.lifecycle import fail
from fluxfunc_common.roles import Role
from fluxfunc_common.settings import Settings
from fluxfunc_common.store import CredentialKind, open_store


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("admin", help="credentials: create, list and revoke tokens and access "
                                           "keys; create console users; rotate-secret")
    actions = parser.add_subparsers(dest="admin_action", required=True, metavar="ACTION")
    for name, text in (("create-token", "create an admin bearer token (printed once, last line)"),
                       ("create-access-key", "create a DataFlux Func access key (id and secret)")):
        action = actions.add_parser(name, help=text)
        action.add_argument("--config", metavar="PATH", help=CONFIG_HELP)
        action.add_argument("--name", default="", help="a note saying who or what uses it")
        action.add_argument("--role", choices=[r.value for r in Role], default=Role.ADMIN.value,
                            help="what it may do (default admin)")
    user = actions.add_parser("create-user", help="create a console user (prints a generated "
                                                  "password once, last line)")
    user.add_argument("username")
    user.add_argument("--role", choices=[r.value for r in Role], required=True)
    user.add_argument("--password-stdin", action="store_true",
                      help="read the password from stdin instead of generating one")
    user.add_argument("--config", metavar="PATH", help=CONFIG_HELP)
    for name, text, target in _MANAGE_ACTIONS:
        action = actions.add_parser(name, help=text)
        action.add_argument("--config", metavar="PATH", help=CONFIG_HELP)
        if target:
            action.add_argument("id", help=f"the {target} id (see list-{target}s)")
    parser.set_defaults(func=run)


_MANAGE_ACTIONS = (
    ("list-tokens", "list admin tokens (id, name, created, revoked)", None),
    ("revoke-token", "revoke an admin token (every Server refuses it within 1 s)", "token"),
    ("list-access-keys", "list access keys (id, name, created)", None),
    ("revoke-access-key", "delete an access key (refused at once)", "access-key"),
    ("rotate-secret", "re-encrypt every stored secret with `secret` (the old one must be in "
     "`previous_secrets`)", None),
)


async def create_token(settings: Settings, name: str = "", role: str = "admin") -> tuple[str, str]:
    """Store a new token's hash with ``role``; return (token id, token)."""
    async with open_store(settings.store) as store:
        return await credentials.issue_token(store, name, role)


async def create_access_key(settings: Settings, name: str = "", role: str = "admin") -> tuple[str, str]:
    """Store a new access key (secret encrypted with ``secret``); return (id, secret)."""
    cipher = cipher_for(settings)
    async with open_store(settings.store) as store:
        return await credentials.issue_access_key(store, cipher, name, role)


async def create_user(settings: Settings, username: str, role: Role,
                      password: str | None) -> str | None:
    """Store a console user; the generated password when none was given."""
    async with open_store(settings.store) as store:
        try:
            return await accounts.add_user(store, username, role, password)
        except ValueError as exc:
            raise BadRequest(str(exc)) from None


def _read_password() -> str:
    return sys.stdin.readline().rstrip("\r\n")


def run(args: argparse.Namespace) -> int:
    """Entry point of ``fluxfunc admin ACTION``; errors become one line and a non-zero exit."""
    try:
        settings, instance = load_instance(args.config)
        announce(settings, instance)
        if args.admin_action == "create-token":
            token_id, token = asyncio.run(create_token(settings, args.name, args.role))
            print(f"{args.role} token {token_id} created; it is shown only now:", flush=True)
            print(token, flush=True)
        elif args.admin_action == "create-user":
            given = _read_password() if args.password_stdin else None
            made = asyncio.run(create_user(settings, args.username, Role(args.role), given))
            print(f"user {args.username} ({args.role}) created" +
                  ("; its password is shown only now:" if made else ""), flush=True)
            if made:
                print(made, flush=True)
        elif args.admin_action == "create-access-key":
            ak_id, secret = asyncio.run(create_access_key(settings, args.name, args.role))
            print("access key created; its secret is shown only now (id, then secret):", flush=True)
            print(ak_id, flush=True)
            print(secret, flush=True)
        else:
            asyncio.run(manage(settings, args.admin_action, getattr(args, "id", None)))
    except RetryableError as exc:
        return fail(exc.message, 3)
    except FluxfuncError as exc:
        return fail(exc.message)
    return 0


async def manage(settings: Settings, action: str, target: str | None) -> None:
    """list-tokens, revoke-token, list-access-keys, revoke-access-key, rotate-secret."""
    kind = CredentialKind.TOKEN if "token" in action else CredentialKind.ACCESS_KEY
    async with open_store(settings.store) as store:
        if action.startswith("list-"):
            for c in await credentials.list_credentials(store, kind):
                created = datetime.fromtimestamp(c.created, UTC).isoformat(timespec="seconds")
                print(f"{c.id}\t{c.name}\t{created}\t{c.role}" + ("\trevoked" if c.revoked else ""),
                      flush=True)
        elif action.startswith("revoke-") and target:
            await credentials.revoke(store, kind, target)
            print(f"{target} revoked", flush=True)
        elif action == "rotate-secret":
            done = await credentials.rotate_secret(store, cipher_for(settings))
            print(f"re-encrypted with `secret`: {done.access_keys} access key(s), "
                  f"{done.entities} entity(ies); `previous_secrets` can now be removed", flush=True)
