"""Files on the HTTP edge: streaming an upload to disk, and answering with a file of the
resource directory (``DFF.RESP_FILE``, ``DFF.RESP_LARGE_DATA``, downloads).

An upload is written in ~1 MiB blocks (off the event loop) to a hidden temporary file in the
target folder and renamed into place when complete, so a broken upload never leaves a
half-written file under its real name and no whole file is ever held in memory. A file that
may be served once (``auto_delete``, large data) is first *claimed* by renaming it: of two
requests racing for it exactly one wins, and the winner deletes it once it has been sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import mimetypes
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar
from urllib.parse import quote

from aiohttp import BodyPartReader, web
from aiohttp.abc import AbstractStreamWriter

from fluxfunc_common import resources
from fluxfunc_common.envelope import HttpResponse
from fluxfunc_common.errors import BadRequest, NotFound, PayloadTooLarge
from fluxfunc_common.settings import ResourcesSettings

READ_CHUNK = 256 * 1024
WRITE_BLOCK = 1024 * 1024
LARGE_DATA_ROUTE = "/api/v1/resources/large-data/"
H = TypeVar("H")


def resources_root(settings: ResourcesSettings) -> Path:
    """The resource directory of this Server (``resources.path``, created when missing)."""
    return resources.root_of(settings.path)


def own_body_limit(handler: H) -> H:
    """Mark a handler that bounds its (streamed) body itself: the error middleware then skips
    the ``server.max_body_mb`` check of its Content-Length."""
    handler.own_body_limit = True  # type: ignore[attr-defined]
    return handler


def upload_target(settings: ResourcesSettings) -> Callable[[str], Path]:
    """Where a file posted to a function goes: ``.uploads/<expiry>_<random>_<name>``."""

    def target(name: str) -> Path:  # called only when a file arrives
        folder = resources.root_of(settings.path) / resources.UPLOADS
        return folder / resources.stamped_name(name, time.time() + settings.upload_expires_seconds)

    return target


async def save_part(part: BodyPartReader, target: Path, budget: int) -> int:
    """Stream one multipart part into ``target``; its size. Over ``budget`` bytes → 413."""
    if part.headers.get("Content-Encoding", "identity").lower() != "identity":
        raise BadRequest("Compressed uploads are not supported")
    target.parent.mkdir(parents=True, exist_ok=True)
    temp = target.with_name(f".upload-{secrets.token_hex(8)}.part")
    size = 0
    try:
        with open(temp, "wb") as out:  # noqa: ASYNC230 - opening is instant; writes run in a thread
            block = bytearray()
            while chunk := await part.read_chunk(READ_CHUNK):
                size += len(chunk)
                if size > budget:
                    raise PayloadTooLarge("Upload too large", {"maxBytes": budget})
                block += chunk
                if len(block) >= WRITE_BLOCK:
                    await asyncio.to_thread(out.write, bytes(block))
                    block.clear()
            await asyncio.to_thread(out.write, bytes(block))
        os.replace(temp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()
    return size


def disposition(name: str, *, attachment: bool = True) -> str:
    """A Content-Disposition header naming ``name`` (RFC 6266 + RFC 5987 for non-ASCII)."""
    kind = "attachment" if attachment else "inline"
    ascii_name = "".join(c if " " <= c < "\x7f" and c not in '"\\' else "_" for c in name)
    return f"{kind}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name)}"


class _OnceFileResponse(web.FileResponse):
    """A file response that deletes its (already claimed) file once it has been sent."""

    def __init__(self, path: Path, **kwargs: object) -> None:
        super().__init__(path, **kwargs)  # type: ignore[arg-type]
        self._claimed = path

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        try:
            return await super().prepare(request)
        finally:
            self._claimed.unlink(missing_ok=True)


def claim(path: Path) -> Path | None:
    """Rename ``path`` to a private name for one request; None if someone else got it."""
    claimed = path.with_name(f"{path.name[:200]}.serving-{secrets.token_hex(4)}")
    try:
        os.rename(path, claimed)
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None
    return claimed


def serve_file(path: Path, *, name: str, download: bool | str, once: bool = False,
               status: int = 200, headers: dict[str, str] | None = None) -> web.FileResponse:
    """``path`` streamed (Range and conditional requests handled by aiohttp); ``once``:
    claim it first and delete it after sending (404 when already taken)."""
    out: dict[str, str] = dict(headers or {})
    if download:
        out.setdefault("Content-Disposition",
                       disposition(download if isinstance(download, str) else name))
    if once:
        if not any(k.lower() == "content-type" for k in out):  # the claimed name has no extension
            out["Content-Type"] = mimetypes.guess_type(name)[0] or "application/octet-stream"
        claimed = claim(path)
        if claimed is None:
            raise NotFound("No such file (already fetched or expired)")
        return _OnceFileResponse(claimed, status=status, headers=out)
    if not path.is_file():
        raise NotFound("No such file in the resource directory", {"path": name})
    return web.FileResponse(path, status=status, headers=out)


def file_answer(settings: ResourcesSettings, resp: HttpResponse) -> web.FileResponse:
    """The answer of a sync call whose function returned ``DFF.RESP_FILE``/``RESP_LARGE_DATA``."""
    assert resp.file_path is not None
    root = resources_root(settings)
    path = resources.resolve(root, resp.file_path.lstrip("/"))
    headers = dict(resp.headers)
    if resp.content_type and not any(k.lower() == "content-type" for k in headers):
        headers["Content-Type"] = resp.content_type
    return serve_file(path, name=path.name, download=resp.download,
                      once=resp.auto_delete or resp.large_data, status=resp.status_code,
                      headers=headers)


def file_result(resp: HttpResponse) -> dict[str, str]:
    """What a wrapped answer (``data.result``) shows for a file: the one-time URL of large
    data, the resource path of a ``RESP_FILE``."""
    assert resp.file_path is not None
    if resp.large_data:
        return {"url": LARGE_DATA_ROUTE + Path(resp.file_path).name}
    return {"filePath": resp.file_path}
