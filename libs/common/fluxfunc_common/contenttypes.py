"""``DFF.RESP`` content types: DataFlux Func's short names (``json``, ``html``, ``text``, …) and
the MIME types they stand for. Standard library only: the worker's child processes import it."""

from __future__ import annotations

CONTENT_TYPES = {
    "json": "application/json",
    "html": "text/html",
    "htm": "text/html",
    "text": "text/plain",
    "txt": "text/plain",
    "xml": "application/xml",
    "csv": "text/csv",
    "js": "application/javascript",
    "javascript": "application/javascript",
    "css": "text/css",
    "yaml": "application/yaml",
    "yml": "application/yaml",
    "md": "text/markdown",
    "markdown": "text/markdown",
    "svg": "image/svg+xml",
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "gif": "image/gif",
    "pdf": "application/pdf",
    "zip": "application/zip",
    "bin": "application/octet-stream",
}


def mime_type(content_type: str | None) -> str | None:
    """``json`` → ``application/json``; a full MIME type (or None) passes through."""
    if not content_type:
        return None
    return CONTENT_TYPES.get(content_type.lower(), content_type)
