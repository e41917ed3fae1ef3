"""Heartbeat state files: one per process, so ``--check`` looks at every local process."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from fluxfunc_common.heartbeat import is_fresh, local_instances, state_file
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
