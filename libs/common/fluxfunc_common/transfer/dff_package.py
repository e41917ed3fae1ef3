"""DataFlux Func 1.x's password-protected script package (``dataflux-func-….func-pkg``).

Until its script market was rewritten (late 2022), DataFlux Func exported script sets as one
text file: a zip holding ``dataflux-func.json`` (``scriptSets``, ``scripts`` with their
published ``code``, ``funcs``, and as chosen ``authLinks``, ``crontabConfigs``, ``batches``,
``connectors`` (older: ``dataSources``), ``envVariables``, ``note``), base64-encoded, then
encrypted with the export password — AES-256-CBC, a zero IV, the text padded with spaces to a
multiple of 16 (at least one), the key the password padded with spaces to 32 characters and
cut there (no password is the empty one) — and base64-encoded again. This is the first format
of :mod:`.dff_cipher`, applied to the whole file.

The rows then convert as those of the later export file (:mod:`.dff_export`): the same ids,
cron jobs created disabled, connectors of the types fluxfunc has moved without their encrypted
secrets (those in clear travel) and with their subscriptions disabled (:mod:`.dff_connectors`).
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import re
import zipfile
from collections.abc import Mapping

from fluxfunc_common.errors import BadRequest
from fluxfunc_common.store import Entity
from fluxfunc_common.transfer import dff_cipher, dff_connectors
from fluxfunc_common.transfer import dff_convert as conv
from fluxfunc_common.transfer.bundle import Bundle

PACKAGE_FILE = "dataflux-func.json"  # the one entry of the zip inside
DEFAULT_TIMEZONE = "Asia/Shanghai"  # DataFlux Func's TIMEZONE default
MAX_PACKAGE = 256 * 1024 * 1024
_BASE64 = re.compile(rb"[A-Za-z0-9+/]+={0,2}")
# the package's sections, with the later names a hand-edited file may use
SECTIONS = {Entity.SYNC_API: ("authLinks", "syncAPIs"), Entity.ASYNC_API: ("batches", "asyncAPIs"),
            Entity.CRON_JOB: ("crontabConfigs", "cronJobs")}


def is_package(data: bytes) -> bool:
    """Whether ``data`` looks like an encrypted package: base64 text of whole AES blocks."""
    text = b"".join(data.split())
    if data[:2] == b"PK" or len(text) < 24 or len(text) % 4 or not _BASE64.fullmatch(text):
        return False
    return len(base64.b64decode(text)) % 16 == 0


def open_package(data: bytes, password: str | None) -> dict[str, object]:
    """The package data, decrypted with ``password`` (None: DataFlux Func's empty one);
    BadRequest naming the password when it does not open."""
    if len(data) > MAX_PACKAGE:
        raise BadRequest("the DataFlux Func package is too large")
    text = b"".join(data.split()).decode("ascii")
    try:
        inner = dff_cipher.decrypt(text, password or "", None)
        with zipfile.ZipFile(io.BytesIO(base64.b64decode(inner, validate=True))) as zf:
            loaded = json.loads(zf.read(PACKAGE_FILE))
    except (BadRequest, binascii.Error, ValueError, zipfile.BadZipFile, KeyError, OSError):
        if password:
            raise BadRequest("cannot open the DataFlux Func package: wrong password",
                             {"field": "password"}) from None
        raise BadRequest("the DataFlux Func package is protected by a password: give it "
                         "(--password, or the password field)", {"field": "password"}) from None
    if not isinstance(loaded, dict):
        raise BadRequest(f"{PACKAGE_FILE} of the DataFlux Func package is not an object")
    return loaded


def _rows(data: Mapping[str, object], *names: str) -> list[Mapping[str, object]]:
    for name in names:
        rows = data.get(name)
        if isinstance(rows, list):
            return [r for r in rows if isinstance(r, Mapping) and r.get("id")]
    return []


def read(data: bytes, password: str | None, *,
         default_timezone: str = DEFAULT_TIMEZONE) -> Bundle:
    """The bundle of a DataFlux Func 1.x package (its notes say what was left out)."""
    package = open_package(data, password)
    bundle = Bundle()
    sets = {str(s["id"]) for s in _rows(package, "scriptSets")}
    for script_set in _rows(package, "scriptSets"):
        bundle.add(Entity.SCRIPT_SET, conv.script_set_row(script_set))
    for script in _rows(package, "scripts"):
        if str(script.get("scriptSetId") or str(script["id"]).split("__", 1)[0]) not in sets:
            continue
        row = conv.script_row(script, bundle)
        if row is not None:
            bundle.add(Entity.SCRIPT, row)
    for env in _rows(package, "envVariables"):
        bundle.add(Entity.ENV_VARIABLE, conv.env_variable_row(env, bundle, None))
    for kind in (Entity.SYNC_API, Entity.ASYNC_API):
        for entry in _rows(package, *SECTIONS[kind]):
            bundle.add(kind, conv.api_row(entry, kind, bundle))
    for cron in _rows(package, *SECTIONS[Entity.CRON_JOB]):
        cron_row = conv.cron_job_row(cron, bundle, default_timezone)
        if cron_row is not None:
            bundle.add(Entity.CRON_JOB, cron_row)
    for connector in _rows(package, "connectors", "dataSources"):
        dff_connectors.add_from_export(connector, bundle)
    return bundle
