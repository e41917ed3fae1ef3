"""The lock files: every dependency pyproject.toml names is pinned, at a version its range
allows; the runtime lock agrees with the dev lock; the images and the README install from them."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)", re.M)


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins(lock: str) -> dict[str, str]:
    text = (ROOT / "requirements" / lock).read_text()
    return {canonical(name): version for name, version in PIN.findall(text)}


def requirements(*groups: str) -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    found = [Requirement(r) for r in project["dependencies"]]
    for group in groups:
        found += [Requirement(r) for r in project["optional-dependencies"][group]]
    return [r for r in found if r.marker is None or r.marker.evaluate()]


@pytest.mark.parametrize(("lock", "groups"), [("dev.lock", ("dev",)), ("runtime.lock", ())])
def test_every_dependency_is_pinned_within_its_range(lock: str, groups: tuple[str, ...]) -> None:
    pinned = pins(lock)
    for req in requirements(*groups):
        version = pinned.get(canonical(req.name))
        assert version, f"{req.name} is not pinned in requirements/{lock}"
        assert req.specifier.contains(version, prereleases=True), f"{req.name}=={version} is outside {req}"


def test_runtime_lock_agrees_with_dev_lock() -> None:
    dev = pins("dev.lock")
    assert {name: dev.get(name) for name in pins("runtime.lock")} == pins("runtime.lock")


@pytest.mark.parametrize("role", ["server", "worker", "beat"])
def test_images_install_from_the_runtime_lock(role: str) -> None:
    text = (ROOT / "compose" / role / "Dockerfile").read_text()
    assert "COPY requirements/runtime.lock" in text
    assert re.search(r"^RUN pip wheel .*--constraint requirements/runtime\.lock", text, re.M)


def test_readme_and_ci_install_from_the_lock() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "pip install -c requirements/dev.lock -e '.[dev]'" in readme
    assert "pip install -c requirements/runtime.lock -e ." in readme
    assert "-c requirements/dev.lock -e '.[dev]'" in (ROOT / ".ci" / "run").read_text()
