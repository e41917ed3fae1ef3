"""`fluxfunc admin`: credentials for the management API (SPEC §4.3, §8).

- ``create-token [--config PATH] [--name NAME]``: a new admin bearer token. Only its SHA-256
  is stored; the token itself is printed once, as the last line of the output, so a script
  can take it with ``tail -n 1``.
- ``create-access-key [--config PATH] [--name NAME]``: a DataFlux Func style access key for
  the SDK's request signing; its secret is stored encrypted with ``secret`` and printed once
  (last two lines: the key id, then the secret).
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
from typing import Any

from fluxfunc_common import ids
from fluxfunc_common.crypto import Cipher, hash_token, new_token
from fluxfunc_common.errors import FluxfuncError, RetryableError
from fluxfunc_common.lifecycle import fail
from fluxfunc_common.settings import Settings, load_settings
from fluxfunc_common.store import open_store


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("admin", help="admin credentials: create-token, create-access-key")
    actions = parser.add_subparsers(dest="admin_action", required=True, metavar="ACTION")
    for name, text in (("create-token", "create an admin bearer token (printed once, last line)"),
                       ("create-access-key", "create a DataFlux Func access key (id and secret)")):
        action = actions.add_parser(name, help=text)
        action.add_argument("--config", metavar="PATH",
                            help="config file (default: $FLUXFUNC_CONFIG or ./fluxfunc.yaml)")
        action.add_argument("--name", default="", help="a note saying who or what uses it")
    parser.set_defaults(func=run)


async def create_token(settings: Settings, name: str = "") -> tuple[str, str]:
    """Store a new admin token's hash; return (token id, token)."""
    token = new_token()
    token_id = ids.entity_id("tok")
    async with open_store(settings.store) as store:
        await store.add_admin_token(token_id, hash_token(token), name or token_id)
    return token_id, token


async def create_access_key(settings: Settings, name: str = "") -> tuple[str, str]:
    """Store a new access key (secret encrypted with ``secret``); return (id, secret)."""
    cipher = Cipher(settings.require_secret())
    ak_id = ids.entity_id("ak")
    secret = secrets.token_urlsafe(24)
    async with open_store(settings.store) as store:
        await store.add_access_key(ak_id, cipher.encrypt(secret), name or ak_id)
    return ak_id, secret


def run(args: argparse.Namespace) -> int:
    """Entry point of ``fluxfunc admin ACTION``; errors become one line and a non-zero exit."""
    try:
        settings = load_settings(args.config)
        if args.admin_action == "create-token":
            token_id, token = asyncio.run(create_token(settings, args.name))
            print(f"admin token {token_id} created; it is shown only now:", flush=True)
            print(token, flush=True)
        else:
            ak_id, secret = asyncio.run(create_access_key(settings, args.name))
            print("access key created; its secret is shown only now (id, then secret):", flush=True)
            print(ak_id, flush=True)
            print(secret, flush=True)
    except RetryableError as exc:
        return fail(exc.message, 3)
    except FluxfuncError as exc:
        return fail(exc.message)
    return 0
