"""Writing a plan: every create and update in ONE store transaction (all or nothing), then
telling workers and the Beat what changed.

Connectors are written in the same transaction (never tested: an import is ``skipTest``).
Scripts are written with their published code and their funcs replaced by those derived from
it, as a publish does (``publishVersion`` moves past the stored one when the code changed, so
workers drop their compiled copy). Secrets are sealed with this deployment's ``secret``; an
object imported without its secret keeps the one it has, if any.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

import redis.asyncio as aioredis

from fluxfunc_common import changes
from fluxfunc_common.crypto import Cipher
from fluxfunc_common.errors import Conflict
from fluxfunc_common.keys import Keys
from fluxfunc_common.models import Func
from fluxfunc_common.store import Entity, Store
from fluxfunc_common.store import connectors as stored_connectors
from fluxfunc_common.store.entities import insert_row, insert_sql, rewrite
from fluxfunc_common.store.sql import Session, SqlPart
from fluxfunc_common.transfer import connectors
from fluxfunc_common.transfer.bundle import CONNECTOR, RUNTIME, Row, strip_sealed
from fluxfunc_common.transfer.planning import Action, Plan, PlanConflict, Step
from fluxfunc_common.transfer.sealing import SEALED_IN, sealed_row


def _version(row: Mapping[str, object]) -> int:
    value = row.get("publishVersion")
    return int(value) if isinstance(value, (int, float, str)) and value else 0


def _script(step: Step, row: Row, now: float) -> Row:
    """Derived fields of a script: md5 of its code, publish time and version."""
    code = row.get("publishedCode")
    row["codeMD5"] = hashlib.md5(str(code if code is not None else row.get("code") or "")
                                 .encode()).hexdigest()
    old = step.existing or {}
    if code is not None:
        row["publishTime"] = old.get("publishTime") if old.get("publishedCode") == code else now
        if old and old.get("publishedCode") != code:
            row["publishVersion"] = max(_version(row), _version(old) + 1)
    return row


def _kept_secret(step: Step, row: Row) -> Row:
    """An update without a secret keeps the stored one (same env type / same apiAuth shape;
    a connector keeps all of its secrets)."""
    old = step.existing
    if old is None or step.secret is not None:
        return row
    if step.kind is CONNECTOR:
        return connectors.kept_secrets(row, old)
    if step.kind is Entity.ENV_VARIABLE and row.get("valueType") == "password" \
            and isinstance(old.get("valueCipher"), str):
        return {**row, "valueCipher": old["valueCipher"]}
    field = SEALED_IN.get(step.kind)
    if field is not None and strip_sealed(old.get(field)) == row.get(field):
        return {**row, field: old.get(field)}
    return row


def stored_row(step: Step, cipher: Cipher, now: float) -> Row:
    """What the store keeps for ``step``: the row with its secret sealed and its timestamps."""
    row = _kept_secret(step, sealed_row(step.kind, dict(step.row), step.secret, cipher))
    if step.kind is Entity.SCRIPT:
        row = _script(step, row, now)
    if step.kind is Entity.CRON_JOB:  # its scripts' run-time overrides stay as they are
        row.update({k: v for k, v in (step.existing or {}).items() if k in RUNTIME})
    created = (step.existing or {}).get("createTime", now)
    return {**row, "createTime": created, "updateTime": now}


class SqlTransfer(SqlPart):
    """The import's writes over the store's database, in one transaction."""

    async def write(self, plan: Plan, cipher: Cipher) -> None:
        if plan.conflicts():
            raise PlanConflict(plan)
        now = self.clock.time()
        try:
            async with self.db.transaction() as s:
                for step in plan.writes():
                    await self._write(s, step, stored_row(step, cipher, now), now)
        except Exception as exc:
            if self.dialect.is_duplicate(exc):
                raise Conflict("an imported object was created meanwhile: nothing imported, "
                               "plan again") from None
            raise

    async def _write(self, s: Session, step: Step, row: Row, now: float) -> None:
        if step.kind is CONNECTOR:
            model = connectors.model(row)
            await (stored_connectors.insert(s, model) if step.action is Action.CREATE
                   else stored_connectors.rewrite(s, model))
            return
        assert isinstance(step.kind, Entity)
        if step.action is Action.CREATE:
            await s.execute(insert_sql(step.kind), insert_row(step.kind, row))
        else:
            await rewrite(s, step.kind, row)
        if step.kind is Entity.SCRIPT:
            await s.execute("DELETE FROM funcs WHERE script_id = ?", (step.id,))
            funcs = [{"scriptId": step.id, "scriptSetId": row.get("scriptSetId"), **f,
                      "createTime": now, "updateTime": now} for f in step.funcs]
            if funcs:
                await s.executemany(insert_sql(Entity.FUNC),
                                    [insert_row(Entity.FUNC, f) for f in funcs])


async def apply_plan(store: Store, plan: Plan, cipher: Cipher) -> None:
    """Write ``plan`` (Conflict when it has conflicts; then nothing is written)."""
    if not isinstance(store, SqlPart):
        raise TypeError("importing needs the SQL store")
    await SqlTransfer(store.db).write(plan, cipher)


async def funcs_before(store: Store, plan: Plan) -> dict[str, list[Mapping[str, object]]]:
    """The stored funcs of every script the plan rewrites (to tell the Beat what changed)."""
    out: dict[str, list[Mapping[str, object]]] = {}
    for step in plan.writes():
        if step.kind is Entity.SCRIPT and step.existing is not None:
            page = await store.list(Entity.FUNC, filters={"scriptId": step.id}, limit=10_000)
            out[step.id] = list(page.items)
    return out


def _fixed(funcs: list[Mapping[str, object]]) -> dict[str, str | None]:
    return {str(f["id"]): Func.of(f).options.fixed_cron_expr for f in funcs}


async def notify(redis: aioredis.Redis, keys: Keys, plan: Plan,
                 old_funcs: Mapping[str, list[Mapping[str, object]]]) -> None:
    """Announce every object written as the management API announces it
    (:mod:`fluxfunc_common.changes`): scripts (generation + change log + event, fixed-cron
    funcs to the Beat), script sets (package set), env variables, cron jobs, connectors."""
    writes = plan.writes()
    if not writes:
        return
    pipe = redis.pipeline(transaction=False)
    if any(s.kind is Entity.SCRIPT_SET for s in writes):
        changes.packages_changed(pipe, keys)  # requirements may have changed the package set
    if any(s.kind is CONNECTOR for s in writes):
        changes.connectors_changed(pipe, keys)
    for step in writes:
        if step.kind is Entity.SCRIPT:
            await changes.script_changed(pipe, keys, step.id)
            changes.fixed_cron_changed(pipe, keys, _fixed(list(old_funcs.get(step.id, []))),
                                       _fixed([dict(f) for f in step.funcs]))
        elif step.kind is Entity.ENV_VARIABLE:
            changes.env_changed(pipe, keys, step.id, step.action.value)
        elif step.kind is Entity.CRON_JOB:
            changes.cron_changed(pipe, keys, step.id, step.action.value)
    await pipe.execute()
