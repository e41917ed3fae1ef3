"""The pool's side of package-set switches: which folder new tasks get, which child is stale.

A child puts the folder of its first task on ``sys.path`` (:mod:`~fluxfunc_worker.sitepath`)
and keeps it. After a switch, a child that ran tasks with another folder is *stale*: idle, it
is recycled at once; running, it finishes its task on the old set and is recycled then. A
child that has not run a task yet simply takes the new folder with its first one.
"""

from __future__ import annotations


class PackageSwitch:
    """The folder of the current package set (None: no extra packages) and what each child used."""

    def __init__(self) -> None:
        self.folder: str | None = None
        self.switches = 0
        self._used: dict[int, str | None] = {}

    def switch(self, folder: str | None) -> bool:
        """Make ``folder`` current; False when it already is."""
        if folder == self.folder:
            return False
        self.folder = folder
        self.switches += 1
        return True

    def stamp(self, pid: int) -> str | None:
        """The folder for a task sent to child ``pid`` now (remembered as that child's)."""
        self._used[pid] = self.folder
        return self.folder

    def stale(self, pid: int) -> bool:
        """Child ``pid`` ran tasks with another set: it must not take another task."""
        return pid in self._used and self._used[pid] != self.folder

    def forget(self, pid: int) -> None:
        self._used.pop(pid, None)
