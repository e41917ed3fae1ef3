"""One discovery rule for every subcommand: ``--config``, else ``$FLUXFUNC_CONFIG``, else the
``.fluxfunc/config.yaml`` of ``fluxfunc up`` in the working directory or a folder above it;
else an error that says how to point at an instance — never a default database or Redis.
Each command's first line names the instance it talks to."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from fluxfunc_common import cli
from fluxfunc_common.proc.localredis import free_port
from fluxfunc_common.settings import Settings

# every subcommand that talks to an instance, with the arguments of a harmless call
COMMANDS: list[list[str]] = [["admin", "create-token"], ["admin", "create-access-key"],
                             ["db", "version"], ["db", "upgrade"], ["streams"], ["streams", "dead"],
                             ["streams", "--json"], ["deploy", "scripts"], ["export", "export.zip"]]


@pytest.fixture
def project(tmp_path: Path, make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch,
            ) -> Path:
    """A folder like the one ``fluxfunc up`` leaves: ``.fluxfunc/config.yaml`` (this test's
    Redis and an SQLite store), ``url`` (nothing listens there) and ``admin-token``; the
    working directory is a subfolder two levels down, with no FLUXFUNC_* variable set."""
    s = make_settings()
    state = tmp_path / ".fluxfunc"
    state.mkdir()
    (state / "config.yaml").write_text(yaml.safe_dump({
        "secret": "discovery-test-secret-0123456789abcdef",
        "redis": {"url": s.redis.url, "namespace": s.redis.namespace},
        "store": {"url": f"sqlite:///{state / 'fluxfunc.db'}"}}))
    (state / "url").write_text(f"http://127.0.0.1:{free_port()}\n")
    (state / "admin-token").write_text("ff_test\n")
    work = tmp_path / "src" / "deep"
    (work / "scripts").mkdir(parents=True)
    (work / "scripts" / "hello.py").write_text('@DFF.API("hi")\ndef hi():\n    return 1\n')
    for name in [n for n in os.environ if n.startswith("FLUXFUNC_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(work)
    return tmp_path


def run(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str, str]:
    capsys.readouterr()
    code = cli.main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


@pytest.mark.parametrize("argv", COMMANDS, ids=" ".join)
def test_every_command_finds_fluxfunc_from_a_subfolder(project: Path, argv: list[str],
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, argv)
    state = project / ".fluxfunc"
    if argv[0] == "deploy":  # it talks HTTP: the url `up` left (nobody listens there)
        url = (state / "url").read_text().strip()
        assert out.splitlines()[0] == f"server: {url} ({state})", out
        assert code == 3 and "cannot reach the fluxfunc server" in err
        return
    first = (err if argv[0] == "streams" else out).splitlines()[0]  # streams: stdout is data
    assert first.startswith(f"instance: {state / 'config.yaml'} (.fluxfunc/ found"), first
    assert "namespace t" in first and f"sqlite:///{state / 'fluxfunc.db'}" in first
    assert code == 0, err
    assert not list(Path.cwd().glob("*.db"))  # nothing made up where we stand


@pytest.mark.parametrize("argv", COMMANDS, ids=" ".join)
def test_without_an_instance_every_command_refuses_to_guess(
        tmp_path: Path, argv: list[str], capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("FLUXFUNC_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "hello.py").write_text("x = 1\n")
    code, out, err = run(capsys, argv)
    assert code == 2 and out == "", out
    assert "no fluxfunc instance found: pass --config PATH, set FLUXFUNC_CONFIG" in err, err
    assert ".fluxfunc/config.yaml" in err and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scripts"]  # no fluxfunc.db


def test_explicit_config_and_environment_win(project: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    other = tmp_path / "elsewhere.yaml"
    other.write_text((project / ".fluxfunc" / "config.yaml").read_text())
    monkeypatch.setenv("FLUXFUNC_CONFIG", str(other))
    code, out, _ = run(capsys, ["db", "version"])
    assert code == 0 and out.startswith(f"instance: {other} ($FLUXFUNC_CONFIG)")
    # operations.md: `fluxfunc streams --config fluxfunc.yaml`, a path relative to here
    (Path.cwd() / "fluxfunc.yaml").write_text(other.read_text())
    code, _, err = run(capsys, ["streams", "--config", "fluxfunc.yaml"])
    assert code == 0 and err.startswith(f"instance: {Path.cwd() / 'fluxfunc.yaml'} (--config)")
    code, _, err = run(capsys, ["streams", "pending", "default", "--config", "fluxfunc.yaml"])
    assert code == 0 and "(--config)" in err.splitlines()[0]
    # options before or after the action are the same options
    code, _, err = run(capsys, ["streams", "--config", "fluxfunc.yaml", "pending", "default"])
    assert code == 0 and "(--config)" in err.splitlines()[0]
    code, out, err = run(capsys, ["streams", "--json", "--config", "fluxfunc.yaml", "dead"])
    assert code == 0 and json.loads(out) == [] and "(--config)" in err
def test_a_local_fluxfunc_yaml_is_named_not_read(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in os.environ if n.startswith("FLUXFUNC_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "fluxfunc.yaml").write_text("{}\n")
    code, _, err = run(capsys, ["db", "version"])
    assert code == 2 and "pass --config fluxfunc.yaml" in err
    assert not (tmp_path / "fluxfunc.db").exists()
