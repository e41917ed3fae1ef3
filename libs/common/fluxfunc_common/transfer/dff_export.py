"""DataFlux Func's script-set export file, read as it is.

The zip holds ``META.yaml`` (the exported data: ``scriptSets`` with their ``scripts``, and
optionally ``connectors``, ``envVariables``, ``syncAPIs``/``authLinks``,
``asyncAPIs``/``batches``, ``cronJobs``/``crontabConfigs``, ``extra``) and each script's code
as ``script-sets/<script set id>/<script name>.py``; everything may sit under one top folder.
Older exports have ``scriptSets.yaml``, ``envVariables.yaml``, … instead of ``META.yaml``.
DataFlux Func never exports password values (they arrive as empty strings) nor connectors'
encrypted secrets (their ``*Cipher`` emptied; those it keeps in clear, a DataWay ``token``,
travel); cron jobs are imported disabled, as by ``migrate-from-dff``; connectors of the types
fluxfunc has move with their subscriptions disabled (:mod:`.dff_connectors`).
"""

from __future__ import annotations

from collections.abc import Mapping

import yaml

from fluxfunc_common.errors import BadRequest
from fluxfunc_common.store import Entity
from fluxfunc_common.transfer import dff_connectors
from fluxfunc_common.transfer import dff_convert as conv
from fluxfunc_common.transfer.bundle import Bundle

META = "META.yaml"
SCRIPT_SET_DIR = "script-sets"
DEFAULT_TIMEZONE = "Asia/Shanghai"  # DataFlux Func's TIMEZONE default
# the keys of the exported data, with the older names each may have
SECTIONS: dict[str, tuple[str, ...]] = {
    "connectors": ("connectors",),
    "envVariables": ("envVariables",),
    "syncAPIs": ("syncAPIs", "authLinks"),
    "asyncAPIs": ("asyncAPIs", "batches"),
    "cronJobs": ("cronJobs", "crontabConfigs"),
}


def _root(files: Mapping[str, bytes]) -> str:
    """The folder holding META.yaml (``""`` at the top)."""
    for name in sorted(files, key=len):
        if name == META or name.endswith("/" + META):
            return name[: -len(META)]
    return ""


def is_dff_export(files: Mapping[str, bytes]) -> bool:
    return any(n == META or n.endswith("/" + META) or n == "scriptSets.yaml" for n in files)


def _yaml(text: bytes, name: str) -> object:
    try:
        return yaml.safe_load(text.decode())
    except (yaml.YAMLError, UnicodeDecodeError):
        raise BadRequest(f"{name} in the DataFlux Func export is not YAML") from None


def _data(files: Mapping[str, bytes], root: str) -> dict[str, object]:
    if root + META in files:
        data = _yaml(files[root + META], META)
        if not isinstance(data, dict):
            raise BadRequest("META.yaml of the DataFlux Func export is not a mapping")
        return data
    data = {"scriptSets": _yaml(files[root + "scriptSets.yaml"], "scriptSets.yaml")}
    for names in SECTIONS.values():
        for name in names:
            if root + f"{name}.yaml" in files:
                data[name] = _yaml(files[root + f"{name}.yaml"], f"{name}.yaml")
    return data


def _section(data: Mapping[str, object], key: str) -> list[Mapping[str, object]]:
    for name in SECTIONS.get(key, (key,)):
        rows = data.get(name)
        if isinstance(rows, list):
            return [r for r in rows if isinstance(r, Mapping) and r.get("id")]
    return []


def _script_file(script: Mapping[str, object], set_id: str) -> str:
    name = str(script["id"]).split("__", 1)[-1]
    ext = {"python": ".py", "markdown": ".md"}.get(str(script.get("type") or "python"), "")
    return f"{SCRIPT_SET_DIR}/{set_id}/{name}{ext}"


def read(files: Mapping[str, bytes], *, default_timezone: str = DEFAULT_TIMEZONE) -> Bundle:
    """The bundle of a DataFlux Func export (its notes say what was left out or changed)."""
    root = _root(files)
    data = _data(files, root)
    bundle = Bundle()
    for script_set in _section(data, "scriptSets"):
        set_id = str(script_set["id"])
        bundle.add(Entity.SCRIPT_SET, conv.script_set_row(script_set))
        scripts = script_set.get("scripts")
        for script in scripts if isinstance(scripts, list) else []:
            if not isinstance(script, Mapping) or not script.get("id"):
                continue
            code = files.get(root + _script_file(script, set_id), b"").decode()
            row = conv.script_row({**script, "code": code, "codeDraft": script.get("codeDraft")},
                                  bundle)
            if row is not None:
                bundle.add(Entity.SCRIPT, row)
    for env in _section(data, "envVariables"):
        bundle.add(Entity.ENV_VARIABLE, conv.env_variable_row(env, bundle, None))
    for kind, key in ((Entity.SYNC_API, "syncAPIs"), (Entity.ASYNC_API, "asyncAPIs")):
        for entry in _section(data, key):
            bundle.add(kind, conv.api_row(entry, kind, bundle))
    for cron in _section(data, "cronJobs"):
        row = conv.cron_job_row(cron, bundle, default_timezone)
        if row is not None:
            bundle.add(Entity.CRON_JOB, row)
    for connector in _section(data, "connectors"):
        dff_connectors.add_from_export(connector, bundle)
    return bundle
