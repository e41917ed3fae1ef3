"""`fluxfunc deploy DIR`: publish every ``*.py`` under DIR through the Server's HTTP API.

The script set of a file is the name of the folder it is in, its script id
``<set>__<file stem>`` (``examples/demo/basic.py`` → ``demo__basic``). A script is created
when missing, otherwise its draft is replaced; then it is published, which makes every
worker run the new code within 2 s. The module docstring's first line becomes the title.
Files whose name starts with ``_`` (``__init__.py``) and hidden or ``__pycache__`` folders
are skipped.

Server and token: ``--url`` / ``--token``, else ``$FLUXFUNC_URL`` / ``$FLUXFUNC_TOKEN``, else
what ``fluxfunc up`` left in ``./.fluxfunc/``, else ``http://127.0.0.1:8088``.
"""

from __future__ import annotations

import argparse
import ast
import asyncio
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fluxfunc_common.client import AdminClient, ApiError, Target, resolve_target
from fluxfunc_common.errors import FluxfuncError, Unavailable
from fluxfunc_common.lifecycle import fail

# The Server's id rules (SPEC §2): one word or words joined by single underscores.
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
    parser = sub.add_parser("deploy", help="publish every *.py under DIR (script set = folder name)",
                            description=__doc__.splitlines()[0])
    parser.add_argument("dir", metavar="DIR", help="folder of scripts")
    parser.add_argument("--url", help="server URL (default: $FLUXFUNC_URL, ./.fluxfunc/url, "
                        "http://127.0.0.1:8088)")
    parser.add_argument("--token", help="admin token (default: $FLUXFUNC_TOKEN, "
                        "./.fluxfunc/admin-token)")
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
    """Every script under ``root``, in a stable order; FluxfuncError when none or a bad name."""
    if not root.is_dir():
        raise FluxfuncError(f"{root} is not a folder")
    out: list[ScriptFile] = []
    seen: dict[str, Path] = {}
    for path in _walk(root):
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


async def publish_one(api: AdminClient, script: ScriptFile) -> dict[str, Any]:
    """Create or update the draft, then publish; the publish answer (``script``, ``funcs``)."""
    fields = {"title": script.title or script.script_id.split("__", 1)[1],
              "description": script.description, "code": script.code}
    try:
        await api.call("POST", "/api/v1/scripts", {"id": script.script_id, **fields})
    except ApiError as exc:
        if exc.status != 409:
            raise
        await api.call("PATCH", f"/api/v1/scripts/{script.script_id}", fields)
    data: dict[str, Any] = await api.call("POST", f"/api/v1/scripts/{script.script_id}/publish", {})
    return data


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
                where = f" (line {exc.detail['line']})" if exc.detail.get("line") else ""
                out(f"FAILED    {script.script_id:<32} {script.path}: {exc.message}{where}")
                continue
            names = ", ".join(f["name"] for f in data.get("funcs", [])) or "no @DFF.API functions"
            version = (data.get("script") or {}).get("publishVersion", "?")
            out(f"published {script.script_id:<32} v{version}  {names}")
            for warning in data.get("warnings", []):
                out(f"          warning: {warning}")
    return failed


def run(args: argparse.Namespace) -> int:
    """Entry point of ``fluxfunc deploy DIR``: 0 when every script was published."""
    try:
        scripts = collect(Path(args.dir))
        if args.dry_run:
            for s in scripts:
                print(f"would publish {s.script_id:<32} {s.path}")
            return 0
        target = resolve_target(args.url, args.token)
        if not target.token:
            return fail("no admin token: pass --token, set FLUXFUNC_TOKEN, or run where "
                        "`fluxfunc up` keeps .fluxfunc/admin-token")
        failed = asyncio.run(deploy(target, scripts))
    except Unavailable as exc:
        return fail(exc.message, 3)
    except FluxfuncError as exc:
        return fail(exc.message, 1)
    print(f"{len(scripts) - failed} of {len(scripts)} scripts published to {target.url}", flush=True)
    return 1 if failed else 0
