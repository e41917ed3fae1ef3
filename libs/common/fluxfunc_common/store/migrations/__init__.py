"""Numbered schema migrations: ``NNNN_name.sql`` files next to this module.

Each file is plain SQL in the subset both backends share, one statement per ``;`` at the end
of a line, ``--`` comment lines ignored. A migration, once released, never changes; a schema
change is a new file with the next number. The runner lives in ``store/sql.py``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from importlib import resources

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    """One numbered migration and its statements."""

    version: int
    name: str
    statements: tuple[str, ...]


def split_statements(text: str) -> tuple[str, ...]:
    """Statements of a migration file (comments dropped, split on a line-final ``;``)."""
    lines = [line for line in text.splitlines() if not line.strip().startswith("--")]
    parts = re.split(r";\s*$", "\n".join(lines), flags=re.MULTILINE)
    return tuple(part.strip() for part in parts if part.strip())


@cache
def all_migrations() -> tuple[Migration, ...]:
    """Every migration shipped with this package, in version order."""
    found = []
    for entry in resources.files(__name__).iterdir():
        match = _NAME.match(entry.name)
        if match:
            statements = split_statements(entry.read_text(encoding="utf-8"))
            found.append(Migration(int(match.group(1)), match.group(2), statements))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"duplicate migration numbers in {__name__}: {versions}")
    return tuple(found)


def latest_version() -> int:
    """The schema version this code expects."""
    migrations = all_migrations()
    return migrations[-1].version if migrations else 0
