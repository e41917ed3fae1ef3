"""Queue inspection (``fluxfunc_common.queuestats``) and the ``fluxfunc streams`` command, against a
private redis-server with a unique namespace."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
import redis.asyncio as aioredis

from fluxfunc_common import cli
from fluxfunc_common.envelope import Origin, TaskResult, TaskStatus
from fluxfunc_common.keys import Keys
from fluxfunc_common.queuestats import discover_queues, pending_entries, queue_stats
from fluxfunc_common.settings import Settings
from fluxfunc_common.streams import StreamProtocol
from fluxfunc_common.tasks import build_envelope

FUNC: dict[str, Any] = {"id": "demo__basic.plus", "extraConfig": {}}


def envelope(queue: str = "default", eta: float | None = None) -> Any:
    return build_envelope(FUNC, {"x": 1}, origin=Origin.DIRECT, now=time.time(),
                          settings=Settings().tasks, queue=queue, eta=eta)


@pytest.fixture
async def protocol(redis_client: aioredis.Redis, keys: Keys) -> StreamProtocol:
    p = StreamProtocol(redis_client, keys)
    await p.ensure_groups(["default", "cron", "async"])
    return p


async def test_empty_queues_read_as_zero(redis_client: aioredis.Redis, keys: Keys) -> None:
    stats = await queue_stats(redis_client, keys, ["default", "nosuch"])
    assert [s["queue"] for s in stats] == ["default", "nosuch"]
    assert all(s["length"] == 0 and s["pending"] == 0 and not s["exists"] for s in stats)


async def test_stats_count_length_pending_lag_delayed(
        redis_client: aioredis.Redis, keys: Keys, protocol: StreamProtocol) -> None:
    for _ in range(3):
        await protocol.enqueue(envelope(), max_len=100)
    await protocol.enqueue(envelope(eta=time.time() + 3600), max_len=100)
    await protocol.ensure_groups(["extra"])
    await protocol.enqueue(envelope("extra"), max_len=100)
    got = await protocol.read("w1", ["default"], 2, block_ms=0)
    assert len(got) == 2

    assert "extra" in await discover_queues(redis_client, keys, ["default"])
    stats = {s["queue"]: s for s in await queue_stats(redis_client, keys, ["default", "extra"])}
    d = stats["default"]
    assert (d["length"], d["pending"], d["lag"], d["delayed"]) == (3, 2, 1, 1)
    assert [c["name"] for c in d["consumers"]] == ["w1"]
    assert d["consumers"][0]["pending"] == 2
    assert d["oldestPendingAgeMs"] is not None and d["oldestPendingAgeMs"] >= 0
    assert stats["extra"]["lag"] == 1 and stats["extra"]["pending"] == 0

    rows = await pending_entries(redis_client, keys, "default")
    assert {r["task"] for r in rows} == {g.envelope.id for g in got}
    assert all(r["consumer"] == "w1" and r["deliveries"] == 1 for r in rows)


async def test_dead_letters_counted_per_queue(
        redis_client: aioredis.Redis, keys: Keys, protocol: StreamProtocol) -> None:
    env = envelope()
    await protocol.enqueue(env, max_len=100)
    (delivery,) = await protocol.read("w1", ["default"], 1, block_ms=0)
    result = TaskResult.for_envelope(env, TaskStatus.DEAD)
    assert await protocol.dead("w1", delivery, result, reason="test", result_ttl_ms=60_000)
    (stats,) = await queue_stats(redis_client, keys, ["default"])
    assert stats["dead"] == 1 and stats["length"] == 0 and stats["pending"] == 0


async def test_streams_command_overview_pending_dead_requeue(
        config_file: str, protocol: StreamProtocol, capsys: pytest.CaptureFixture[str]) -> None:
    env = envelope()
    await protocol.enqueue(env, max_len=100)
    await protocol.enqueue(envelope(), max_len=100)
    (delivery,) = await protocol.read("w1", ["default"], 1, block_ms=0)
    await protocol.dead("w1", delivery, TaskResult.for_envelope(delivery.envelope, TaskStatus.DEAD),
                        reason="kept crashing", result_ttl_ms=60_000)
    await protocol.read("w2", ["default"], 1, block_ms=0)

    async def run(*argv: str) -> tuple[int, str]:
        capsys.readouterr()
        code = await asyncio.to_thread(cli.main, list(argv))  # the CLI runs its own event loop
        return code, capsys.readouterr().out

    code, out = await run("streams", "--config", config_file)
    assert code == 0
    assert out.splitlines()[0] == "queues"
    assert any(line.startswith("default ") and "w2" in line for line in out.splitlines())

    code, out = await run("streams", "--json", "--config", config_file)
    default = next(s for s in json.loads(out) if s["queue"] == "default")
    assert (default["length"], default["pending"], default["dead"]) == (1, 1, 1)

    code, out = await run("streams", "pending", "default", "--json", "--config", config_file)
    (row,) = json.loads(out)
    assert row["consumer"] == "w2"

    code, out = await run("streams", "dead", "--config", config_file, "--json")
    (letter,) = json.loads(out)
    assert letter["reason"] == "kept crashing" and letter["task"] == env.id

    code, out = await run("streams", "dead", "--requeue", letter["id"], "--config", config_file)
    assert code == 0 and env.id in out
    code, out = await run("streams", "dead", "--config", config_file, "--json")
    assert json.loads(out) == []
    code, out = await run("streams", "--json", "--config", config_file)
    default = next(s for s in json.loads(out) if s["queue"] == "default")
    assert (default["length"], default["lag"]) == (2, 1)
