"""`fluxfunc db`: apply schema migrations (``upgrade``) or show the schema version (``version``).

The instance is found as every command finds it (:mod:`fluxfunc_common.cli.instance`); the first
output line names it.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from fluxfunc_common.cli.instance import CONFIG_HELP, announce, load_instance
from fluxfunc_common.errors import FluxfuncError, RetryableError
from fluxfunc_common.lifecycle import fail
from fluxfunc_common.store import connect
from fluxfunc_common.store.migrations import latest_version


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("db", help="database schema: upgrade, version")
    actions = parser.add_subparsers(dest="db_action", required=True, metavar="ACTION")
    for name, text in (("upgrade", "apply pending migrations"), ("version", "show the schema version")):
        action = actions.add_parser(name, help=text)
        action.add_argument("--config", metavar="PATH", help=CONFIG_HELP)
    parser.set_defaults(func=run)


async def _run(action: str, config: str | None) -> str:
    settings, instance = load_instance(config)
    announce(settings, instance)
    store = await connect(settings.store)
    try:
        before = await store.schema_version()
        if action == "version":
            return f"schema version {before} (this release expects {latest_version()})"
        after = await store.migrate()
        if after == before:
            return f"schema version {after} (up to date)"
        return f"schema version {after} (upgraded from {before})"
    finally:
        await store.close()


def run(args: argparse.Namespace) -> int:
    """Entry point of ``fluxfunc db ACTION``; errors become one line and a non-zero exit."""
    try:
        print(asyncio.run(_run(args.db_action, getattr(args, "config", None))), flush=True)
    except RetryableError as exc:
        return fail(exc.message, 3)
    except FluxfuncError as exc:
        return fail(exc.message)
    return 0
