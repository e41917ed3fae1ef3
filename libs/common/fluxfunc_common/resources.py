"""The resource directory (``resources.path``): safe path resolution, the upload and download
folders, expiry-stamped temporary names and their clean-up.

Every path a caller or a script gives is relative to the directory and goes through
:func:`resolve`, which refuses (400) NUL bytes, absolute paths, ``..`` parts, over-long names
and anything whose real path (symlinks followed) is not inside the directory.

Temporary files are named as in DataFlux Func: ``<expiry YYYYMMDDHHMMSS UTC>_<random>_<name>``
under :data:`UPLOADS` (files posted to a function) and :data:`DOWNLOADS` (``DFF.RESP_LARGE_DATA``);
:func:`sweep_expired` deletes those whose expiry has passed (the Beat janitor runs it).
"""

from __future__ import annotations

import calendar
import os
import re
import secrets
import time
from pathlib import Path

from pydantic import BaseModel

from fluxfunc_common.errors import BadRequest

UPLOADS = ".uploads"
DOWNLOADS = ".downloads"
MAX_NAME = 255  # bytes of one path part (the Linux limit)
MAX_PATH = 1024  # characters of a whole relative path
STAMP_FORMAT = "%Y%m%d%H%M%S"
_STAMPED = re.compile(r"^(\d{14})_[0-9a-f]{16}_[^/\x00]+$")


class UploadedFile(BaseModel):
    """A file posted to a function: what its ``files`` kwarg lists (DataFlux Func's keys)."""

    file_path: str
    original_name: str
    encoding: str
    mime_type: str
    size: int

    def kwarg(self) -> dict[str, str | int]:
        """The ``files`` entry as DataFlux Func passes it (``filePath`` is absolute)."""
        return {"filePath": self.file_path, "originalname": self.original_name,
                "encoding": self.encoding, "mimetype": self.mime_type, "size": self.size}


def root_of(path: str | Path) -> Path:
    """The directory's absolute real path (created when missing)."""
    root = Path(path).expanduser().resolve()
    root.mkdir(parents=True, exist_ok=True)
    return root


def _refuse(message: str, rel: str) -> BadRequest:
    return BadRequest(message, {"path": rel[:200]})


def check_relative(rel: str) -> list[str]:
    """The parts of a relative path, refusing what can never be inside the directory."""
    if "\x00" in rel:
        raise _refuse("Path contains a NUL byte", rel.replace("\x00", "\\0"))
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError:
        raise _refuse("Path is not valid UTF-8", rel.encode("utf-8", "replace").decode()) from None
    if len(rel) > MAX_PATH:
        raise _refuse(f"Path is longer than {MAX_PATH} characters", rel)
    if rel.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", rel):
        raise _refuse("Path must be relative to the resource directory", rel)
    parts = [p for p in rel.replace("\\", "/").split("/") if p not in ("", ".")]
    for part in parts:
        if part == "..":
            raise _refuse("Path may not contain '..'", rel)
        if len(part.encode("utf-8")) > MAX_NAME:
            raise _refuse(f"A path part is longer than {MAX_NAME} bytes", rel)
    return parts


def resolve(root: Path, rel: str) -> Path:
    """``root / rel`` after checking it stays inside ``root`` (symlinks followed): else 400.
    ``""`` and ``"."`` are the directory itself."""
    target = root.joinpath(*check_relative(rel))
    real = Path(os.path.realpath(target))
    if real != root and root not in real.parents:
        raise _refuse("Path leaves the resource directory", rel)
    return target


def relative(root: Path, path: Path) -> str:
    """``path`` as the API shows it: relative to the directory, ``/``-separated."""
    return path.relative_to(root).as_posix()


def safe_file_name(name: str) -> str:
    """A client's file name reduced to one harmless path part (never empty)."""
    base = name.replace("\\", "/").rsplit("/", 1)[-1].replace("\x00", "")
    base = base.strip() or "file"
    if base in (".", ".."):
        base = "file"
    base = base.encode("utf-8", "replace").decode("utf-8")
    encoded = base.encode("utf-8")
    return encoded[:200].decode("utf-8", "ignore") if len(encoded) > 200 else base


def stamped_name(name: str, expires_at: float) -> str:
    """``<expiry>_<random>_<name>``: unguessable, and its expiry is readable from the name."""
    stamp = time.strftime(STAMP_FORMAT, time.gmtime(expires_at))
    return f"{stamp}_{secrets.token_hex(8)}_{safe_file_name(name)}"


def expiry_of(name: str) -> float | None:
    """The expiry (epoch s) of a stamped name, None for any other name."""
    match = _STAMPED.match(name)
    if match is None:
        return None
    return float(calendar.timegm(time.strptime(match.group(1), STAMP_FORMAT)))


def sweep_expired(path: str | Path, now: float) -> int:
    """Delete expired stamped files under the upload and download folders of the directory
    at ``path`` (nothing when it does not exist); how many."""
    root = Path(path).expanduser()
    removed = 0
    for folder in (UPLOADS, DOWNLOADS):
        for dirpath, _dirs, files in os.walk(root / folder):
            for name in files:
                expires = expiry_of(name)
                if expires is not None and expires <= now:
                    try:
                        os.remove(os.path.join(dirpath, name))
                    except FileNotFoundError:  # served (and deleted) meanwhile
                        continue
                    removed += 1
    return removed
