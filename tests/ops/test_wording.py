"""Help texts, code and docs cite nothing a user does not have: no design-document sections,
no paths into folders outside the repository."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

from fluxfunc_common.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ["libs", "services", "docs", "compose", "deploy", "examples", "README.md"]
FORBIDDEN = ("SPEC §", "SPEC.md", "STYLE.md", "baseline.md", "streams-protocol.md", "shared/", "research/")
SUFFIXES = {".py", ".md", ".lua", ".sql", ".yaml", ".yml", ".toml", ".txt", ".conf", ""}


def shipped_files() -> list[Path]:
    out: list[Path] = []
    for name in SHIPPED:
        top = ROOT / name
        found = [top] if top.is_file() else [p for p in top.rglob("*") if p.is_file()]
        out += [p for p in found if p.suffix in SUFFIXES and "__pycache__" not in p.parts
                and "node_modules" not in p.parts]  # the console's npm packages are not shipped
    return out


def test_no_file_cites_what_users_do_not_have() -> None:
    files = shipped_files()
    assert len(files) > 50
    hits = [f"{path.relative_to(ROOT)}:{n}: {line.strip()}"
            for path in files
            for n, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1)
            if any(word in line for word in FORBIDDEN)]
    assert not hits, "\n".join(hits)


def helps(parser: argparse.ArgumentParser) -> Iterator[str]:
    """The --help text of a parser and of every subcommand under it."""
    yield parser.format_help()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from helps(sub)


def test_help_texts_are_for_users() -> None:
    texts = list(helps(build_parser()))
    assert len(texts) > 10 and "deploy" in texts[0]
    bad = [t for t in texts if any(word in t for word in (*FORBIDDEN, "SPEC"))]
    assert not bad, "\n\n".join(bad)
