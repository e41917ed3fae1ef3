"""``fluxfunc deploy DIR`` without a server: which files become which scripts, and the one-line
errors for bad names, no token and an unreachable server. (Publishing to a live server is in
tests/ops/test_up.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest

from fluxfunc_common import cli
from fluxfunc_common.cli.client import ApiError, resolve_target
from fluxfunc_common.cli.deploy import ScriptFile, _failure, collect
from fluxfunc_common.errors import ConfigError, FluxfuncError
from fluxfunc_common.proc.localredis import free_port

ROOT = Path(__file__).resolve().parents[2]


def test_examples_map_to_script_ids_with_titles() -> None:
    scripts = {s.script_id: s for s in collect(ROOT / "examples")}
    assert "demo__basic" in scripts and "demo__lib" in scripts
    assert all(s.script_id.startswith("demo__") for s in scripts.values())
    assert scripts["demo__basic"].title and scripts["demo__basic"].title.startswith("Basic")


def test_skips_private_files_hidden_folders_and_caches(tmp_path: Path) -> None:
    (tmp_path / "ops").mkdir()
    (tmp_path / "ops" / "jobs.py").write_text("x = 1\n")
    (tmp_path / "ops" / "__init__.py").write_text("")
    (tmp_path / "ops" / "_draft.py").write_text("")
    for hidden in (".git", "__pycache__"):
        (tmp_path / "ops" / hidden).mkdir()
        (tmp_path / "ops" / hidden / "x.py").write_text("")
    (tmp_path / "ops" / "sub").mkdir()
    (tmp_path / "ops" / "sub" / "more.py").write_text('"""More\n\nLonger text."""\n')
    found = {s.script_id: s for s in collect(tmp_path / "ops")}
    assert set(found) == {"ops__jobs", "sub__more"}  # the set is the folder a file is in
    assert (found["sub__more"].title, found["sub__more"].description) == ("More", "Longer text.")


@pytest.mark.parametrize("folder,name,why", [
    ("my-scripts", "a.py", "folder name"),
    ("a__b", "a.py", "folder name"),
    ("ok", "bad-name.py", "file name"),
])
def test_bad_names_are_refused_before_any_call(tmp_path: Path, folder: str, name: str, why: str) -> None:
    (tmp_path / folder).mkdir()
    (tmp_path / folder / name).write_text("")
    with pytest.raises(FluxfuncError, match=why):
        collect(tmp_path / folder)


def test_empty_or_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(FluxfuncError, match=r"no \*\.py scripts"):
        collect(tmp_path)
    with pytest.raises(FluxfuncError, match="not a folder"):
        collect(tmp_path / "nope")


def test_target_resolution_order(tmp_path: Path) -> None:
    state = tmp_path / ".fluxfunc"
    state.mkdir()
    (state / "url").write_text("http://127.0.0.1:9999\n")
    (state / "admin-token").write_text("ff_file\n")
    env = {"FLUXFUNC_URL": "http://env:1/", "FLUXFUNC_TOKEN": "ff_env"}
    assert resolve_target("http://flag:2", "ff_flag", environ=env, state_dir=state).url == "http://flag:2"
    assert resolve_target(None, None, environ=env, state_dir=state).token == "ff_env"
    got = resolve_target(None, None, environ={}, state_dir=state)
    assert (got.url, got.token) == ("http://127.0.0.1:9999", "ff_file")
    with pytest.raises(ConfigError, match="is missing"):  # never a guessed address
        resolve_target(None, None, environ={}, state_dir=tmp_path / "none")
    with pytest.raises(ConfigError, match="no fluxfunc instance found"):
        resolve_target(None, None, environ={}, cwd=tmp_path)
    # the .fluxfunc/ of `fluxfunc up` is found from a subfolder, like git finds .git/
    (state / "config.yaml").write_text("{}\n")
    (tmp_path / "a" / "b").mkdir(parents=True)
    got = resolve_target(None, None, environ={}, cwd=tmp_path / "a" / "b")
    assert (got.url, got.token, got.found_by) == ("http://127.0.0.1:9999", "ff_file", str(state))


def test_dry_run_lists_and_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("FLUXFUNC_TOKEN", raising=False)
    monkeypatch.delenv("FLUXFUNC_URL", raising=False)
    assert cli.main(["deploy", str(ROOT / "examples" / "demo"), "--dry-run"]) == 0
    assert "would publish demo__basic" in capsys.readouterr().out

    assert cli.main(["deploy", str(ROOT / "examples" / "demo")]) == 2
    assert "no fluxfunc instance found" in capsys.readouterr().err

    url = f"http://127.0.0.1:{free_port()}"
    assert cli.main(["deploy", str(ROOT / "examples" / "demo"), "--url", url, "--token", "ff_x"]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot reach the fluxfunc server" in err and "Traceback" not in err


def test_one_file_is_deployed_alone(tmp_path: Path) -> None:
    (tmp_path / "ops").mkdir()
    (tmp_path / "ops" / "jobs.py").write_text('"""Jobs"""\n')
    (tmp_path / "ops" / "other.py").write_text("")
    (found,) = collect(tmp_path / "ops" / "jobs.py")
    assert (found.script_id, found.title) == ("ops__jobs", "Jobs")
    (tmp_path / "ops" / "notes.txt").write_text("")
    with pytest.raises(FluxfuncError, match=r"not a \.py file"):
        collect(tmp_path / "ops" / "notes.txt")


def test_a_syntax_error_names_its_line_once(tmp_path: Path) -> None:
    script = ScriptFile(tmp_path / "mixed" / "broken.py", "mixed__broken", None, None, "def broken(:\n")
    error = ApiError(400, "EScriptInvalid", "mixed__broken: syntax error at line 1: invalid syntax",
                     {"line": 1, "col": 12})
    line = _failure(script, error)
    assert line.split() == ["FAILED", "mixed__broken", f"{script.path}:", "syntax", "error", "at",
                            "line", "1:", "invalid", "syntax"]
