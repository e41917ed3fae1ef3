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
  own script-set export files are accepted as they are.
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
ZIP_TYPES = ("application/zip", "application/x-zip-compressed", "application/octet-stream")
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
    passphrase = request.headers.get(PASSPHRASE_HEADER)
    if passphrase:
        flags["passphrase"] = passphrase
    if request.content_type == "multipart/form-data":
        form = await request.post()
        part = form.get("file")
        if not isinstance(part, web.FileField):
            raise BadRequest("the form needs the export zip as its `file` part", {"field": "file"})
        flags.update({k: str(form[k]) for k in ("dryRun", "overwrite", "passphrase") if k in form})
        return part.file.read(), flags
    if request.content_type not in ZIP_TYPES:
        raise BadRequest("send the export zip as application/zip or as the `file` part of a "
                         "multipart form")
    return await request.read(), flags


async def import_(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    data, flags = await _upload(request)
    bundle = archive.read(data, passphrase=flags.get("passphrase") or None)
    dry_run, overwrite = _flag(flags.get("dryRun")), _flag(flags.get("overwrite"))
    # a plan with conflicts raises PlanConflict: a 409 with the plan in ``detail``
    plan = await import_bundle(ctx.store, bundle, ctx.cipher, overwrite=overwrite,
                               dry_run=dry_run, redis=ctx.redis, keys=ctx.keys)
    applied = not dry_run and bool(plan.writes())
    return ok(request, {"dryRun": dry_run, "applied": applied, **plan.as_json()})


def add_routes(app: web.Application) -> None:
    routing.post(app, f"{API}/export", export, ADMIN)
    routing.post(app, f"{API}/import", import_, ADMIN)


def operations(op: Callable[..., T]) -> list[T]:
    """The two operations for ``/api/openapi.json`` (``op`` is its ``Op``)."""
    zip_body = {"application/zip": {"type": "string", "format": "binary"}}
    return [
        op("post", f"{API}/export", "Export script sets, scripts, env variables and entry points "
           "as a zip (secrets sealed with a passphrase when asked)", "management",
           body=ExportBody, raw=zip_body),
        op("post", f"{API}/import", "Import an export zip (fluxfunc or DataFlux Func; body or "
           "multipart `file`; ?dryRun, ?overwrite): the plan, applied unless a conflict",
           "management", {"type": "object", "properties": {
               "dryRun": {"type": "boolean"}, "applied": {"type": "boolean"},
               "counts": {"type": "object"}, "objects": {"type": "array"},
               "notes": {"type": "array", "items": {"type": "string"}}}}),
    ]
