"""A cron job's run-time overrides (``dynamicCronExpr``, ``dynamicCronExprExpireTime``,
``pauseExpireTime``, set by DFF.CRON_JOB.set_cron_expr / pause(expires)) belong to one
deployment: as DataFlux Func, which keeps them in Redis, never exports them, an export leaves
them out, an import ignores them in its file and keeps the ones the job already has."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from fluxfunc_common import scripts
from fluxfunc_common.crypto import Cipher
from fluxfunc_common.settings import StoreSettings
from fluxfunc_common.store import Entity, SqlStore, open_store
from fluxfunc_common.transfer import archive
from fluxfunc_common.transfer.bundle import Bundle
from fluxfunc_common.transfer.exporting import export_bundle
from fluxfunc_common.transfer.importing import import_bundle

CODE = '@DFF.API("Tick")\ndef tick():\n    return "tick"\n'
CIPHER = Cipher("cron-overrides-secret-0123456789abcdef")
OVERRIDES = {"dynamicCronExpr": "*/5 * * * *", "dynamicCronExprExpireTime": 4102444800.0,
             "pauseExpireTime": 4102444800.0}


def cron_row(**extra: object) -> dict[str, object]:
    return {"id": "cron-tick", "funcId": "demo__tick.tick", "kwargs": {}, "cronExpr": "0 * * * *",
            "timezone": "UTC", "misfirePolicy": "fireOnce", "overlapPolicy": "skip",
            "expireTime": None, "isDisabled": False, "taskRecordLimit": None, "tags": [],
            "note": None, **extra}


async def populate(store: SqlStore, **overrides: object) -> None:
    await store.create(Entity.SCRIPT_SET, {"id": "demo", "title": "Demo", "description": None,
                                           "requirements": None})
    await store.publish_script("demo__tick", CODE, scripts.analyse("demo__tick", CODE).funcs,
                               create={"scriptSetId": "demo", "title": "tick", "description": None,
                                       "code": CODE})
    await store.create(Entity.CRON_JOB, cron_row(**overrides))


@pytest.fixture
async def source(tmp_path: Path) -> AsyncIterator[SqlStore]:
    async with open_store(StoreSettings(url=f"sqlite:///{tmp_path / 'a.db'}"), migrate=True) as s:
        assert isinstance(s, SqlStore)
        await populate(s, **OVERRIDES)
        yield s


@pytest.fixture
def target(sql_store: SqlStore) -> SqlStore:
    return sql_store


async def test_export_leaves_the_overrides_out(source: SqlStore) -> None:
    stored = await source.get(Entity.CRON_JOB, "cron-tick")
    assert stored["dynamicCronExpr"] == "*/5 * * * *"  # what the script set is stored
    bundle = await export_bundle(source, CIPHER)
    (row,) = bundle.rows[Entity.CRON_JOB]
    assert not set(OVERRIDES) & set(row) and row["cronExpr"] == "0 * * * *"
    assert b"dynamicCronExpr" not in archive.write(bundle)


async def test_import_ignores_them_and_keeps_the_jobs_own(source: SqlStore, target: SqlStore) -> None:
    """A file holding overrides (written by hand, or by an older export) sets none; a job
    already here keeps the overrides its scripts set, also when the import updates it."""
    exported = await export_bundle(source, CIPHER)
    with_overrides = Bundle(rows={**exported.rows, Entity.CRON_JOB: [cron_row(**OVERRIDES)]})
    plan = await import_bundle(target, with_overrides, CIPHER)
    assert plan.counts()["create"] == 3
    created = await target.get(Entity.CRON_JOB, "cron-tick")
    assert not set(OVERRIDES) & set(created)

    own = {"dynamicCronExpr": "*/10 * * * *", "dynamicCronExprExpireTime": None,
           "pauseExpireTime": 4102444900.0}
    await target.update(Entity.CRON_JOB, "cron-tick", own)
    again = await import_bundle(target, with_overrides, CIPHER)
    assert not again.writes()  # the overrides are no difference
    changed = Bundle(rows={**exported.rows,
                           Entity.CRON_JOB: [cron_row(cronExpr="30 * * * *", **OVERRIDES)]})
    update = await import_bundle(target, changed, CIPHER, overwrite=True)
    (step,) = update.writes()
    assert step.why == "changes cronExpr"
    stored = await target.get(Entity.CRON_JOB, "cron-tick")
    assert stored["cronExpr"] == "30 * * * *"
    assert {k: stored.get(k) for k in own} == own
