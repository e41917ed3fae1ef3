"""The lock files' two checks, for .ci/run and .ci/relock (standard library only).

    python .ci/locks.py diff OLD_LOCK NEW_LOCK   what moved between two locks, one line each
    python .ci/locks.py installed LOCK PYTHON    every package installed in PYTHON's environment
                                                 is pinned in LOCK at that exact version
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)")


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(lines: list[str]) -> dict[str, str]:
    found = (PIN.match(line) for line in lines)
    return {canonical(m.group(1)): m.group(2) for m in found if m}


def diff(old: Path, new: Path) -> int:
    before, after = pins(old.read_text().splitlines()), pins(new.read_text().splitlines())
    changes = [f"  {name}: {before.get(name, '-')} -> {after.get(name, '-')}"
               for name in sorted(before.keys() | after.keys()) if before.get(name) != after.get(name)]
    print(f"{new}: " + (f"{len(changes)} change(s)" if changes else "no change"))
    print("\n".join(changes)) if changes else None
    return 0


def installed(lock: Path, python: str) -> int:
    frozen = subprocess.run([python, "-m", "pip", "freeze", "--exclude-editable"], check=True,
                            capture_output=True, text=True).stdout.splitlines()
    locked = pins(lock.read_text().splitlines())
    wrong = [f"  {name}=={version} (lock: {locked.get(name, 'not pinned')})"
             for name, version in sorted(pins(frozen).items()) if locked.get(name) != version]
    if wrong:
        print(f"installed versions that are not the ones in {lock}:", *wrong, sep="\n", file=sys.stderr)
        return 1
    print(f"all {len(frozen)} installed packages are pinned in {lock}")
    return 0


def main(argv: list[str]) -> int:
    if len(argv) == 3 and argv[0] == "diff":
        return diff(Path(argv[1]), Path(argv[2]))
    if len(argv) == 3 and argv[0] == "installed":
        return installed(Path(argv[1]), argv[2])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
