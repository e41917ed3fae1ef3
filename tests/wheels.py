"""Minimal hand-made wheels for the package tests: a zip with modules and a dist-info, which
pip installs offline (``--find-links DIR --no-index``)."""

from __future__ import annotations

import base64
import hashlib
import zipfile
from pathlib import Path


def _digest(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def build_wheel(folder: Path, name: str, version: str, files: dict[str, str],
                requires: tuple[str, ...] = ()) -> Path:
    """``{folder}/{name}-{version}-py3-none-any.whl`` holding ``files`` (path → text)."""
    folder.mkdir(parents=True, exist_ok=True)
    dist = name.replace("-", "_")
    info = f"{dist}-{version}.dist-info"
    metadata = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    metadata += "".join(f"Requires-Dist: {r}\n" for r in requires)
    members = {path: text.encode() for path, text in files.items()}
    members[f"{info}/METADATA"] = metadata.encode()
    members[f"{info}/WHEEL"] = (b"Wheel-Version: 1.0\nGenerator: fluxfunc-tests\n"
                                b"Root-Is-Purelib: true\nTag: py3-none-any\n")
    record = "".join(f"{path},{_digest(data)},{len(data)}\n" for path, data in members.items())
    record += f"{info}/RECORD,,\n"
    path = folder / f"{dist}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as whl:
        for member, data in members.items():
            whl.writestr(member, data)
        whl.writestr(f"{info}/RECORD", record)
    return path


def module_wheel(folder: Path, name: str, version: str, value: str) -> Path:
    """A wheel of package ``name`` whose module ``name`` has ``VALUE = value``."""
    module = name.replace("-", "_")
    return build_wheel(folder, name, version, {f"{module}/__init__.py": f"VALUE = {value!r}\n"})
