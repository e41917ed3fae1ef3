"""DataFlux Func rows (its database or its export file) → fluxfunc rows in exported form.

Each ``*_row`` function takes one DataFlux Func row (column names as in its tables; JSON columns
as text or already parsed) and returns the fluxfunc row, adding a note to the bundle for every
field that could not move as it was. Ids are kept, so callers' URLs keep working.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, date, datetime

from fluxfunc_common import scripts
from fluxfunc_common.store import Entity
from fluxfunc_common.transfer.bundle import Bundle, Row, secret_key

DffRow = Mapping[str, object]  # one row of a DataFlux Func table (or export entry)
THROTTLE_KEYS = ("bySecond", "byMinute", "byHour", "byDay", "byMonth", "byYear")
_TRUE = frozenset({"true", "1", "o", "y", "yes", "ok", "on"})
_FALSE = frozenset({"false", "0", "x", "n", "no", "ng", "off"})


def json_field(value: object) -> object:
    """A JSON column: text is parsed, a parsed value (from YAML) passes; bad text → None."""
    if isinstance(value, (bytes, str)):
        try:
            return json.loads(value)
        except ValueError:
            return None
    return value


def epoch(value: object) -> float | None:
    """A DATETIME/TIMESTAMP (naive = UTC, as DataFlux Func's connection uses) → epoch seconds."""
    if isinstance(value, str) and value.strip():
        try:
            value = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            return None
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC).timestamp()
    return None


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _flag(value: object) -> bool:
    return bool(int(value)) if isinstance(value, (int, float, str)) and str(value).isdigit() \
        else bool(value)


def script_set_row(row: DffRow) -> Row:
    return {"id": str(row["id"]), "title": _text(row.get("title")) or str(row["id"]),
            "description": _text(row.get("description")),
            "requirements": _text(row.get("requirements"))}


def script_row(row: DffRow, bundle: Bundle) -> Row | None:
    """A python script with its published code (``code``) and draft (``codeDraft``, or the
    published code when the source has none); other script types are left out."""
    script_id = str(row["id"])
    if (row.get("type") or "python") != "python":
        bundle.notes.append(f"skipped script {script_id}: type {row.get('type')!r} "
                            "(only python scripts run in fluxfunc)")
        return None
    published = _text(row.get("code"))
    draft = _text(row.get("codeDraft"))
    out: Row = {"id": script_id, "scriptSetId": scripts.script_set_id(script_id),
                "title": _text(row.get("title")) or script_id.split("__", 1)[-1],
                "description": _text(row.get("description")),
                "code": draft if draft is not None else published or ""}
    if published:
        out["publishedCode"] = published
        out["publishVersion"] = max(1, int(str(row.get("publishVersion") or 1)))
    return out


def _cast(kind: str, text: str) -> object:
    """DataFlux Func's ``autoTypeCasting`` of a value (ValueError when it does not cast)."""
    if kind == "integer":
        return int(text)
    if kind == "float":
        return float(text)
    if kind == "boolean":
        if text.lower() in _TRUE or text.lower() in _FALSE:
            return text.lower() in _TRUE
        raise ValueError(text)
    if kind == "json":
        return json.loads(text)
    if kind == "commaArray":
        return text.split(",")
    return text


def env_variable_row(row: DffRow, bundle: Bundle, password: str | None) -> Row:
    """An env variable; a password one carries ``password`` (already decrypted) as its secret,
    or no value when there is none to carry."""
    env_id, kind = str(row["id"]), str(row.get("autoTypeCasting") or "string")
    out: Row = {"id": env_id, "title": _text(row.get("title")),
                "description": _text(row.get("description")), "valueType": kind, "value": None}
    if kind == "password":
        if password is not None:
            bundle.secrets[secret_key(Entity.ENV_VARIABLE, env_id)] = password
        else:
            bundle.notes.append(f"changed env variable {env_id}: password moved without its value "
                                "(set it again)")
        return out
    text = _text(row.get("valueTEXT")) or ""
    try:
        out["value"] = _cast(kind, text)
    except ValueError:
        out.update(valueType="string", value=text)
        bundle.notes.append(f"changed env variable {env_id}: valueType string (the value is "
                            f"not a valid {kind})")
    return out


def _throttling(value: object) -> dict[str, object] | None:
    rules = json_field(value)
    if not isinstance(rules, dict):
        return None
    kept: dict[str, object] = {k: int(v) for k, v in rules.items()
                               if k in THROTTLE_KEYS and isinstance(v, (int, float)) and v >= 1}
    return {**kept, "window": "fixed"} if kept else None


def _common(row: DffRow, kind: Entity, bundle: Bundle, auths: frozenset[str] = frozenset()) -> Row:
    """Fields every entry point has: func, kwargs, tags, expiry, disabled, note, record limit.
    An API whose API auth is not among the moved ``auths`` is created disabled."""
    entry_id = str(row["id"])
    kwargs = json_field(row.get("funcCallKwargsJSON"))
    tags = json_field(row.get("tagsJSON"))
    limit = row.get("taskRecordLimit", row.get("taskInfoLimit"))
    disabled = _flag(row.get("isDisabled") or 0)
    if row.get("apiAuthId") and kind is not Entity.CRON_JOB and str(row["apiAuthId"]) not in auths:
        # unprotected it would be open to anyone: disabled until its auth is set here
        bundle.notes.append(f"changed {kind.value[:-1].replace('_', ' ')} {entry_id}: created "
                            f"DISABLED, its API auth {row['apiAuthId']!r} not moved (set apiAuth "
                            "inline, then enable it)")
        bundle.keep[secret_key(kind, entry_id)] = ("isDisabled", "apiAuth")
        disabled = True
    return {"id": entry_id, "funcId": str(row["funcId"]),
            "kwargs": kwargs if isinstance(kwargs, dict) else {},
            "expireTime": epoch(row.get("expireTime")),
            "isDisabled": disabled,
            "taskRecordLimit": int(str(limit)) if limit is not None else None,
            "tags": [str(t) for t in tags] if isinstance(tags, list) else [],
            "note": _text(row.get("note"))}


def api_row(row: DffRow, kind: Entity, bundle: Bundle, auths: frozenset[str] = frozenset()) -> Row:
    """A sync API (Auth Link) or async API (Batch); its ``apiAuthId`` kept when that API auth
    is among the moved ``auths`` (:mod:`.dff_api_auth`)."""
    out = _common(row, kind, bundle, auths)
    out["apiAuth"] = {"type": "none"}
    if row.get("apiAuthId") and str(row["apiAuthId"]) in auths:
        out["apiAuthId"] = str(row["apiAuthId"])
    out["throttling"] = _throttling(row.get("throttlingJSON")) if kind is Entity.SYNC_API else None
    return out


def cron_job_row(row: DffRow, bundle: Bundle, default_timezone: str) -> Row | None:
    """A cron job (``cronExpr``, or ``crontab`` of the older crontab configs); DISABLED until
    someone enables it, so nothing fires in both systems."""
    out = _common(row, Entity.CRON_JOB, bundle)
    expr = row.get("cronExpr") or row.get("crontab")
    if not expr:
        bundle.notes.append(f"skipped cron job {out['id']}: no cron expression (DataFlux Func "
                            "fires it only from code)")
        return None
    out.update(cronExpr=str(expr), timezone=_text(row.get("timezone")) or default_timezone,
               misfirePolicy="fireOnce", overlapPolicy="skip", isDisabled=True)
    bundle.keep[secret_key(Entity.CRON_JOB, str(out["id"]))] = ("isDisabled",)
    return out
