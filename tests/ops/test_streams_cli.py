"""``fluxfunc streams`` as an operator sees it: rich tables on a terminal, plain text in a pipe,
``--watch`` refreshing until Ctrl-C, one clear line when Redis is unreachable. (The figures
themselves are checked in tests/common/test_queuestats.py.)"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
import yaml

from fluxfunc_common import cli
from fluxfunc_common.cli import streams
from fluxfunc_common.envelope import Origin, TaskResult, TaskStatus
from fluxfunc_common.keys import Keys
from fluxfunc_common.settings import Settings
from fluxfunc_common.streams import StreamProtocol
from fluxfunc_common.tasks import build_envelope

FLUXFUNC = str(Path(sys.executable).parent / "fluxfunc")


def envelope() -> Any:
    return build_envelope({"id": "demo__basic.plus", "extraConfig": {}}, {"x": 1}, origin=Origin.DIRECT,
                          now=time.time(), settings=Settings().tasks)


@pytest.fixture
async def busy(redis_client: aioredis.Redis, keys: Keys) -> StreamProtocol:
    """Three tasks on ``default``: one pending with consumer w1, one dead-lettered, one waiting."""
    p = StreamProtocol(redis_client, keys)
    await p.ensure_groups(["default", "cron", "async"])
    for _ in range(3):
        await p.enqueue(envelope(), max_len=100)
    _first, second = await p.read("w1", ["default"], 2, block_ms=0)
    await p.dead("w1", second, TaskResult.for_envelope(second.envelope, TaskStatus.DEAD),
                 reason="kept crashing", result_ttl_ms=60_000)
    return p


async def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    capsys.readouterr()
    code = await asyncio.to_thread(cli.main, list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


async def test_rich_tables_on_a_terminal(busy: StreamProtocol, config_file: str,
                                         capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(streams, "_tty", lambda: True)
    monkeypatch.setenv("COLUMNS", "220")
    code, out, _ = await run_cli(capsys, "streams", "--config", config_file)
    assert code == 0
    assert "───" in out, out  # a rich table, not the plain layout
    assert "oldest" in out and "default" in out and "w1" in out
    code, out, _ = await run_cli(capsys, "streams", "dead", "--config", config_file)
    assert code == 0 and "kept crashing" in out and "───" in out


async def test_plain_pending_and_dead_tables(busy: StreamProtocol, config_file: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = await run_cli(capsys, "streams", "pending", "default", "--config", config_file)
    lines = out.splitlines()
    assert code == 0 and lines[0] == "pending entries of queue default"
    assert lines[1].split() == ["entry", "consumer", "idle", "deliveries", "task"]
    (row,) = lines[2:]
    assert row.split()[1] == "w1" and row.split()[3] == "1" and row.split()[4].startswith("task-")
    code, out, err = await run_cli(capsys, "streams", "pending", "nosuch", "--config", config_file)
    assert code == 1 and out == "" and "no queue 'nosuch'" in err
    code, out, _ = await run_cli(capsys, "streams", "dead", "--config", config_file)
    assert code == 0 and "kept crashing" in out and "demo__basic.plus" in out


async def test_unreachable_redis_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from fluxfunc_common.proc.localredis import free_port

    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"redis": {"url": f"redis://127.0.0.1:{free_port()}/0"}}))
    code, out, err = await run_cli(capsys, "streams", "--config", str(config))
    assert code != 0 and out == ""
    instance, error = err.splitlines()  # which instance, then one line saying what is wrong
    assert instance.startswith("instance: ") and str(config) in instance
    assert "Redis unreachable" in error and "Traceback" not in err


def _as_from_a_terminal() -> None:
    """In the child before exec: Ctrl-C neither ignored nor blocked, whatever the test process
    (an xdist worker, a thread of it) has inherited."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def _signal_state(pid: int) -> str:
    status = Path(f"/proc/{pid}/status")
    lines = status.read_text().splitlines() if status.exists() else []
    return " ".join(line for line in lines if line.startswith(("SigBlk", "SigIgn", "SigCgt")))


def _watch(config_file: str, *extra: str, rounds: int) -> list[str]:
    """Run ``fluxfunc streams --watch`` in a pipe, read ``rounds`` refreshes, then Ctrl-C it."""
    proc = subprocess.Popen([FLUXFUNC, "streams", "--watch", "--interval", "0.2", "--config", config_file,
                             *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_as_from_a_terminal)
    lines: list[str] = []
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 30
        while sum(1 for line in lines if line == "queues" or line.startswith("[")) < rounds:
            assert time.monotonic() < deadline, lines
            line = proc.stdout.readline()
            assert line, proc.stderr.read() if proc.stderr else "no output"
            lines.append(line.rstrip("\n"))
        signals = _signal_state(proc.pid)
        proc.send_signal(signal.SIGINT)
        # read both pipes while it exits (a full pipe would block it), with a busy machine's deadline
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running 60 s after Ctrl-C; its signals: {signals}") from None
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return lines


async def test_watch_refreshes_until_ctrl_c(busy: StreamProtocol, config_file: str) -> None:
    lines = await asyncio.to_thread(_watch, config_file, rounds=3)
    assert [line for line in lines if line == "queues"] == ["queues"] * 3
    assert any(line.startswith("default ") for line in lines)


async def test_watch_json_is_one_document_per_refresh(busy: StreamProtocol, config_file: str,
                                                       redis_client: aioredis.Redis, keys: Keys) -> None:
    lines = await asyncio.to_thread(_watch, config_file, "--json", rounds=2)
    docs = [json.loads(line) for line in lines]
    default = next(q for q in docs[-1] if q["queue"] == "default")
    assert (default["length"], default["pending"], default["lag"], default["dead"]) == (2, 1, 1, 1)
