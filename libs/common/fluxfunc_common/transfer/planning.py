"""What an import would do, object by object: create, update, unchanged, or conflict.

An existing object that differs from the imported one is a conflict unless ``overwrite``
(``--overwrite``; ``migrate-from-dff`` always overwrites, DataFlux Func being the source). A
conflict is also a script whose published code does not compile, an entry point whose func
will not exist, a cron job whose schedule is invalid or whose id is reserved (``skip``
instead with ``skip_broken``, which ``migrate-from-dff`` uses: a dangling DataFlux Func entry
point must not stop the rest). A plan with a conflict is not applied: nothing is written
(:mod:`.applying`).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum

from fluxfunc_common import schedule, scripts
from fluxfunc_common.crypto import Cipher
from fluxfunc_common.errors import Conflict, FluxfuncError
from fluxfunc_common.models import FIXED_CRON_PREFIX
from fluxfunc_common.store import Entity
from fluxfunc_common.transfer import connectors
from fluxfunc_common.transfer.bundle import (
    CONNECTOR,
    Bundle,
    Kind,
    Row,
    TransferStore,
    exported_form,
    secret_key,
    without_runtime,
)
from fluxfunc_common.transfer.sealing import secret_of


class Action(StrEnum):
    CREATE = "create"
    UPDATE = "update"
    UNCHANGED = "unchanged"
    SKIP = "skip"  # cannot be imported, left out (``skip_broken``: migrate-from-dff)
    CONFLICT = "conflict"


@dataclass
class Step:
    """One object of the import: what happens to it and why (changed fields, the conflict)."""

    kind: Kind
    id: str
    action: Action
    row: Row
    existing: dict[str, object] | None = None
    secret: str | None = None
    why: str = ""
    funcs: list[scripts.FuncRow] = field(default_factory=list)  # a script's, from its code

    def describe(self) -> str:
        what = f"{self.action.value:<9} {self.kind.value[:-1].replace('_', ' ')} {self.id}"
        return f"{what}: {self.why}" if self.why else what


@dataclass
class Plan:
    steps: list[Step] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        found = Counter(s.action.value for s in self.steps)
        return {a.value: found.get(a.value, 0) for a in Action}

    def conflicts(self) -> list[Step]:
        return [s for s in self.steps if s.action is Action.CONFLICT]

    def writes(self) -> list[Step]:
        return [s for s in self.steps if s.action in (Action.CREATE, Action.UPDATE)]

    def lines(self) -> list[str]:
        """One line per object, then the notes, then the totals."""
        totals = ", ".join(f"{n} {a}" for a, n in self.counts().items())
        return [*(s.describe() for s in self.steps), *(f"note      {n}" for n in self.notes),
                f"total: {totals}"]

    def as_json(self) -> dict[str, object]:
        return {"counts": self.counts(), "notes": self.notes,
                "objects": [{"kind": s.kind.value, "id": s.id, "action": s.action.value,
                             "why": s.why} for s in self.steps]}


class PlanConflict(Conflict):
    """A plan with conflicts was not applied; ``detail`` is the plan (:meth:`Plan.as_json`)."""

    def __init__(self, plan: Plan) -> None:
        super().__init__(f"{len(plan.conflicts())} conflict(s): nothing imported", plan.as_json())
        self.plan = plan


@dataclass
class _Context:
    store: TransferStore
    bundle: Bundle
    cipher: Cipher
    overwrite: bool
    skip_broken: bool = False
    funcs: dict[str, set[str]] = field(default_factory=dict)  # script id → func ids it will have


def _changed(old: Row, new: Row) -> list[str]:
    return sorted(k for k in set(old) | set(new) if old.get(k) != new.get(k))


async def _find(ctx: _Context, kind: Kind, entity_id: str) -> dict[str, object] | None:
    if kind is CONNECTOR:
        return await connectors.find(ctx.store, entity_id)
    assert isinstance(kind, Entity)
    return await ctx.store.find(kind, entity_id)


def _compared(step: Step, existing: dict[str, object]) -> tuple[Row, Row]:
    """The stored and the imported row as compared. A script whose published code is the
    stored one keeps its ``publishVersion`` (a counter of this deployment: an import of new code
    moved it past the stored one, importing the same file again must not move it back).
    Without secrets, a connector's secrets are not compared: such an import never changes them."""
    if step.kind is Entity.SCRIPT and existing.get("publishedCode") == step.row.get("publishedCode") \
            and "publishVersion" in existing:
        step.row = {**step.row, "publishVersion": existing["publishVersion"]}
    if step.kind is not CONNECTOR:
        return exported_form(existing), step.row
    current = connectors.exported_row(existing)
    if step.secret is None:
        return connectors.comparable(current), connectors.comparable(step.row)
    return current, step.row


async def _compare(ctx: _Context, step: Step) -> None:
    """create / update / unchanged / conflict of a step whose checks passed."""
    existing = await _find(ctx, step.kind, step.id)
    step.existing = existing
    if existing is None:
        step.action = Action.CREATE
        return
    current, imported = _compared(step, existing)
    kept = ctx.bundle.keep.get(secret_key(step.kind, step.id), ())
    step.row = {**step.row, **{f: current[f] for f in kept if f in current}}
    fields = _changed(current, {**imported, **{f: current[f] for f in kept if f in current}})
    if step.secret is not None and step.secret != secret_of(step.kind, existing, ctx.cipher):
        fields.append("(secret)")
    if not fields:
        step.action = Action.UNCHANGED
    elif ctx.overwrite:
        step.action, step.why = Action.UPDATE, "changes " + ", ".join(fields)
    else:
        step.action = Action.CONFLICT
        step.why = f"exists and differs ({', '.join(fields)}); import with overwrite to replace it"


async def _check(ctx: _Context, step: Step) -> str | None:
    """Why ``step`` cannot be imported, or None."""
    row = step.row
    if step.kind is Entity.SCRIPT:
        set_id = scripts.script_set_id(step.id)
        if set_id not in {str(r["id"]) for r in ctx.bundle.rows.get(Entity.SCRIPT_SET, [])} \
                and await ctx.store.find(Entity.SCRIPT_SET, set_id) is None:
            return f"its script set {set_id} is neither imported nor present"
        code = row.get("publishedCode")
        if isinstance(code, str) and code.strip():
            step.funcs = scripts.analyse(step.id, code).funcs
        ctx.funcs[step.id] = {f["id"] for f in step.funcs}
        return None
    if step.kind is CONNECTOR:
        return connectors.problem(row) or await _check_funcs(ctx, connectors.handler_funcs(row))
    if step.kind in (Entity.SYNC_API, Entity.ASYNC_API, Entity.CRON_JOB):
        problem = await _check_func(ctx, str(row.get("funcId")))
        if problem or step.kind is not Entity.CRON_JOB:
            return problem
        if step.id.startswith(FIXED_CRON_PREFIX):
            return f"cron job ids starting with {FIXED_CRON_PREFIX!r} are reserved"
        tz = row.get("timezone")
        schedule.validate(str(row.get("cronExpr")), str(tz) if tz else None)
    return None


async def _check_funcs(ctx: _Context, func_ids: list[str]) -> str | None:
    for func_id in func_ids:
        problem = await _check_func(ctx, func_id)
        if problem:
            return f"a subscription's {problem}"
    return None


async def _check_func(ctx: _Context, func_id: str) -> str | None:
    script_id = func_id.split(".", 1)[0]
    if script_id in ctx.funcs:
        return None if func_id in ctx.funcs[script_id] else \
            f"func {func_id} is not in the imported code of {script_id}"
    if await ctx.store.find(Entity.FUNC, func_id) is None:
        return f"func {func_id} does not exist"
    return None


def _secrets_note(step: Step) -> str | None:
    """The note of a connector imported without secrets it had at the source."""
    if step.kind is not CONNECTOR or step.action not in (Action.CREATE, Action.UPDATE,
                                                          Action.UNCHANGED):
        return None
    missing = connectors.missing_secrets(step.row, step.secret, step.existing)
    if not missing:
        return None
    if step.action is Action.CREATE:
        step.why = f"without its {', '.join(missing)}, untested"
    return (f"connector {step.id}: set its {', '.join(missing)} (not in the import file): "
            f"PATCH /api/v1/connectors/{step.id}; written untested, as with skipTest")


async def make_plan(store: TransferStore, bundle: Bundle, cipher: Cipher, *,
                    overwrite: bool = False, skip_broken: bool = False) -> Plan:
    """The plan of importing ``bundle`` into ``store`` (nothing written). With
    ``skip_broken`` an object that cannot be imported (its func missing, its code not
    compiling…) is skipped rather than a conflict."""
    ctx = _Context(store, bundle, cipher, overwrite, skip_broken)
    plan = Plan(notes=list(bundle.notes))
    for kind, row in bundle.items():
        entity_id = str(row["id"])
        step = Step(kind, entity_id, Action.CONFLICT, without_runtime(row),
                    secret=bundle.secrets.get(secret_key(kind, entity_id)))
        try:
            problem = await _check(ctx, step)
        except FluxfuncError as exc:
            problem = exc.message
        if problem:
            step.why = problem
            if skip_broken:
                step.action = Action.SKIP
        else:
            await _compare(ctx, step)
            note = _secrets_note(step)
            if note:
                plan.notes.append(note)
        plan.steps.append(step)
    return plan
