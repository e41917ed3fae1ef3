"""Heartbeat state files: one per process, so ``--check`` looks at every local process."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from tests.processes import wait_for

from fluxfunc_common import heartbeat as heartbeat_module
from fluxfunc_common.heartbeat import heartbeat, is_fresh, local_instances, state_file
from fluxfunc_common.keys import Keys
from fluxfunc_common.settings import Settings


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FLUXFUNC_STATE_DIR", str(tmp_path))
    return tmp_path


@pytest.fixture
def other_process() -> Iterator[subprocess.Popen[bytes]]:
    """A second live process on this machine (stands for a second worker)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_files_of_gone_processes_are_dropped(state_dir: Path) -> None:
    state_file("worker", "ns").write_text("mine")
    stale = state_file("worker", "ns", pid=dead_pid())
    stale.write_text("gone")
    state_file("beat", "ns").write_text("other role")
    assert local_instances("worker", "ns") == ["mine"]
    assert not stale.exists()


async def test_check_needs_every_local_process_fresh(
        state_dir: Path, make_settings: Callable[..., Settings], redis_client: aioredis.Redis,
        other_process: subprocess.Popen[bytes]) -> None:
    settings = make_settings()
    keys = Keys(settings.redis.namespace)
    assert not await is_fresh(settings, "worker"), "nothing runs here yet"
    state_file("worker", keys.ns).write_text("w-one")
    state_file("worker", keys.ns, pid=other_process.pid).write_text("w-two")
    await redis_client.set(keys.svc("worker", "w-one"), "{}", px=60_000)
    assert not await is_fresh(settings, "worker"), "w-two has no heartbeat"
    await redis_client.set(keys.svc("worker", "w-two"), "{}", px=60_000)
    assert await is_fresh(settings, "worker")


async def test_heartbeat_refreshes_its_key_until_the_block_ends(
        state_dir: Path, make_settings: Callable[..., Settings], redis_client: aioredis.Redis,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # beats every 50 ms, but a key that lives long enough to be read on a busy machine
    monkeypatch.setattr(heartbeat_module, "TTL_FACTOR", 1000)
    keys = Keys(make_settings().redis.namespace)
    key = keys.svc("beat", "b-one")
    beats = itertools.count()

    async def beat_number() -> int:
        raw = await redis_client.get(key)
        return int(json.loads(raw)["n"]) if raw else -1

    numbered = heartbeat(redis_client, keys, "beat", "b-one", extra=lambda: {"n": next(beats)}, interval=0.05)
    async with numbered:
        assert await beat_number() == 0  # the first beat is written before the block runs
        assert local_instances("beat", keys.ns) == ["b-one"]
        await wait_for(lambda: _at_least(beat_number, 3), 30, what="three more beats")
    assert not await redis_client.exists(key)  # deleted on the way out, not left to expire
    assert key.encode() not in await redis_client.smembers(keys.svc_index())
    assert local_instances("beat", keys.ns) == []


async def _at_least(read: Callable[[], Awaitable[int]], n: int) -> bool:
    return await read() >= n
