"""The export file: a deterministic zip of a :class:`~fluxfunc_common.transfer.bundle.Bundle`.

Entries, sorted by name, all with the same fixed timestamp and permissions:

- ``fluxfunc-export.json``: ``{"format": "fluxfunc-export", "version": 1, "counts": {…},
  "secrets": "none" | "sealed"}``
- ``<kind>.json`` per kind (``script_sets.json``, ``scripts.json``, …): the rows sorted by id;
- ``secrets.json`` with ``--with-secrets``: a passphrase box (:mod:`.secretbox`) of
  ``{key: plain text}``.

Every JSON entry is canonical (sorted keys, fixed indent), so exporting the same objects twice
— from this deployment or from one they were imported into — gives the same bytes, except
``secrets.json``, whose salt and nonce are fresh each time. :func:`read` also opens DataFlux
Func's own script-set export (``META.yaml`` and ``script-sets/…``, :mod:`.dff_export`) and its
1.x password-protected package (:mod:`.dff_package`).
"""

from __future__ import annotations

import io
import json
import zipfile

from fluxfunc_common.errors import BadRequest
from fluxfunc_common.transfer import dff_export, dff_package, secretbox
from fluxfunc_common.transfer.bundle import KINDS, Bundle, Kind, Row, canonical

FORMAT = "fluxfunc-export"
VERSION = 1
MANIFEST = "fluxfunc-export.json"
SECRETS = "secrets.json"
_EPOCH = (1980, 1, 1, 0, 0, 0)
MAX_ENTRY = 64 * 1024 * 1024  # refuse a zip bomb before inflating it


def write(bundle: Bundle, *, passphrase: str | None = None) -> bytes:
    """The zip bytes of ``bundle``; its secrets sealed with ``passphrase`` (left out without)."""
    entries: dict[str, bytes] = {}
    sealed = passphrase is not None and bool(bundle.secrets)
    entries[MANIFEST] = canonical({"format": FORMAT, "version": VERSION, "counts": bundle.counts(),
                                   "secrets": "sealed" if sealed else "none"})
    for kind in KINDS:
        rows = sorted(bundle.rows.get(kind, []), key=lambda r: str(r["id"]))
        entries[f"{kind.value}.json"] = canonical(rows)
    if sealed:
        assert passphrase is not None
        entries[SECRETS] = canonical(secretbox.seal_json(bundle.secrets, passphrase))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(entries):
            info = zipfile.ZipInfo(name, date_time=_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            info.create_system = 3
            zf.writestr(info, entries[name])
    return out.getvalue()


def _files(data: bytes) -> dict[str, bytes]:
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as zf:
            infos = [i for i in zf.infolist() if not i.is_dir()]
            if any(i.file_size > MAX_ENTRY for i in infos):
                raise BadRequest("an entry of the import file is too large")
            return {i.filename: zf.read(i) for i in infos}
    except (zipfile.BadZipFile, OSError, EOFError):
        raise BadRequest("the import file is not a zip file") from None


def has_sealed_secrets(data: bytes) -> bool:
    """Whether an export file carries sealed secrets (it then needs a passphrase)."""
    return SECRETS in _files(data) if data[:2] == b"PK" else False


def read(data: bytes, *, passphrase: str | None = None, password: str | None = None) -> Bundle:
    """The bundle in an export file, of fluxfunc or of DataFlux Func. Sealed secrets are opened
    with ``passphrase``; without one they are left out (a note says so). ``password`` opens a
    DataFlux Func 1.x package (:mod:`.dff_package`)."""
    if dff_package.is_package(data):
        return dff_package.read(data, password)
    files = _files(data)
    if MANIFEST not in files:
        if dff_export.is_dff_export(files):
            return dff_export.read(files)
        raise BadRequest("not an export file: no fluxfunc-export.json nor META.yaml in it")
    manifest = _json(files, MANIFEST)
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise BadRequest("fluxfunc-export.json does not describe a fluxfunc export")
    if manifest.get("version") != VERSION:
        raise BadRequest(f"export format version {manifest.get('version')!r} is not supported "
                         f"(this release reads version {VERSION})")
    bundle = Bundle()
    for kind in KINDS:
        bundle.rows[kind] = _rows(files, kind)
    if SECRETS in files:
        if passphrase is None:
            bundle.notes.append("secrets left out: the file holds them sealed, give its "
                                "passphrase to import them")
        else:
            opened = secretbox.open_json(_json(files, SECRETS), passphrase)
            if not isinstance(opened, dict):
                raise BadRequest("secrets.json does not hold a map of secrets")
            bundle.secrets = {str(k): str(v) for k, v in opened.items()}
    return bundle


def _json(files: dict[str, bytes], name: str) -> object:
    try:
        return json.loads(files[name])
    except ValueError:
        raise BadRequest(f"{name} in the import file is not JSON") from None


def _rows(files: dict[str, bytes], kind: Kind) -> list[Row]:
    name = f"{kind.value}.json"
    if name not in files:
        return []
    rows = _json(files, name)
    if not isinstance(rows, list) or not all(isinstance(r, dict) and r.get("id") for r in rows):
        raise BadRequest(f"{name} must be a list of objects with an id")
    return [dict(r) for r in rows]
