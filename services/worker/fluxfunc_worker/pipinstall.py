"""Install one package set into this machine's content-addressed folder with pip.

``python -m pip install --target {dir}/.tmp-{hash}-{random} -r lines`` (dependencies
included; pip installs them into the target even when fluxfunc's environment has them), then
the top-level names are checked (nothing may shadow the standard library or fluxfunc), then
the folder is renamed to ``{dir}/{hash}`` — atomic: a folder with a set's name is always
complete. Sources: wheels in ``{resources.path}/packages/`` (``--find-links``), then
``packages.index_url`` (``--index-url``) or PyPI; ``packages.offline`` adds ``--no-index``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path

from fluxfunc_common.packages import ERROR_LINES, folder_hash, shadowing
from fluxfunc_common.settings import PackagesSettings
from fluxfunc_worker.launcher import child_environ

TMP_PREFIX = ".tmp-"
SKIPPED = {"bin", "__pycache__"}
META_SUFFIXES = (".dist-info", ".egg-info", ".data", ".pth")


class InstallFailed(Exception):
    """pip failed, timed out or installed something refused; the message is for the operator."""


def wheel_dir(resources_path: str) -> Path:
    """Where uploaded wheels are looked for: ``{resources.path}/packages/``."""
    return Path(resources_path) / "packages"


def pip_command(requirements: Path, target: Path, settings: PackagesSettings,
                find_links: Path | None) -> list[str]:
    cmd = [sys.executable, "-m", "pip", "install", "--target", str(target),
           "--requirement", str(requirements), "--disable-pip-version-check", "--no-input",
           "--no-warn-script-location", "--progress-bar", "off"]
    if find_links is not None:
        cmd += ["--find-links", str(find_links)]
    if settings.index_url:
        cmd += ["--index-url", settings.index_url]
    if settings.offline:
        cmd.append("--no-index")
    return cmd


def top_level_names(folder: Path) -> dict[str, str]:
    """Importable top-level names in an install folder → the distribution that put it there."""
    owners: dict[str, str] = {}
    for meta in folder.glob("*.dist-info"):
        dist = meta.name[: -len(".dist-info")].split("-")[0]
        with contextlib.suppress(OSError):
            for row in (meta / "RECORD").read_text(errors="replace").splitlines():
                first = row.split(",", 1)[0].split("/", 1)[0]
                owners.setdefault(_module_name(first), dist)
    names: dict[str, str] = {}
    for entry in folder.iterdir():
        if entry.name in SKIPPED or entry.name.endswith(META_SUFFIXES):
            continue
        name = _module_name(entry.name)
        if name.isidentifier() and (entry.is_dir() or entry.name != name):
            names[name] = owners.get(name, "?")
    return names


def _module_name(file_name: str) -> str:
    """``six.py`` → ``six``; ``_x.cpython-311-x86_64-linux-gnu.so`` → ``_x``; a folder as is."""
    if file_name.endswith((".py", ".so", ".pyd", ".pyc")):
        return file_name.split(".", 1)[0]
    return file_name


def refused(names: dict[str, str]) -> str | None:
    """The operator's message when an installed name shadows the stdlib or fluxfunc."""
    bad = shadowing(names)
    if not bad:
        return None
    parts = []
    for name in bad:
        what = "fluxfunc's own modules" if name.lower().startswith("fluxfunc") else \
            f"the standard library module {name!r}"
        parts.append(f"{names[name]} installs the top-level module {name!r}, which would shadow {what}")
    return "refused: " + "; ".join(parts) + " (the previous package set stays in use)"


def tail(text: str, lines: int = ERROR_LINES) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


async def run_pip(cmd: Sequence[str], timeout: float, tmpdir: Path) -> tuple[int, str]:  # noqa: ASYNC109
    """Run pip in its own process group (killed whole on timeout or cancel): (code, output).
    Its temporary files go to ``tmpdir`` (on the packages volume, not a small ``/tmp``)."""
    env = {**child_environ(), "PYTHONNOUSERSITE": "1", "PIP_NO_INPUT": "1", "TMPDIR": str(tmpdir)}
    proc = await asyncio.create_subprocess_exec(
        *cmd, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT, env=env, start_new_session=True)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        raise
    return int(proc.returncode or 0), out.decode(errors="replace")


class Installer:
    """Installs sets under ``settings.dir`` (one folder per set, kept while used)."""

    def __init__(self, settings: PackagesSettings, resources_path: str) -> None:
        self.settings = settings
        self.root = Path(settings.dir).resolve()
        self.wheels = wheel_dir(resources_path)

    def folder(self, lines: Sequence[str]) -> Path:
        return self.root / folder_hash(lines)

    async def install(self, lines: Sequence[str]) -> Path:
        """The folder of ``lines``, installed now unless this machine has it already."""
        final = self.folder(lines)
        if final.is_dir():
            return final
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f"{TMP_PREFIX}{final.name}-{secrets.token_hex(4)}"
        tmp.mkdir()
        try:
            await self._pip(lines, tmp)
            problem = refused(top_level_names(tmp))
            if problem:
                raise InstallFailed(problem)
            try:
                tmp.rename(final)
            except OSError:  # another worker of this machine renamed the same set first
                if not final.is_dir():
                    raise
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)
        return final

    async def _pip(self, lines: Sequence[str], tmp: Path) -> None:
        work = tmp.parent / f"{tmp.name}-work"  # pip's TMPDIR and the requirements file
        work.mkdir()
        requirements = work / "requirements.txt"
        requirements.write_text("\n".join(lines) + "\n")
        find_links = self.wheels if self.wheels.is_dir() else None
        cmd = pip_command(requirements, tmp, self.settings, find_links)
        try:
            code, out = await run_pip(cmd, self.settings.install_timeout, work)
        except TimeoutError:
            raise InstallFailed(f"pip did not finish within packages.install_timeout "
                                f"({self.settings.install_timeout:g} s)") from None
        finally:
            shutil.rmtree(work, ignore_errors=True)
        if code != 0:
            raise InstallFailed(f"pip install failed (exit code {code}):\n{tail(out)}")

    def touch(self, folder: Path | None) -> None:
        """Mark a folder as in use (pruning keeps what was used recently)."""
        if folder is not None:
            with contextlib.suppress(OSError):
                os.utime(folder)

    def prune(self, keep: Iterable[Path]) -> list[str]:
        """Delete set folders unused for ``keep_unused_hours`` and stale temporary folders."""
        if not self.root.is_dir():
            return []
        kept = {p.name for p in keep}
        now = time.time()
        limit = self.settings.keep_unused_hours * 3600
        removed = []
        for entry in self.root.iterdir():
            if entry.name in kept or not entry.is_dir():
                continue
            if entry.name.startswith(TMP_PREFIX):
                too_old = now - entry.stat().st_mtime > 2 * self.settings.install_timeout + 60
            else:
                too_old = len(entry.name) == 32 and now - entry.stat().st_mtime > limit
            if too_old:
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry.name)
        return removed
