"""Telling the other processes that stored objects changed (docs/internals.md, Notifications).

One function per kind of change, each queueing its Redis commands on a pipeline the caller
executes, so the management API (``fluxfunc_server.handlers``) and an import
(:mod:`fluxfunc_common.transfer.applying`) announce a change the same way:

- a script published or deleted: :func:`script_changed` (the publish generation and its change
  log entry, then the ``scriptPublished``/``scriptDeleted`` event) and, for the funcs whose
  ``fixedCronExpr`` appeared, changed or went, :func:`fixed_cron_changed`;
- a cron job written: :func:`cron_changed` (the ``cron_changed`` stream the Beat follows);
- an env variable written: :func:`env_changed` (``envVariableChanged`` event);
- a connector written: :func:`connectors_changed` (``connectors:version``: workers drop cached
  configs, the Beat restarts subscriptions);
- a script set written: :func:`packages_changed` (its requirements may change the package set).

Sync/async APIs and API auth definitions need no announcement: the Servers' catalogue keeps
them for its TTL (2 s) only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson

from fluxfunc_common import scriptchanges
from fluxfunc_common.keys import Keys
from fluxfunc_common.models import FIXED_CRON_PREFIX

CRON_CHANGED_MAXLEN = 10_000  # entries the cron_changed stream keeps (approximately)

Pipeline = Any  # redis.asyncio's Pipeline (untyped): commands are queued, the caller executes


async def script_changed(pipe: Pipeline, keys: Keys, script_id: str, *,
                         deleted: bool = False) -> None:
    """Workers: the next publish generation logging ``script_id``, then the event."""
    await scriptchanges.announce(pipe, keys, script_id, pipe)
    kind = "scriptDeleted" if deleted else "scriptPublished"
    pipe.publish(keys.events(), orjson.dumps({"type": kind, "scriptId": script_id}))


def cron_changed(pipe: Pipeline, keys: Keys, cron_id: str, op: str) -> None:
    """``XADD cron_changed MAXLEN ~ 10000 * id <cron> op <create|update|delete>``."""
    pipe.xadd(keys.cron_changed(), {"id": cron_id, "op": op}, maxlen=CRON_CHANGED_MAXLEN,
              approximate=True)


def fixed_cron_changed(pipe: Pipeline, keys: Keys, before: Mapping[str, str | None],
                       after: Mapping[str, str | None]) -> None:
    """The Beat: each func (id → its ``fixedCronExpr`` or None) whose implicit cron job
    appeared, changed or went between ``before`` and ``after``."""
    for func_id in sorted(set(before) | set(after)):
        was, now = before.get(func_id), after.get(func_id)
        if was == now:
            continue
        op = "create" if not was else "delete" if not now else "update"
        cron_changed(pipe, keys, FIXED_CRON_PREFIX + func_id, op)


def env_changed(pipe: Pipeline, keys: Keys, env_id: str, op: str) -> None:
    """Workers drop their cached value of the env variable (else it lives 1 s)."""
    pipe.publish(keys.events(), orjson.dumps({"type": "envVariableChanged", "id": env_id,
                                              "op": op}))


def connectors_changed(pipe: Pipeline, keys: Keys) -> None:
    """Workers drop cached connector configs; the Beat re-reads subscriptions."""
    pipe.incr(keys.connectors_version())


def packages_changed(pipe: Pipeline, keys: Keys) -> None:
    """Workers re-resolve the package set (they poll this counter)."""
    pipe.incr(keys.python_packages_version())
