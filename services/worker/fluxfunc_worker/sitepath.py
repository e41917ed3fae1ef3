"""In a worker child: put the installed package set's folder on ``sys.path``.

Each task message names the folder of the set the worker uses (``pkgs``; None without
extra packages). It is APPENDED to ``sys.path``, after the standard library and fluxfunc's
own site-packages, so an extra package can never shadow them (``.pth`` files in it are not
processed). A child keeps one set for its whole life: the pool recycles a child that ran
tasks with another set (see docs/packages.md), so a module imported from the old set is
never mixed with the new one.
"""

from __future__ import annotations

import importlib
import sys

_current: str | None = None


def use(folder: str | None) -> None:
    """Make ``folder`` (or no folder) this child's package set."""
    global _current
    if folder == _current:
        return
    if _current is not None and _current in sys.path:
        sys.path.remove(_current)
    if folder:
        sys.path.append(folder)
    _current = folder
    importlib.invalidate_caches()


def current() -> str | None:
    return _current
