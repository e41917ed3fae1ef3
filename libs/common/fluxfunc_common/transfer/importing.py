"""An import from plan to notification: ``fluxfunc import``, ``fluxfunc migrate-from-dff``
and ``POST /api/v1/import`` all go through :func:`import_bundle`."""

from __future__ import annotations

import redis.asyncio as aioredis

from fluxfunc_common.crypto import Cipher
from fluxfunc_common.keys import Keys
from fluxfunc_common.store import Store
from fluxfunc_common.transfer.applying import apply_plan, funcs_before, notify
from fluxfunc_common.transfer.bundle import Bundle
from fluxfunc_common.transfer.planning import Plan, make_plan


async def import_bundle(store: Store, bundle: Bundle, cipher: Cipher, *, overwrite: bool = False,
                        dry_run: bool = False, skip_broken: bool = False,
                        redis: aioredis.Redis | None = None, keys: Keys | None = None) -> Plan:
    """Plan the import; unless ``dry_run``, write it in one transaction (Conflict, and nothing
    written, when the plan has a conflict) and tell workers and Beat through ``redis``."""
    plan = await make_plan(store, bundle, cipher, overwrite=overwrite, skip_broken=skip_broken)
    if dry_run or not (plan.writes() or plan.conflicts()):
        return plan
    before = await funcs_before(store, plan)
    await apply_plan(store, plan, cipher)
    if redis is not None and keys is not None:
        await notify(redis, keys, plan, before)
    return plan
