"""Export and import through the API (admin), for the console: the same as ``fluxfunc export``
and ``fluxfunc import`` (:mod:`fluxfunc_common.transfer`).

- ``POST /api/v1/export`` ``{"scriptSetIds": [...], "withSecrets": false, "passphrase": "…"}``
  (all optional; ``passphrase`` required with ``withSecrets``) → the zip
  (``application/zip``).
- ``POST /api/v1/import``: the zip as the body (``application/zip`` or
  ``application/octet-stream``) or as the ``file`` part of a multipart form; flags
  ``dryRun`` and ``overwrite`` as query parameters or form fields; the passphrase of sealed
  secrets in the ``X-Fluxfunc-Passphrase`` header or the ``passphrase`` form field. Answers the
  plan (``counts``, ``objects`` with ``action`` and ``why``, ``notes``) and ``applied``; a plan
  with conflicts is a 409 with the plan in ``detail`` and nothing written. DataFlux Func's
  own script-set export files are accepted as they are, and its 1.x password-protected
  package with the password in the ``X-Fluxfunc-Dff-Password`` header or the ``password``
  form field (a wrong one is a 400, nothing written).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, TypeVar

from aiohttp import web
from pydantic import Field

from fluxfunc_common.errors import BadRequest
from fluxfunc_common.transfer import archive
from fluxfunc_common.transfer.exporting import export_bundle
from fluxfunc_common.transfer.importing import import_bundle
from fluxfunc_server import routing, schemas
from fluxfunc_server.access import ADMIN
from fluxfunc_server.appkeys import CTX
from fluxfunc_server.handlers.crud import API
from fluxfunc_server.handlers.reading import json_object
from fluxfunc_server.responses import ok

PASSPHRASE_HEADER = "X-Fluxfunc-Passphrase"
PASSWORD_HEADER = "X-Fluxfunc-Dff-Password"
ZIP_TYPES = ("application/zip", "application/x-zip-compressed", "application/octet-stream",
             "text/plain")  # text/plain: DataFlux Func 1.x's package is base64 text
_SECRETS = {PASSPHRASE_HEADER: "passphrase", PASSWORD_HEADER: "password"}
_TRUE = ("1", "true", "yes", "on")
T = TypeVar("T")


class ExportBody(schemas.Body):
    script_set_ids: Annotated[list[schemas.ScriptSetId], Field(max_length=1000)] = Field(
        default_factory=list, description="only these script sets and their entry points")
    with_secrets: bool = Field(default=False, description="include secrets, sealed with passphrase")
    passphrase: Annotated[str, Field(max_length=1024)] | None = None


async def export(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    body = schemas.parse(ExportBody, await json_object(request))
    if body.with_secrets and not body.passphrase:
        raise BadRequest("withSecrets needs a passphrase", {"field": "passphrase"})
    bundle = await export_bundle(ctx.store, ctx.cipher, script_sets=body.script_set_ids,
                                 with_secrets=body.with_secrets)
    data = archive.write(bundle, passphrase=body.passphrase if body.with_secrets else None)
    return web.Response(body=data, content_type="application/zip", headers={
        "Content-Disposition": 'attachment; filename="fluxfunc-export.zip"'})


def _flag(value: object) -> bool:
    return str(value).strip().lower() in _TRUE


async def _upload(request: web.Request) -> tuple[bytes, dict[str, str]]:
    """The zip and the flags (query string, then form fields)."""
    flags = {k: request.query[k] for k in ("dryRun", "overwrite") if k in request.query}
    flags.update({name: request.headers[h] for h, name in _SECRETS.items() if request.headers.get(h)})
    if request.content_type == "multipart/form-data":
        form = await request.post()
        part = form.get("file")
        if not isinstance(part, web.FileField):
            raise BadRequest("the form needs the export zip as its `file` part", {"field": "file"})
        flags.update({k: str(form[k]) for k in ("dryRun", "overwrite", "passphrase", "password")
                      if k in form})
        return part.file.read(), flags
    if request.content_type not in ZIP_TYPES:
        raise BadRequest("send the export zip as application/zip or as the `file` part of a "
                         "multipart form")
    return await request.read(), flags


async def import_(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    data, flags = await _upload(request)
    bundle = archive.read(data, passphrase=flags.get("passphrase") or None,
                          password=flags.get("password") or None)
    dry_run, overwrite = _flag(flags.get("dryRun")), _flag(flags.get("overwrite"))
    # a plan with conflicts raises PlanConflict: a 409 with the plan in ``detail``
    plan = await import_bundle(ctx.store, bundle, ctx.cipher, overwrite=overwrite,
                               dry_run=dry_run, redis=ctx.redis, keys=ctx.keys)
    applied = not dry_run and bool(plan.writes())
    return ok(request, {"dryRun": dry_run, "applied": applied, **plan.as_json()})


def add_routes(app: web.Application) -> None:
    routing.post(app, f"{API}/export", export, ADMIN)
    routing.post(app, f"{API}/import", import_, ADMIN)


def _param(name: str, where: str, description: str, kind: str = "string") -> dict[str, object]:
    return {"name": name, "in": where, "required": False, "schema": {"type": kind},
            "description": description}


IMPORT_PARAMS = [
    _param("dryRun", "query", "plan only, write nothing (also a form field)", "boolean"),
    _param("overwrite", "query", "replace existing objects that differ (also a form field)",
           "boolean"),
    _param(PASSPHRASE_HEADER, "header", "the passphrase of sealed secrets (or the `passphrase` "
           "form field)"),
    _param(PASSWORD_HEADER, "header", "the password of a DataFlux Func 1.x package (or the "
           "`password` form field)"),
]
PLAN = {"type": "object", "properties": {
    "dryRun": {"type": "boolean"}, "applied": {"type": "boolean"},
    "counts": {"type": "object", "description": "objects per action: create, update, "
               "unchanged, skip, conflict"},
    "objects": {"type": "array", "items": {"type": "object", "properties": {
        "kind": {"type": "string"}, "id": {"type": "string"}, "action": {"type": "string"},
        "why": {"type": "string"}}}},
    "notes": {"type": "array", "items": {"type": "string"}}}}


def operations(op: Callable[..., T]) -> list[T]:
    """The two operations for ``/api/openapi.json`` (``op`` is its ``Op``)."""
    zip_body = {"application/zip": {"type": "string", "format": "binary"}}
    return [
        op("post", f"{API}/export", "Export script sets, scripts, env variables, API auths, entry "
           "points and connectors as a zip (secrets sealed with a passphrase when asked)",
           "management", body=ExportBody, raw=zip_body),
        op("post", f"{API}/import", "Import an export zip (fluxfunc, DataFlux Func's export or "
           "its 1.x password-protected package; the body, or the multipart `file` part): the plan, "
           "applied unless dryRun; 409 with the plan in `detail` when it has conflicts",
           "management", PLAN, extra_query=IMPORT_PARAMS),
    ]
