"""`fluxfunc deploy PATH`: publish every ``*.py`` under a folder, or one file, over HTTP.

The script set of a file is the name of the folder it is in, its script id
``<set>__<file stem>`` (``examples/demo/basic.py`` → ``demo__basic``). Each file is published
in one call that creates the script when missing, otherwise replaces its draft; every worker
runs the new code within 2 s. The module docstring's first line becomes the title. In a
folder, files whose name starts with ``_`` (``__init__.py``) and hidden or ``__pycache__``
folders are skipped.

Server and token: ``--url`` / ``--token``, else ``$FLUXFUNC_URL`` / ``$FLUXFUNC_TOKEN``, else
the instance found as every command finds it (``--config``, ``$FLUXFUNC_CONFIG``,
``.fluxfunc/`` here or in a folder above); nothing found is an error. The first output line
names the server.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypedDict

from fluxfunc_common.cli.client import AdminClient, ApiError, Target, resolve_target
from fluxfunc_common.cli.instance import CONFIG_HELP
from fluxfunc_common.errors import ConfigError, FluxfuncError, Unavailable
from fluxfunc_common.lifecycle import fail

# The Server's id rules: one word or words joined by single underscores.
SET_ID = re.compile(r"^[A-Za-z][A-Za-z0-9]*(_[A-Za-z0-9]+)*$")
STEM = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_]*$")
MAX_SCRIPT_ID = 100


@dataclass(frozen=True)
class ScriptFile:
    """One file to publish and the script it becomes."""

    path: Path
    script_id: str
    title: str | None
    description: str | None
    code: str


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("deploy", help="publish every *.py under DIR, or one FILE.py "
                            "(script set = folder name)", description=__doc__.splitlines()[0])
    parser.add_argument("dir", metavar="PATH", help="folder of scripts, or one .py file")
    parser.add_argument("--url", help="server URL (default: $FLUXFUNC_URL, else the url in the "
                        ".fluxfunc/ found here or above, else server.host/port of --config)")
    parser.add_argument("--token", help="admin token (default: $FLUXFUNC_TOKEN, else the "
                        "admin-token in the .fluxfunc/ found here or above)")
    parser.add_argument("--config", metavar="PATH", help=CONFIG_HELP)
    parser.add_argument("--dry-run", action="store_true", help="list what would be published")
    parser.set_defaults(func=run)


def script_id_for(path: Path) -> str:
    """``…/demo/basic.py`` → ``demo__basic``; FluxfuncError naming the rule that is broken."""
    folder, stem = path.parent.resolve().name, path.stem
    if not SET_ID.match(folder):
        raise FluxfuncError(f"{path}: folder name {folder!r} is not a valid script set id "
                            "(letters and digits, words joined by single underscores, "
                            "starting with a letter)")
    if not STEM.match(stem):
        raise FluxfuncError(f"{path}: file name {stem!r} is not a valid script name "
                            "(letters, digits and underscores)")
    script_id = f"{folder}__{stem}"
    if len(script_id) > MAX_SCRIPT_ID:
        raise FluxfuncError(f"{path}: script id {script_id!r} is longer than {MAX_SCRIPT_ID}")
    return script_id


def _docstring(code: str) -> tuple[str | None, str | None]:
    """Title (first line) and description (the rest) of the module docstring, if it parses."""
    try:
        doc = ast.get_docstring(ast.parse(code))
    except (SyntaxError, ValueError):
        return None, None  # publish reports the syntax error with line and column
    if not doc:
        return None, None
    first, _, rest = doc.partition("\n")
    return first.strip()[:256] or None, rest.strip() or None


def _walk(root: Path) -> Iterator[Path]:
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).parts
        if any(p.startswith(".") or p == "__pycache__" for p in rel[:-1]) or path.name.startswith("_"):
            continue
        yield path


def collect(root: Path) -> list[ScriptFile]:
    """Every script under ``root`` (or ``root`` itself, a ``.py`` file), in a stable order;
    FluxfuncError when none or a bad name."""
    if root.is_file() and root.suffix != ".py":
        raise FluxfuncError(f"{root} is not a .py file")
    if not root.is_dir() and not root.is_file():
        raise FluxfuncError(f"{root} is not a folder or a .py file")
    out: list[ScriptFile] = []
    seen: dict[str, Path] = {}
    for path in _walk(root) if root.is_dir() else [root]:
        script_id = script_id_for(path)
        if script_id in seen:
            raise FluxfuncError(f"{path} and {seen[script_id]} would both be script {script_id}")
        seen[script_id] = path
        code = path.read_text(encoding="utf-8")
        title, description = _docstring(code)
        out.append(ScriptFile(path, script_id, title, description, code))
    if not out:
        raise FluxfuncError(f"no *.py scripts under {root}")
    return out


class PublishedScript(TypedDict, total=False):
    publishVersion: int


class PublishedFunc(TypedDict):
    name: str


class Published(TypedDict, total=False):
    """The parts of the publish answer (docs/http-api.md) that ``deploy`` prints; the Server's
    JSON is not checked, so they are read with ``get``."""

    script: PublishedScript
    funcs: list[PublishedFunc]
    warnings: list[str]


async def publish_one(api: AdminClient, script: ScriptFile) -> Published:
    """Create or replace the draft and publish it, in one call; the answer (``script``,
    ``funcs``, ``warnings``)."""
    fields = {"title": script.title or script.script_id.split("__", 1)[1], "code": script.code}
    if script.description:
        fields["description"] = script.description
    data: Published = await api.call("POST", f"/api/v1/scripts/{script.script_id}/publish", fields)
    return data


def _failure(script: ScriptFile, exc: ApiError) -> str:
    """``FAILED  id  path: message``; the server's message already names the line."""
    message = exc.message.removeprefix(f"{script.script_id}: ")
    return f"FAILED    {script.script_id:<32} {script.path}: {message}"


async def deploy(target: Target, scripts: list[ScriptFile], *, out: Any = print) -> int:
    """Publish each script (going on after a failure); the number that failed."""
    failed = 0
    async with AdminClient(target) as api:
        for script in scripts:
            try:
                data = await publish_one(api, script)
            except ApiError as exc:
                if exc.status == 401:
                    raise FluxfuncError(f"{target.url} refused the admin token ({exc.message}); "
                                        "pass --token or set FLUXFUNC_TOKEN") from None
                failed += 1
                out(_failure(script, exc))
                continue
            names = ", ".join(f["name"] for f in data.get("funcs", [])) or "no @DFF.API functions"
            version = (data.get("script") or {}).get("publishVersion", "?")
            out(f"published {script.script_id:<32} v{version}  {names}")
            for warning in data.get("warnings", []):
                out(f"          warning: {warning}")
    return failed


def run(args: argparse.Namespace) -> int:
    """Entry point of ``fluxfunc deploy PATH``: 0 when every script was published."""
    try:
        scripts = collect(Path(args.dir))
        if args.dry_run:
            for s in scripts:
                print(f"would publish {s.script_id:<32} {s.path}")
            return 0
        target = resolve_target(args.url, args.token, config=args.config)
        if not target.token:
            return fail("no admin token: pass --token, set FLUXFUNC_TOKEN, or run where "
                        "`fluxfunc up` keeps .fluxfunc/admin-token")
        print(f"server: {target.url}" + (f" ({target.found_by})" if target.found_by else ""),
              flush=True)
        failed = asyncio.run(deploy(target, scripts))
    except Unavailable as exc:
        return fail(exc.message, 3)
    except ConfigError as exc:  # no instance named: nothing was tried
        return fail(exc.message)
    except FluxfuncError as exc:
        return fail(exc.message, 1)
    print(f"{len(scripts) - failed} of {len(scripts)} scripts published to {target.url}", flush=True)
    return 1 if failed else 0
