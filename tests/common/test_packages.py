"""The package-list model: requirement lines checked as PEP 508, the resolved set of the
deployment list and the script sets, the hashes, the shadowing check and the worker state."""

from __future__ import annotations

import sys

import pytest

from fluxfunc_common import packages
from fluxfunc_common.errors import BadRequest


def test_valid_lines_are_kept_in_order_without_blanks_comments_or_repeats() -> None:
    given = ["requests==2.32.3", "", "# a comment", "  pyjokes>=0.6 ", "requests==2.32.3",
             'tomli; python_version < "3.11"', "demo @ https://example.com/demo-1.0-py3-none-any.whl",
             "Pillow[extra]~=10.0"]
    assert packages.parse_lines(given) == [
        "requests==2.32.3", "pyjokes>=0.6", 'tomli; python_version < "3.11"',
        "demo @ https://example.com/demo-1.0-py3-none-any.whl", "Pillow[extra]~=10.0"]


@pytest.mark.parametrize(("line", "why"), [
    ("requests==", "not a PEP 508 requirement"),
    ("two words", "not a PEP 508 requirement"),
    ("--index-url https://evil.example", "pip options are not accepted"),
    ("-r other.txt", "pip options are not accepted"),
    ("fluxfunc==0.1", "would replace fluxfunc itself"),
    ("x" * 1001, "longer than 1000 characters"),
])
def test_a_bad_line_is_a_400_naming_it(line: str, why: str) -> None:
    with pytest.raises(BadRequest) as caught:
        packages.parse_lines(["requests", line])
    assert "line 2" in caught.value.message and why in caught.value.message
    assert caught.value.detail == {"line": 2}


def test_too_many_lines_are_refused() -> None:
    with pytest.raises(BadRequest, match="more than 500"):
        packages.parse_lines([f"pkg{i}" for i in range(501)])


def test_the_resolved_set_joins_the_list_and_the_script_sets_and_skips_bad_stored_lines() -> None:
    resolved = packages.resolve(["requests==2.32.3"], [
        ("alpha", "pyjokes\n# comment\nrequests==2.32.3  # again\n"),
        ("beta", "text-unidecode==1.3\nnot valid at all"),
        ("gamma", None)])
    assert resolved.lines == ["pyjokes", "requests==2.32.3", "text-unidecode==1.3"]
    assert resolved.script_sets == {"alpha": ["pyjokes", "requests==2.32.3"], "beta": ["text-unidecode==1.3"]}
    assert len(resolved.ignored) == 1 and resolved.ignored[0].startswith("beta: not valid at all")
    public = resolved.public()
    assert public["hash"] == resolved.hash and public["scriptSets"] == resolved.script_sets


def test_hashes_ignore_order_and_the_folder_hash_adds_python_and_platform() -> None:
    assert packages.list_hash([]) == ""
    assert packages.list_hash(["b", "a"]) == packages.list_hash(["a", "b"]) != packages.list_hash(["a"])
    assert packages.folder_hash(["b", "a"]) == packages.folder_hash(["a", "b"])
    assert packages.folder_hash(["a"]) != packages.list_hash(["a"])
    assert len(packages.folder_hash(["a"])) == 32


def test_shadowing_names_the_stdlib_and_fluxfunc_modules() -> None:
    assert packages.shadowing(["json", "requests", "fluxfunc_worker", "typing", "pyjokes"]) == [
        "fluxfunc_worker", "json", "typing"]
    assert "asyncio" in sys.stdlib_module_names


def test_a_worker_state_reads_as_one_line() -> None:
    ok = packages.WorkerPackages(instance="w", state="ok", hash="abc", wanted="abc")
    assert ok.summary() == "ok abc"
    failed = packages.WorkerPackages(instance="w", state="failed", hash="abc", wanted="def",
                                     error="pip install failed:\nERROR: No matching distribution")
    assert failed.summary() == "failed abc (wanted def): ERROR: No matching distribution"
    assert failed.public()["updateTime"] == 0.0 and "update_time" not in failed.public()


def test_the_streams_rows_name_the_worker_and_its_host() -> None:
    rows = packages.status_rows([packages.WorkerPackages(instance="w1", host="box", hash="abc", wanted="abc"),
                                 packages.WorkerPackages(instance="w2", state="installing", wanted="def")])
    assert rows == [["w1 (box)", "ok abc"], ["w2", "installing (none) (wanted def)"]]


def test_without_packaging_the_strict_pattern_checks_the_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    real = packages.importlib.import_module

    def no_packaging(name: str) -> object:
        if name.endswith("packaging.requirements"):
            raise ImportError(name)
        return real(name)

    monkeypatch.setattr(packages.importlib, "import_module", no_packaging)
    good = ["requests==2.32.3", "pyjokes", "Pillow[extra, more]~=10.0,!=10.1",
            'tomli; python_version < "3.11"', "demo @ https://example.com/demo.whl", "a.b_c-d>=1.0rc1"]
    assert packages.parse_lines(good) == good
    for bad in ("two words", "requests==", "[x]", "name @", "fluxfunc-common"):
        with pytest.raises(BadRequest):
            packages.parse_lines([bad])
