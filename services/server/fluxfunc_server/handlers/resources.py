"""The resource directory API (admin): list, upload, download, operate; and the one-time URL
of ``DFF.RESP_LARGE_DATA`` data (its unguessable name is the credential, as a presigned URL).

Every ``path`` is relative to ``resources.path`` and checked by
:func:`fluxfunc_common.resources.resolve` (400 when it could leave the directory).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from aiohttp import BodyPartReader, MultipartReader, web
from pydantic import BaseModel, ConfigDict

from fluxfunc_common import resources
from fluxfunc_common.errors import BadRequest, Conflict, NotFound, PayloadTooLarge
from fluxfunc_server import routing
from fluxfunc_server.access import DEVELOPER, PUBLIC, VIEWER
from fluxfunc_server.appkeys import CTX
from fluxfunc_server.files import (
    LARGE_DATA_ROUTE,
    own_body_limit,
    resources_root,
    save_part,
    serve_file,
)
from fluxfunc_server.handlers.reading import json_object
from fluxfunc_server.responses import ok
from fluxfunc_server.schemas import parse


class PathQuery(BaseModel):
    """``?path=``: a file or folder, relative to the resource directory (default: its root)."""

    path: str = ""


class Operation(BaseModel):
    """``POST /api/v1/resources/operate``: one operation on ``path`` (``target`` for
    move, and optionally for zip/unzip)."""

    model_config = ConfigDict(extra="forbid")
    operation: Literal["mkdir", "move", "delete", "zip", "unzip"]
    path: str
    target: str | None = None


def _root(request: web.Request) -> Path:
    return resources_root(request.app[CTX].settings.resources)


def _entry(root: Path, entry: os.DirEntry[str]) -> dict[str, object]:
    kind = "link" if entry.is_symlink() else "dir" if entry.is_dir() else "file"
    info = entry.stat(follow_symlinks=False)
    return {"name": entry.name, "path": resources.relative(root, Path(entry.path)), "type": kind,
            "size": info.st_size if kind == "file" else None, "updateTime": info.st_mtime}


async def list_dir(request: web.Request) -> web.Response:
    """``GET /api/v1/resources?path=DIR``: the entries of a folder."""
    root = _root(request)
    folder = resources.resolve(root, request.query.get("path", ""))
    if not folder.is_dir():
        raise NotFound("No such folder in the resource directory", {"path": request.query.get("path")})
    with os_errors(request.query.get("path", "")), os.scandir(folder) as found:
        entries = sorted((_entry(root, e) for e in found if not e.name.startswith(".upload-")),
                         key=lambda e: (e["type"] != "dir", str(e["name"])))
    return ok(request, entries)


@own_body_limit
async def upload(request: web.Request) -> web.Response:
    """``POST /api/v1/resources?path=DIR``: multipart field ``files``, streamed to disk."""
    budget = request.app[CTX].settings.resources.max_upload_bytes
    if request.content_length is not None and request.content_length > budget:
        raise PayloadTooLarge("Upload too large", {"maxBytes": budget})
    root = _root(request)
    rel = request.query.get("path", "")
    if resources.resolve(root, rel).is_file():
        raise BadRequest("The upload path is a file, not a folder", {"path": rel})
    if request.content_type != "multipart/form-data":
        raise BadRequest("Send the files as multipart/form-data, field `files`")
    try:
        saved = await _save_all(await request.multipart(), root, rel, budget)
    except (ValueError, AssertionError) as exc:  # aiohttp's words for a broken multipart body
        raise BadRequest(f"Malformed multipart body: {exc}") from None
    return ok(request, saved)


async def _save_all(reader: MultipartReader, root: Path, rel: str, budget: int) -> list[dict[str, object]]:
    saved: list[dict[str, object]] = []
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader) or part.name != "files" or part.filename is None:
            raise BadRequest("Send the files as multipart field `files`")
        name = resources.safe_file_name(part.filename)
        target = resources.resolve(root, f"{rel.rstrip('/')}/{name}" if rel.strip("/") else name)
        with os_errors(rel):
            size = await save_part(part, target, budget)
        budget -= size
        saved.append({"path": resources.relative(root, target), "size": size})
    return saved


async def download(request: web.Request) -> web.FileResponse:
    """``GET /api/v1/resources/download?path=FILE``: the file, streamed, with Range."""
    path = resources.resolve(_root(request), request.query.get("path", ""))
    return serve_file(path, name=path.name, download=True)


async def large_data(request: web.Request) -> web.FileResponse:
    """``GET /api/v1/resources/large-data/{name}``: ``DFF.RESP_LARGE_DATA`` data, once."""
    name = request.match_info["name"]
    expires = resources.expiry_of(name)
    if expires is None or expires <= time.time():
        raise NotFound("No such file (already fetched or expired)")
    path = resources.resolve(_root(request), f"{resources.DOWNLOADS}/{name}")
    return serve_file(path, name=name, download=False, once=True)


async def operate(request: web.Request) -> web.Response:
    """``POST /api/v1/resources/operate``: mkdir, move, delete, zip or unzip."""
    settings = request.app[CTX].settings
    op = parse(Operation, await json_object(request))
    root = _root(request)
    with os_errors(op.path):
        result = await asyncio.to_thread(_operate, root, op, settings.resources.max_upload_bytes)
    return ok(request, {"path": result})


@contextlib.contextmanager
def os_errors(rel: str) -> Iterator[None]:
    """What the file system refuses (a file where a folder is needed, …) as a 4xx."""
    try:
        yield
    except FileExistsError:
        raise Conflict("Already exists in the resource directory", {"path": rel}) from None
    except FileNotFoundError:
        raise NotFound("No such file or folder in the resource directory", {"path": rel}) from None
    except (OSError, zipfile.BadZipFile) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise BadRequest(f"Cannot do that in the resource directory: {reason}", {"path": rel}) from None


def _operate(root: Path, op: Operation, max_bytes: int) -> str:
    if op.operation == "delete":
        return _delete(root, op.path)
    source = resources.resolve(root, op.path)
    if op.operation == "mkdir":
        source.mkdir(parents=True, exist_ok=True)
        return resources.relative(root, source)
    if not source.exists():
        raise NotFound("No such file or folder in the resource directory", {"path": op.path})
    if op.operation == "move":
        if not op.target:
            raise BadRequest("move needs a `target`")
        target = _fresh(root, op.target)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.rename(source, target)
    elif op.operation == "zip":
        target = _fresh(root, op.target or f"{op.path.rstrip('/')}.zip")
        _zip(source, target)
    else:
        target = resources.resolve(root, op.target or op.path.rstrip("/").removesuffix(".zip"))
        _unzip(root, source, target, max_bytes)
    return resources.relative(root, target)


def _fresh(root: Path, rel: str) -> Path:
    target = resources.resolve(root, rel)
    if target == root or os.path.lexists(target):
        raise Conflict("The target already exists", {"target": rel})
    return target


def _delete(root: Path, rel: str) -> str:
    """Delete a file, a folder (with its content) or a symlink (never what it points to)."""
    parts = resources.check_relative(rel)
    if not parts:
        raise BadRequest("Refusing to delete the resource directory itself")
    path = resources.resolve(root, "/".join(parts[:-1])) / parts[-1]
    if path.is_symlink() or path.is_file():
        path.unlink()
    elif path.is_dir():
        shutil.rmtree(path)
    else:
        raise NotFound("No such file or folder in the resource directory", {"path": rel})
    return "/".join(parts)


def _zip(source: Path, target: Path) -> None:
    """Zip a file or folder (symlinks are left out: they could point anywhere)."""
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as archive:
        if source.is_file():
            archive.write(source, source.name)
            return
        for dirpath, dirs, files in os.walk(source):
            dirs[:] = [d for d in dirs if not os.path.islink(os.path.join(dirpath, d))]
            for name in files:
                path = Path(dirpath, name)
                if not path.is_symlink() and path != target:
                    archive.write(path, path.relative_to(source.parent).as_posix())


def _unzip(root: Path, source: Path, target: Path, max_bytes: int) -> None:
    """Extract into ``target``; every member is checked like an API path first, and the
    whole archive may not unpack to more than ``resources.max_upload_bytes``."""
    if not zipfile.is_zipfile(source):
        raise BadRequest("Not a zip file")
    base = resources.relative(root, target) if target != root else ""
    with zipfile.ZipFile(source) as archive:
        members = [m for m in archive.infolist() if not m.is_dir()]
        if sum(m.file_size for m in members) > max_bytes:
            raise PayloadTooLarge("The archive unpacks to too much data", {"maxBytes": max_bytes})
        paths = [resources.resolve(root, f"{base}/{m.filename}") for m in members]
        for member, path in zip(members, paths, strict=True):
            path.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(member) as src, open(path, "wb") as dst:
                shutil.copyfileobj(src, dst, 1024 * 1024)


def add_routes(app: web.Application) -> None:
    routing.get(app, "/api/v1/resources", list_dir, VIEWER)
    routing.post(app, "/api/v1/resources", upload, DEVELOPER)
    routing.get(app, "/api/v1/resources/download", download, VIEWER)
    routing.post(app, "/api/v1/resources/operate", operate, DEVELOPER)
    # the unguessable name is the credential, as in a presigned URL
    routing.get(app, LARGE_DATA_ROUTE + "{name}", large_data, PUBLIC)
