"""Validation and notifications of the management API's entry points and env variables.

- an entry's ``funcId`` must be in the func catalogue, and its fixed kwargs must fit the
  func's signature (a cron job has no caller, so it must also give every required one);
- a cron job's ``cronExpr``/``timezone`` must make a schedule (``fluxfunc_common.schedule``);
- env variable values are converted to their ``valueType``; passwords are stored only as
  ``valueCipher`` (Fernet with the deployment secret) and never returned;
- cron-job changes go to the ``cron_changed`` stream the Beat leader follows.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TypedDict

import orjson

from fluxfunc_common import changes, schedule
from fluxfunc_common.cronplan import plan_for
from fluxfunc_common.errors import BadRequest, BizCondition
from fluxfunc_common.models import FIXED_CRON_PREFIX, CronJob, Func, JSONObject
from fluxfunc_common.store import Entity
from fluxfunc_server import apiauth_defs
from fluxfunc_server.context import AppContext
from fluxfunc_server.handlers.crud import EntityRow

CRON_CHANGED_MAXLEN = changes.CRON_CHANGED_MAXLEN
_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


# --- funcs and kwargs ---------------------------------------------------------------------------


async def func_of(ctx: AppContext, func_id: object) -> Func:
    """The catalogue entry of ``func_id``; 400 when it is not a published ``@DFF.API`` func."""
    if not isinstance(func_id, str) or not func_id:
        raise BadRequest("funcId is required", {"field": "funcId"})
    row = await ctx.store.find(Entity.FUNC, func_id)
    if row is None:
        raise BadRequest(f"funcId {func_id!r} is not in the func catalogue (publish its script first)",
                         {"field": "funcId", "funcId": func_id})
    return Func.from_row(row)


def check_kwargs(func: Func, kwargs: Mapping[str, object], *, has_caller: bool) -> None:
    """Fixed kwargs against the signature (:meth:`Func.check_kwargs`); without a caller,
    every required one must be given and none may be a placeholder."""
    problems = func.check_kwargs(kwargs, has_caller=has_caller)
    if problems.unknown:
        raise BadRequest(f"kwargs not accepted by {func.id}: {', '.join(problems.unknown)}",
                         {"field": "kwargs", "unknown": list(problems.unknown),
                          "accepted": list(problems.accepted)})
    if problems.placeholders:
        raise BadRequest("a cron job has no caller to supply kwargs: " + ", ".join(problems.placeholders),
                         {"field": "kwargs", "placeholders": list(problems.placeholders)})
    if problems.missing:
        raise BadRequest(f"required kwargs missing for {func.id}: {', '.join(problems.missing)}",
                         {"field": "kwargs", "missing": list(problems.missing)})


def _defaults(data: EntityRow, **values: object) -> None:
    """Explicit nulls of fields that have a default (PATCH ``"isDisabled": null``) → the default."""
    for key, value in values.items():
        if data.get(key) is None:
            data[key] = value


def _kwargs(data: EntityRow) -> Mapping[str, object]:
    kwargs = data["kwargs"]
    if not isinstance(kwargs, dict):
        raise BadRequest("kwargs must be a JSON object", {"field": "kwargs"})
    return kwargs


async def prepare_api(ctx: AppContext, data: EntityRow, old: EntityRow | None) -> EntityRow:
    """A sync/async API: func exists, kwargs fit, ``apiAuth`` normalised to ``{"type": …}``
    with httpBasic passwords encrypted (``passwordCipher``)."""
    _defaults(data, kwargs={}, isDisabled=False, tags=[])
    func = await func_of(ctx, data.get("funcId"))
    check_kwargs(func, _kwargs(data), has_caller=True)
    auth = data.get("apiAuth")
    if auth in (None, "none"):
        data["apiAuth"] = {"type": "none"}
    elif isinstance(auth, dict) and auth.get("type") in ("httpBasic", "httpDigest"):
        data["apiAuth"] = {**auth, "users": [_sealed_user(ctx, u) for u in auth.get("users") or []]}
    elif isinstance(auth, dict) and auth.get("type") == "fixedField":
        data["apiAuth"] = _sealed_field(ctx, auth)
    elif isinstance(auth, dict) and auth.get("type") == "func":
        await func_of(ctx, auth.get("funcId"))
    await apiauth_defs.check_reference(ctx.store, data)  # apiAuthId: exists, not with apiAuth
    return data


def _sealed_field(ctx: AppContext, rule: JSONObject) -> JSONObject:
    """A fixedField rule as stored: the value only as ``valueCipher``."""
    if rule.get("value") is None:
        return rule
    sealed = {k: v for k, v in rule.items() if k != "value"}
    return {**sealed, "valueCipher": ctx.cipher.encrypt(str(rule["value"]))}


def _sealed_user(ctx: AppContext, user: JSONObject) -> JSONObject:
    """An httpBasic user as stored: the password only as ``passwordCipher``."""
    if user.get("password") is None:
        return user  # already stored sealed (a PATCH that left apiAuth alone)
    return {"username": user["username"], "passwordCipher": ctx.cipher.encrypt(str(user["password"]))}


def present_api(entity: EntityRow) -> EntityRow:
    """A sync/async API as answered: httpBasic passwords and fixedField values are never
    shown, not even sealed."""
    auth = entity.get("apiAuth")
    if not isinstance(auth, dict):
        return entity
    if auth.get("type") in ("httpBasic", "httpDigest"):
        users = [{"username": u.get("username")} for u in auth.get("users") or []]
        return {**entity, "apiAuth": {**auth, "users": users}}
    if auth.get("type") == "fixedField":
        hidden = {"value", "valueCipher"}
        shown = {k: v for k, v in auth.items() if k not in hidden and k != "fields"}
        if isinstance(auth.get("fields"), list):
            shown["fields"] = [{k: v for k, v in f.items() if k not in hidden}
                               for f in auth["fields"] if isinstance(f, dict)]
        return {**entity, "apiAuth": shown}
    return entity


async def prepare_cron_job(ctx: AppContext, data: EntityRow, old: EntityRow | None) -> EntityRow:
    """A cron job: func exists, kwargs complete, schedule valid, timezone filled in."""
    if old is None and str(data["id"]).startswith(FIXED_CRON_PREFIX):
        raise BadRequest(f"cron job ids starting with {FIXED_CRON_PREFIX!r} are reserved for "
                         "fixed_cron_expr funcs", {"field": "id"})
    _defaults(data, kwargs={}, isDisabled=False, tags=[], misfirePolicy="fireOnce",
              overlapPolicy="skip", timezone=ctx.settings.beat.timezone)
    func = await func_of(ctx, data.get("funcId"))
    fixed_cron_expr(func, data, old)
    if not data.get("cronExpr"):
        raise BadRequest("cronExpr is required", {"field": "cronExpr"})
    timezone = data["timezone"]
    schedule.validate(str(data["cronExpr"]), str(timezone) if timezone is not None else None)
    check_kwargs(func, _kwargs(data), has_caller=False)
    return data


def fixed_cron_expr(func: Func, data: EntityRow, old: EntityRow | None) -> None:
    """A func published with ``fixed_cron_expr`` fixes the expression of its cron jobs (as in
    DataFlux Func): the job takes it; asking for another one is a 400."""
    fixed = func.options.fixed_cron_expr
    if not fixed:
        return
    asked = data.get("cronExpr")
    if asked and asked != fixed and asked != (old or {}).get("cronExpr"):
        raise BadRequest(f"func {func.id!r} fixes the cron expression of its cron jobs to {fixed!r} "
                         "(fixed_cron_expr): leave cronExpr out or send that one",
                         {"field": "cronExpr", "fixedCronExpr": fixed})
    data["cronExpr"] = fixed


async def notify_cron_changed(ctx: AppContext, cron_id: str, op: str) -> None:
    """``XADD cron_changed MAXLEN ~ 10000 * id <cron> op <create|update|delete>``."""
    pipe = ctx.redis.pipeline(transaction=False)
    changes.cron_changed(pipe, ctx.keys, cron_id, op)
    await pipe.execute()


class Fire(TypedDict):
    timestamp: float
    iso: str


class NextFires(TypedDict):
    id: str
    cronExpr: str
    timezone: str
    isDisabled: bool
    next: list[Fire]


def _next_ms(s: schedule.Schedule, after_ms: int) -> int | None:
    at = s.next_fire(after_ms / 1000)
    return None if at is None else round(at * 1000)


def next_fires(ctx: AppContext, row: Mapping[str, object], count: int) -> NextFires:
    """The next ``count`` fires of a job (none after its expireTime), as the Beat makes
    them: a script's override and timed pause included."""
    job = CronJob.from_row(row)
    tz = job.timezone or ctx.settings.beat.timezone
    plan = plan_for(schedule.parse(job.cron_expr, tz), job.dynamic_cron_expr,
                    job.dynamic_cron_expr_expire_time, job.pause_expire_time, tz)
    fires: list[float] = []
    at: int | None = int(ctx.clock.time() * 1000)
    while at is not None and len(fires) < count:
        at = plan.next_fire(at, _next_ms)
        if at is not None:
            fires.append(at / 1000)
    if job.expire_time is not None:
        fires = [t for t in fires if t <= job.expire_time]
    zone = schedule.timezone(tz)
    return {
        "id": job.id, "cronExpr": job.cron_expr, "timezone": tz, "isDisabled": job.is_disabled,
        "next": [{"timestamp": t, "iso": datetime.fromtimestamp(t, UTC).astimezone(zone).isoformat()}
                 for t in fires],
    }


def present_cron_job(entity: EntityRow) -> EntityRow:
    """A cron job as answered, with DataFlux Func's fields of a script's override and timed
    pause: ``dynamicCronExpr`` + ``dynamicCronExprExpireTime`` (None = until cleared) and
    ``isPaused`` + ``pauseExpireTime``, all null/false once expired."""
    return {**entity, **CronJob.from_row(entity).overrides_at(time.time())}


async def refuse_non_empty_script_set(ctx: AppContext, op: str, set_id: str) -> None:
    page = await ctx.store.list(Entity.SCRIPT, filters={"scriptSetId": set_id}, limit=1)
    if page.items:
        raise BizCondition(f"script set {set_id!r} still has scripts; delete them first",
                           {"scriptSetId": set_id})


# --- env variables -----------------------------------------------------------------------------


def convert_value(value_type: str, value: object) -> object:
    """``value`` as its ``valueType`` (text is parsed); BadRequest when it does not fit."""
    try:
        return _CONVERT[value_type](value)
    except (ValueError, TypeError) as exc:
        raise BadRequest(f"value does not fit valueType {value_type!r}: {exc}",
                         {"field": "value", "valueType": value_type}) from None


def _string(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError("expected text")
    return value


def _integer(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise TypeError("expected an integer")
    return int(value)


def _float(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise TypeError("expected a number")
    out = float(value)
    if not math.isfinite(out):
        raise ValueError("expected a finite number")
    return out


def _boolean(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise TypeError("expected true/false")


def _json(value: object) -> object:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            raise ValueError(f"invalid JSON text: {exc.msg}") from None
    orjson.dumps(value)
    return value


def _comma_array(value: object) -> list[str]:
    """DataFlux Func's ``commaArray``: text split on commas (a list of texts is kept)."""
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return [str(v) for v in value]
    return _string(value).split(",")


_CONVERT: dict[str, Callable[[object], object]] = {
    "string": _string, "password": _string, "integer": _integer, "float": _float,
    "boolean": _boolean, "json": _json, "commaArray": _comma_array}


async def prepare_env_variable(ctx: AppContext, data: EntityRow,
                               old: EntityRow | None) -> EntityRow:
    """Typed ``value``; a password goes to ``valueCipher`` and ``value`` stays null."""
    _defaults(data, valueType="string")
    vtype = str(data["valueType"])
    if old is not None and vtype == old.get("valueType") and data.get("value") == old.get("value") \
            and vtype != "password":
        return data  # value untouched: already converted when it was stored
    if old is not None and old.get("valueType") == "password" and data.get("value") is None:
        if vtype == "password":
            return data  # unchanged secret: keep the stored cipher
        raise BadRequest("give a new value when changing a password variable's valueType",
                         {"field": "value"})
    if data.get("value") is None:
        raise BadRequest("value is required", {"field": "value"})
    value = convert_value(vtype, data["value"])
    if vtype == "password":
        data["valueCipher"] = ctx.cipher.encrypt(str(value))
        data["value"] = None
    else:
        data["value"] = value
        data.pop("valueCipher", None)
    return data


def present_env_variable(entity: EntityRow) -> EntityRow:
    """Never show a password, not even encrypted."""
    out = {k: v for k, v in entity.items() if k != "valueCipher"}
    if out.get("valueType") == "password":
        out["value"] = None
    return out


async def env_changed(ctx: AppContext, op: str, env_id: str) -> None:
    """Tell workers (they may cache ``DFF.ENV`` values)."""
    pipe = ctx.redis.pipeline(transaction=False)
    changes.env_changed(pipe, ctx.keys, env_id, op)
    await pipe.execute()
