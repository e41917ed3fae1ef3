"""The shape of the code base, checked: small modules, simple functions, no import cycle,
no citation of a file outside the repository, and domain data in typed models.

These are the structural rules of docs/architecture.md; each test names what broke it.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCE_DIRS = [ROOT / "libs", ROOT / "services"]
PACKAGE_ROOTS = [ROOT / "libs" / "common", *(p for p in (ROOT / "services").iterdir() if p.is_dir())]
MAX_MODULE_LINES = 400
# 329 lines held `dict[str, Any]` when the typed models were introduced; the rule is at most a
# quarter of that.
MAX_UNTYPED_DICTS = 82


def _sources() -> Iterator[Path]:
    for base in SOURCE_DIRS:
        yield from (p for p in sorted(base.rglob("*.py")) if "node_modules" not in p.parts)


def _module_name(path: Path) -> str:
    for root in PACKAGE_ROOTS:
        if path.is_relative_to(root):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            return ".".join(parts)
    raise AssertionError(f"{path} is outside every package root")


def test_no_module_over_the_line_limit() -> None:
    too_long = {str(p.relative_to(ROOT)): n for p in _sources()
                if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not too_long, f"modules over {MAX_MODULE_LINES} lines: {too_long}"


def test_no_function_at_complexity_d_or_worse() -> None:
    out = subprocess.run([sys.executable, "-m", "radon", "cc", "-n", "D", *map(str, SOURCE_DIRS)],
                         capture_output=True, text=True, check=True).stdout
    assert not out.strip(), f"radon cc -n D found:\n{out}"


def _type_checking_block(node: ast.AST) -> bool:
    return isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)


def _imports(tree: ast.AST, known: set[str], package: str) -> Iterator[str]:
    """Every project module ``tree`` imports, outside ``if TYPE_CHECKING:`` blocks."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if _type_checking_block(node):
            continue
        stack.extend(ast.iter_child_nodes(node))
        if isinstance(node, ast.Import):
            yield from (a.name for a in node.names if a.name in known)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                if sub in known:
                    yield sub
                elif base in known:
                    yield base


def _import_graph() -> dict[str, set[str]]:
    paths = {_module_name(p): p for p in _sources()}
    known = set(paths)
    graph: dict[str, set[str]] = {}
    for name, path in paths.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        graph[name] = set(_imports(ast.parse(path.read_text()), known, package)) - {name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle() -> None:
    graph = _import_graph()
    # a package's __init__ importing its own submodules is not a cycle of concepts
    for name in graph:
        graph[name] = {m for m in graph[name] if not name.startswith(f"{m}.")}
    assert not _cycles(graph), f"import cycles: {_cycles(graph)}"


_OUTSIDE = re.compile(r"SPEC §|\bSPEC\.md|\bSTYLE\b|STYLE\.md|research/|baseline\.md|shared/")


def test_nothing_cites_a_file_outside_the_repository() -> None:
    texts = [*_sources(), *sorted((ROOT / "docs").rglob("*.md")), ROOT / "README.md"]
    hits = [f"{p.relative_to(ROOT)}:{i}: {line.strip()}" for p in texts
            for i, line in enumerate(p.read_text().splitlines(), 1) if _OUTSIDE.search(line)]
    assert not hits, "citations of files outside the repository:\n" + "\n".join(hits)


def test_domain_data_is_typed() -> None:
    # counted as `grep -rn "dict\[str, Any\]" libs services | wc -l` counts: lines that hold one
    count = sum(1 for p in _sources() for line in p.read_text().splitlines() if "dict[str, Any]" in line)
    assert count <= MAX_UNTYPED_DICTS, (
        f"{count} `dict[str, Any]` annotations in libs/ and services/ (at most {MAX_UNTYPED_DICTS}): "
        "use the typed models in fluxfunc_common.models, TypedDicts or dataclasses")
