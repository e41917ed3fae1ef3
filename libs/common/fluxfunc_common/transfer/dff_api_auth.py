"""DataFlux Func's API auths (``biz_main_api_auth``) → fluxfunc's API auth definitions
(``/api/v1/api-auths``), with the same ids, so the sync/async APIs that name one
(``apiAuthId``) keep asking the same callers for the same credentials.

A DataFlux Func row is ``{id, title, type, configJSON, note}``; per type:

- ``fixedField``: ``{"fields": [{"location", "name", "value"}]}`` (values in clear) →
  ``{"fields": [{"location", "field", "value"}]}``;
- ``httpBasic``/``httpDigest``: ``{"users": [{"username", "passwordCipher"}]}``, each password
  encrypted with its ``SECRET`` salted ``~<auth id>~<username>~`` (:mod:`.dff_cipher`) →
  ``{"users": [{"username", "password"}]}``; without ``--dff-secret`` the auth is skipped;
- ``func``: ``{"funcId"}`` as it is.

The definition's row carries its config without values and passwords; the whole config, in
clear, is the bundle's secret of the definition, sealed with this deployment's secret when
written (:mod:`.sealing`), as an import with secrets does.
"""

from __future__ import annotations

import json

from fluxfunc_common.store import Entity
from fluxfunc_common.transfer import dff_cipher
from fluxfunc_common.transfer.bundle import Bundle, Row, secret_key
from fluxfunc_common.transfer.dff_convert import DffRow, json_field

TYPES = ("fixedField", "httpBasic", "httpDigest", "func")
LOCATIONS = ("header", "query", "body")
Config = dict[str, object]


def _fields(config: Config) -> Config | str:
    rules = config.get("fields")
    out: list[object] = []
    for rule in rules if isinstance(rules, list) else []:
        if not isinstance(rule, dict) or rule.get("location") not in LOCATIONS or not rule.get("name"):
            return f"a field rule {rule!r} is not header/query/body + name"
        out.append({"location": rule["location"], "field": str(rule["name"]),
                    "value": "" if rule.get("value") is None else str(rule["value"])})
    return {"fields": out} if out else "it has no field rules"


def _users(auth_id: str, config: Config, dff_secret: str | None) -> Config | str:
    if dff_secret is None:
        return "its passwords are encrypted with DataFlux Func's SECRET: give --dff-secret"
    users = config.get("users")
    out: list[object] = []
    for user in users if isinstance(users, list) else []:
        if not isinstance(user, dict) or not user.get("username"):
            continue
        name = str(user["username"])
        cipher = str(user.get("passwordCipher") or "")
        password = dff_cipher.decrypt(cipher, dff_secret, f"~{auth_id}~{name}~") if cipher else ""
        out.append({"username": name, "password": password})
    return {"users": out} if out else "it has no users"


def _plain_config(row: DffRow, auth_type: str, dff_secret: str | None) -> Config | str:
    """The fluxfunc config in clear, or why the auth cannot move."""
    auth_id = str(row["id"])
    config = json_field(row.get("configJSON"))
    if not isinstance(config, dict):
        return "its configJSON is not an object"
    if auth_type == "fixedField":
        return _fields(config)
    if auth_type in ("httpBasic", "httpDigest"):
        return _users(auth_id, config, dff_secret)
    func_id = config.get("funcId")
    return {"funcId": str(func_id)} if func_id else "it names no funcId"


def _without_secrets(config: Config) -> Config:
    """The config as the row carries it: no ``value``/``password`` (they travel as the secret)."""
    out: Config = {}
    for key, value in config.items():
        if isinstance(value, list):
            out[key] = [{k: v for k, v in item.items() if k not in ("value", "password")}
                        if isinstance(item, dict) else item for item in value]
        else:
            out[key] = value
    return out


def api_auth_row(row: DffRow, bundle: Bundle, dff_secret: str | None) -> Row | None:
    """The definition of one DataFlux Func API auth (its secret into the bundle), or None —
    with a note — when it cannot move."""
    auth_id, auth_type = str(row["id"]), str(row.get("type") or "")
    if auth_type not in TYPES:
        bundle.notes.append(f"skipped api auth {auth_id}: type {auth_type!r} is not one of "
                            f"{', '.join(TYPES)}")
        return None
    config = _plain_config(row, auth_type, dff_secret)
    if isinstance(config, str):
        bundle.notes.append(f"skipped api auth {auth_id}: {config}")
        return None
    if auth_type != "func":
        bundle.secrets[secret_key(Entity.API_AUTH, auth_id)] = json.dumps(config, sort_keys=True)
    title = row.get("title")
    note = row.get("note")
    return {"id": auth_id, "title": None if title is None else str(title), "type": auth_type,
            "config": _without_secrets(config) if auth_type != "func" else config,
            "note": None if note is None else str(note)}
