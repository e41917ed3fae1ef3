"""Reading request bodies without trusting them: the charset allow-list, JSON nesting bounds,
and the body kinds DataFlux Func hands to a function (JSON, form fields, text, binary).

Every decode here costs time linear in the body size: only the charsets of
:data:`CHARSETS` are decoded (some Python codecs, punycode for one, are quadratic), a
decode error is a 400, and a parsed JSON value deeper than ``server.max_json_depth`` is a
400 before it gets near an envelope. The body size itself is bounded by
``server.max_body_mb`` (the error middleware and aiohttp), also for chunked forms.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import orjson
from aiohttp import BodyPartReader, web

from fluxfunc_common.errors import BadRequest, PayloadTooLarge
from fluxfunc_common.models import JSONObject
from fluxfunc_common.resources import UploadedFile
from fluxfunc_server.files import save_part

# What callers of DataFlux Func send: UTF-8 above all, ASCII/Latin-1, the UTF-16 forms its
# JSON parser takes, and the Chinese charsets its text parser decodes. Name → Python codec.
CHARSETS = {
    "utf-8": "utf-8", "utf8": "utf-8",
    "us-ascii": "ascii", "ascii": "ascii",
    "iso-8859-1": "latin-1", "iso8859-1": "latin-1", "latin-1": "latin-1", "latin1": "latin-1",
    "utf-16": "utf-16", "utf-16le": "utf-16-le", "utf-16be": "utf-16-be",
    "gbk": "gbk", "gb2312": "gb2312", "gb18030": "gb18030",
}
MAX_FORM_FIELDS = 1000
THREAD_BYTES = 256 * 1024  # JSON bodies above this are depth-checked off the event loop


@dataclass(frozen=True)
class BodyLimits:
    """How big and how deep a body may be (from ``server.max_body_mb``/``max_json_depth``)."""

    max_bytes: int
    max_depth: int
    # where a multipart file part is stored (original name → path); None: files refused
    uploads: Callable[[str], Path] | None = None


FormFields = dict[str, str | list[str]]  # a repeated field is a list of its values


@dataclass
class RequestBody:
    """A request body read once: ``value`` is a dict (JSON object, form), text, or None."""

    value: Any
    kind: str  # "none" | "json" | "form" | "text" | "binary"
    files: list[UploadedFile] = field(default_factory=list)  # multipart file parts, stored


def codec(charset: str | None) -> str:
    """The Python codec of an allowed charset (None → UTF-8); any other charset → 400."""
    if charset is None:
        return "utf-8"
    name = CHARSETS.get(charset.strip().lower())
    if name is None:
        raise BadRequest(f"Unsupported charset: {charset[:40]!r}",
                         {"allowed": sorted(set(CHARSETS.values()))})
    return name


def decode(raw: bytes, charset: str | None, what: str = "request body") -> str:
    """``raw`` as text in an allowed charset; undecodable bytes → 400."""
    name = codec(charset)
    try:
        return raw.decode(name)
    except UnicodeDecodeError as exc:
        raise BadRequest(f"The {what} is not valid {name}: {exc.reason} at byte {exc.start}") from None


def too_deep(what: str, max_depth: int) -> BadRequest:
    return BadRequest(f"{what} is nested too deeply (more than {max_depth} levels)",
                      {"maxDepth": max_depth})


def check_depth(value: Any, max_depth: int, what: str) -> None:
    """400 when JSON ``value`` nests objects/arrays deeper than ``max_depth`` (iterative: a
    deep value cannot exhaust the stack here)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > max_depth:
            raise too_deep(what, max_depth)
        for child in node.values() if isinstance(node, dict) else node:
            if isinstance(child, dict | list):
                stack.append((child, depth + 1))


def parse_json(raw: bytes | str, what: str, max_depth: int, *, check: bool = True) -> Any:
    """JSON → value; malformed or too deeply nested → 400 (``check=False``: the caller checks
    the depth itself)."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        if str(exc).startswith("depth limit exceeded"):  # orjson's own bound (1024)
            raise too_deep(what, max_depth) from None
        raise BadRequest(f"Malformed JSON in {what}: {exc}") from None
    if check and isinstance(value, dict | list):
        check_depth(value, max_depth, what)
    return value


async def parse_body_json(raw: bytes | str, max_depth: int) -> Any:
    """:func:`parse_json` of a body; a large one is depth-checked in a thread (the walk is
    Python code, so the event loop keeps getting its turns meanwhile)."""
    if len(raw) <= THREAD_BYTES:
        return parse_json(raw, "request body", max_depth)
    value = parse_json(raw, "request body", max_depth, check=False)
    if isinstance(value, dict | list):
        await asyncio.to_thread(check_depth, value, max_depth, "request body")
    return value


async def read_json(request: web.Request, max_depth: int) -> object:
    """The body as one JSON value, whatever its content type (None when empty); a charset
    other than UTF-8 is decoded first. Malformed or too deeply nested → 400."""
    raw = await request.read()
    if not raw.strip():
        return None
    charset = request.charset
    return await parse_body_json(raw if codec(charset) == "utf-8" else decode(raw, charset),
                                 max_depth)


async def read_json_object(request: web.Request, max_depth: int) -> JSONObject:
    """The body as a JSON object (``{}`` when empty); anything else → 400."""
    value = await read_json(request, max_depth)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise BadRequest("The request body must be a JSON object")
    return value


async def read_body(request: web.Request, limits: BodyLimits) -> RequestBody:
    """The body as DataFlux Func reads it: JSON, form fields, text (``{"text"}``) or binary."""
    if request.method in ("GET", "HEAD") or not request.body_exists:
        return RequestBody(None, "none")
    # aiohttp reports a missing Content-Type as application/octet-stream; tell them apart
    ctype = request.content_type if "Content-Type" in request.headers else ""
    charset = request.charset
    codec(charset)  # an unknown charset is refused before a byte is read
    if ctype == "multipart/form-data":
        files: list[UploadedFile] = []
        form = await _read_multipart(request, limits.max_bytes, limits.uploads, files)
        return RequestBody(form, "form", files)
    raw = await request.read()
    if ctype == "application/x-www-form-urlencoded":
        return RequestBody(_parse_urlencoded(raw, charset), "form")
    if not raw:
        return RequestBody(None, "none")
    if ctype == "application/json" or ctype.endswith("+json"):
        text = raw if codec(charset) == "utf-8" else decode(raw, charset)  # orjson checks UTF-8
        return RequestBody(await parse_body_json(text, limits.max_depth), "json")
    if ctype == "application/octet-stream":
        return RequestBody(raw, "binary")
    if charset is not None or ctype.startswith("text/"):
        text = decode(raw, charset)
    else:
        try:
            text = raw.decode()
        except UnicodeDecodeError:  # no charset and not UTF-8: bytes
            return RequestBody(raw, "binary")
    if not ctype.startswith("text/"):
        # no (useful) content type: JSON if it parses
        try:
            return RequestBody(await parse_body_json(text, limits.max_depth), "json")
        except BadRequest as exc:
            if "nested too deeply" in exc.message:
                raise
    return RequestBody(text, "text")


def _add(out: FormFields, name: str, value: str) -> None:
    """A repeated form field becomes a list."""
    had = out.get(name)
    if had is None:
        out[name] = value
    elif isinstance(had, list):
        had.append(value)
    else:
        out[name] = [had, value]


def _parse_urlencoded(raw: bytes, charset: str | None) -> FormFields:
    text = decode(raw, charset).rstrip()
    try:
        pairs = parse_qsl(text, keep_blank_values=True, encoding=codec(charset),
                          max_num_fields=MAX_FORM_FIELDS)
    except ValueError as exc:
        raise BadRequest(f"Malformed form body: {exc}") from None
    out: FormFields = {}
    for name, value in pairs:
        _add(out, name, value)
    return out


async def _read_multipart(request: web.Request, limit: int, uploads: Callable[[str], Path] | None,
                          files: list[UploadedFile]) -> FormFields:
    """Form fields of a multipart body; every part's charset is checked like the body's, and
    the parts together may not exceed ``limit`` bytes (chunked bodies have no length). File
    parts are streamed to ``uploads`` (and listed in ``files``) when it is given."""
    try:
        reader = await request.multipart()
    except (ValueError, AssertionError) as exc:
        raise BadRequest(f"Malformed form body: {exc}") from None
    out: FormFields = {}
    size = count = 0
    try:
        while (part := await reader.next()) is not None:
            if isinstance(part, BodyPartReader) and part.filename is not None and uploads:
                files.append(await _store_file(part, uploads, limit - size))
                size += files[-1].size
                continue
            if not isinstance(part, BodyPartReader) or part.filename is not None:
                raise BadRequest("File uploads are not supported; send the content as a field")
            count += 1
            if count > MAX_FORM_FIELDS:
                raise BadRequest(f"Too many form fields (more than {MAX_FORM_FIELDS})")
            if part.headers.get("Content-Encoding", "identity").lower() != "identity":
                raise BadRequest("Compressed form fields are not supported")
            charset = part.get_charset(default=request.charset or "utf-8")
            codec(charset)
            chunks = []
            while chunk := await part.read_chunk():
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge("Request body too large", {"maxBytes": limit})
                chunks.append(chunk)
            _add(out, part.name or "", decode(part.decode(b"".join(chunks)), charset, "form field"))
    except ValueError as exc:
        raise BadRequest(f"Malformed form body: {exc}") from None
    return out


async def _store_file(part: BodyPartReader, uploads: Callable[[str], Path], budget: int) -> UploadedFile:
    """A file part streamed to disk, described as the function's ``files`` kwarg lists it."""
    name = part.filename or "file"
    target = uploads(name)
    size = await save_part(part, target, budget)
    return UploadedFile(file_path=str(target), original_name=name, size=size,
                        encoding=part.headers.get("Content-Transfer-Encoding", "7bit"),
                        mime_type=part.headers.get("Content-Type", "application/octet-stream"))
