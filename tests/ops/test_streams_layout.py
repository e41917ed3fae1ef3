"""``fluxfunc streams`` in an 80-column terminal (``COLUMNS=80``): no header is broken, a long
consumer name stays on one line (shortened with an ellipsis), a queue with waiting entries and
no reader says "no consumer" (not "no stream"), an empty table says so, and ``pending`` of an
unknown queue is an error."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import redis.asyncio as aioredis

from fluxfunc_common import cli
from fluxfunc_common.cli import streams
from fluxfunc_common.envelope import Origin
from fluxfunc_common.keys import Keys
from fluxfunc_common.settings import Settings
from fluxfunc_common.streams import StreamProtocol
from fluxfunc_common.tasks import build_envelope

LONG_NAME = "vm-eu-west-1a-worker-host-0042.internal.example.com-31337-0123456789abcdef"


def envelope(queue: str) -> Any:
    return build_envelope({"id": "demo__basic.plus", "extraConfig": {}}, {"x": 1}, origin=Origin.DIRECT,
                          now=time.time(), settings=Settings().tasks, queue=queue)


async def terminal(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                   *argv: str) -> tuple[int, list[str], str]:
    monkeypatch.setattr(streams, "_tty", lambda: True)
    monkeypatch.setenv("COLUMNS", "80")
    capsys.readouterr()
    code = await asyncio.to_thread(cli.main, list(argv))
    out = capsys.readouterr()
    return code, out.out.splitlines(), out.err


async def test_the_overview_fits_80_columns(redis_client: aioredis.Redis, keys: Keys, config_file: str,
                                            capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    p = StreamProtocol(redis_client, keys)
    await p.ensure_groups(["default", "cron", "async"])
    await p.enqueue(envelope("default"), max_len=100)
    await p.read(LONG_NAME, ["default"], 1, block_ms=0)
    for _ in range(2):
        await p.enqueue(envelope("slow"), max_len=100)  # nobody reads "slow"

    code, lines, _ = await terminal(capsys, monkeypatch, "streams", "--config", config_file)
    assert code == 0
    assert all(len(line) <= 80 for line in lines), "\n".join(lines)
    headers = [line.split() for line in lines if line.split()[:1] == ["queue"]]
    assert headers == [["queue", "length", "pending", "lag", "oldest", "delayed", "dead", "done/m"],
                       ["queue", "consumer", "pending", "idle"]], "\n".join(lines)
    named = [line for line in lines if LONG_NAME[:20] in line]
    assert len(named) == 1 and "…" in named[0], "\n".join(lines)  # one line, shortened
    assert not any(LONG_NAME[-8:] in line for line in lines)  # no wrapped remainder
    slow = lines.index(next(line for line in lines if line.split()[:1] == ["slow"]))
    assert lines[slow].split()[1:4] == ["2", "0", "2"]  # length, pending, lag
    assert lines[slow + 1].strip() == "(no consumer)" and not any("no stream" in x for x in lines)


async def test_empty_tables_and_unknown_queues(redis_client: aioredis.Redis, keys: Keys, config_file: str,
                                               capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    await StreamProtocol(redis_client, keys).ensure_groups(["default", "cron", "async"])
    code, lines, _ = await terminal(capsys, monkeypatch, "streams", "dead", "--config", config_file)
    assert code == 0 and lines[-1].strip() == "(none)", lines
    code, lines, _ = await terminal(capsys, monkeypatch, "streams", "pending", "default",
                                    "--config", config_file)
    assert code == 0 and lines[-1].strip() == "(none)", lines
    code, lines, err = await terminal(capsys, monkeypatch, "streams", "pending", "nosuchqueue",
                                      "--config", config_file)
    assert code == 1 and lines == []
    assert "no queue 'nosuchqueue' (queues: async, cron, default)" in err


def test_fit_shrinks_the_widest_column_and_never_a_header() -> None:
    assert streams.fit([5, 8, 4], [5, 60, 4], 40) == [5, 31, 4]
    assert streams.fit([5, 8, 4], [30, 60, 4], 40) == [16, 20, 4]  # the slack is shared
    assert streams.fit([5, 8, 4], [5, 8, 4], 10) == [5, 8, 4]  # headers stay whole
