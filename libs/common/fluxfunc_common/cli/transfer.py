"""`fluxfunc export`, `fluxfunc import` and `fluxfunc migrate-from-dff`.

- ``export [--script-set ID …] [--with-secrets] FILE.zip``: script sets with their scripts
  (draft and published code), env variables, API auth definitions, sync/async APIs, cron jobs
  and connectors (with their subscriptions) into a deterministic zip. Secrets (password env
  values, API-auth values, connector passwords and keys) only with ``--with-secrets``,
  sealed with a passphrase (``$FLUXFUNC_TRANSFER_PASSPHRASE``, else asked).
- ``import [--dry-run] [--overwrite] [--password P] FILE.zip``: a fluxfunc export, DataFlux
  Func's own script-set export, or its 1.x password-protected package (``.func-pkg``, opened
  with ``--password``; a wrong one is an error and nothing is written). Prints the plan
  (create / update / unchanged / conflict per object); without ``--dry-run`` writes it in
  one transaction, or nothing when there is a conflict
  (an existing object that differs is one unless ``--overwrite``).
- ``migrate-from-dff --mysql mysql://user:pass@host:port/db [--dff-secret S] [--dry-run]``:
  everything movable in a DataFlux Func database, with the same ids; password env variables,
  API auth passwords and connector secrets decrypted with its ``SECRET``; cron jobs and
  connector subscriptions created disabled. Running it again changes nothing and says so.

The instance is found as every command finds it (:mod:`fluxfunc_common.cli.instance`); the first
output line names it. docs/migration-from-dataflux-func.md describes the commands.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import os
import sys
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

from fluxfunc_common.cli.instance import CONFIG_HELP, announce, load_instance
from fluxfunc_common.crypto import cipher_for
from fluxfunc_common.errors import BadRequest, FluxfuncError, RetryableError, Unavailable
from fluxfunc_common.lifecycle import fail
from fluxfunc_common.redisconn import open_redis
from fluxfunc_common.settings import Settings
from fluxfunc_common.store import open_store
from fluxfunc_common.transfer import archive, connectors, dff_database
from fluxfunc_common.transfer.bundle import CONNECTOR, Bundle
from fluxfunc_common.transfer.exporting import export_bundle
from fluxfunc_common.transfer.importing import import_bundle
from fluxfunc_common.transfer.planning import Plan, PlanConflict

PASSPHRASE_ENV = "FLUXFUNC_TRANSFER_PASSPHRASE"
DFF_PASSWORD_ENV = "DFF_PACKAGE_PASSWORD"  # not FLUXFUNC_*: those are settings
CRON_REMINDER = ("reminder: {n} cron job(s) were created DISABLED; disable them in DataFlux Func, "
                 "then enable them here (PATCH /api/v1/cron-jobs/{{id}} {{\"isDisabled\": false}})")
SUBSCRIPTION_REMINDER = ("reminder: the subscriptions of {n} connector(s) were created DISABLED; "
                         "disable them in DataFlux Func, then enable them here (PATCH "
                         "/api/v1/connectors/{{id}} with each topicHandler's isDisabled false)")


def add_parser(sub: Any) -> None:
    exp = sub.add_parser("export", help="export script sets, env variables and entry points to a zip")
    exp.add_argument("file", metavar="FILE.zip")
    exp.add_argument("--script-set", action="append", default=[], metavar="ID",
                     help="only this script set and its entry points (repeatable)")
    exp.add_argument("--with-secrets", action="store_true",
                     help=f"include secrets, sealed with a passphrase (${PASSPHRASE_ENV} or asked)")
    imp = sub.add_parser("import", help="import a fluxfunc or DataFlux Func export zip")
    imp.add_argument("file", metavar="FILE.zip")
    imp.add_argument("--dry-run", action="store_true", help="print the plan, write nothing")
    imp.add_argument("--overwrite", action="store_true",
                     help="replace existing objects that differ (else they are conflicts)")
    imp.add_argument("--password", metavar="P",
                     help="the password of a DataFlux Func 1.x package (.func-pkg; default "
                          f"${DFF_PASSWORD_ENV}, else the empty one)")
    mig = sub.add_parser("migrate-from-dff", help="move a DataFlux Func database's objects here")
    mig.add_argument("--mysql", required=True, metavar="URL",
                     help="mysql://user:pass@host:port/db of the DataFlux Func database")
    mig.add_argument("--dff-secret", metavar="S", default=os.environ.get("DFF_SECRET"),
                     help="DataFlux Func's SECRET, to decrypt password env variables, API "
                          "auth passwords and connector secrets (default $DFF_SECRET; without "
                          "it the variables and connectors move without them and "
                          "httpBasic/httpDigest auths are skipped)")
    mig.add_argument("--dry-run", action="store_true", help="print the plan, write nothing")
    for parser, func in ((exp, _export), (imp, _import), (mig, _migrate)):
        parser.add_argument("--config", metavar="PATH", help=CONFIG_HELP)
        parser.set_defaults(func=_runner(func))


def _passphrase(needed: bool) -> str | None:
    if not needed:
        return None
    if os.environ.get(PASSPHRASE_ENV):
        return os.environ[PASSPHRASE_ENV]
    if not sys.stdin.isatty():
        raise BadRequest(f"secrets need a passphrase: set ${PASSPHRASE_ENV}")
    return getpass.getpass("passphrase for the exported secrets: ")


async def _export(args: argparse.Namespace, settings: Settings) -> int:
    async with open_store(settings.store) as store:
        bundle = await export_bundle(store, cipher_for(settings), script_sets=args.script_set,
                                     with_secrets=args.with_secrets)
    data = archive.write(bundle, passphrase=_passphrase(args.with_secrets and bool(bundle.secrets)))
    await asyncio.to_thread(Path(args.file).write_bytes, data)
    counts = ", ".join(f"{n} {k}" for k, n in bundle.counts().items())
    sealed = f", {len(bundle.secrets)} secret(s) sealed" if args.with_secrets else ""
    print(f"exported {counts}{sealed} to {args.file}", flush=True)
    return 0


async def _apply(settings: Settings, bundle: Bundle, *, overwrite: bool, dry_run: bool,
                 skip_broken: bool = False) -> Plan:
    """Import ``bundle``; workers and Beat are told through Redis when it answers."""
    cipher = cipher_for(settings)
    async with open_store(settings.store) as store:
        if dry_run:
            return await import_bundle(store, bundle, cipher, overwrite=overwrite, dry_run=True,
                                       skip_broken=skip_broken)
        try:
            async with open_redis(settings.redis) as clients:
                return await import_bundle(store, bundle, cipher, overwrite=overwrite,
                                           skip_broken=skip_broken, redis=clients.main,
                                           keys=clients.keys)
        except Unavailable:
            plan = await import_bundle(store, bundle, cipher, overwrite=overwrite,
                                       skip_broken=skip_broken)
            print("note: Redis did not answer; running workers pick the changes up when "
                  "restarted", flush=True)
            return plan


def _report(plan: Plan, *, dry_run: bool) -> int:
    for line in plan.lines():
        print(line, flush=True)
    if plan.conflicts():
        print(f"nothing imported: {len(plan.conflicts())} conflict(s)", flush=True)
        return 1
    if not plan.writes():
        print("nothing to change: everything is already here", flush=True)
    elif dry_run:
        print("dry run: nothing written", flush=True)
    return 0


async def _import(args: argparse.Namespace, settings: Settings) -> int:
    data = await asyncio.to_thread(Path(args.file).read_bytes)
    sealed = archive.has_sealed_secrets(data)
    passphrase = _passphrase(True) if sealed and (os.environ.get(PASSPHRASE_ENV)
                                                  or sys.stdin.isatty()) else None
    password = args.password or os.environ.get(DFF_PASSWORD_ENV) or None
    bundle = archive.read(data, passphrase=passphrase, password=password)
    try:
        plan = await _apply(settings, bundle, overwrite=args.overwrite, dry_run=args.dry_run)
    except PlanConflict as exc:  # nothing written: print the plan with its conflicts
        plan = exc.plan
    return _report(plan, dry_run=args.dry_run)


async def _migrate(args: argparse.Namespace, settings: Settings) -> int:
    bundle = await asyncio.to_thread(dff_database.read, args.mysql, dff_secret=args.dff_secret,
                                     default_timezone=settings.beat.timezone)
    try:
        plan = await _apply(settings, bundle, overwrite=True, dry_run=args.dry_run,
                            skip_broken=True)
    except PlanConflict as exc:
        plan = exc.plan
    code = _report(plan, dry_run=args.dry_run)
    created = [s for s in plan.writes() if s.kind.value == "cron_jobs" and s.existing is None]
    if created:
        print(CRON_REMINDER.format(n=len(created)), flush=True)
    subscribing = [s for s in plan.writes() if s.kind is CONNECTOR and s.existing is None
                   and connectors.handler_funcs(s.row)]
    if subscribing:
        print(SUBSCRIPTION_REMINDER.format(n=len(subscribing)), flush=True)
    return code


Command = Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, int]]


def _runner(command: Command) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        try:
            settings, instance = load_instance(getattr(args, "config", None))
            announce(settings, instance)
            return asyncio.run(command(args, settings))
        except RetryableError as exc:
            return fail(exc.message, 3)
        except FluxfuncError as exc:
            return fail(exc.message)
        except OSError as exc:
            return fail(str(exc))
    return run
