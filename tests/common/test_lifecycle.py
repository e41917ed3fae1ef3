"""Lifecycle: startup failures are one clear line and a non-zero exit code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fluxfunc_common.lifecycle import Shutdown, drain, every, sleep_or_stop

SERVICES = ["fluxfunc_server", "fluxfunc_worker", "fluxfunc_beat"]


def run(module: str, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True,
                          timeout=60, env=env)


@pytest.mark.parametrize("module", SERVICES)
def test_bad_config_is_one_line(module: str, tmp_path: Path) -> None:
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("worker: {nope: 1}\n")
    proc = run(module, "--config", str(cfg))
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert "worker.nope" in lines[0] and str(cfg) in lines[0]
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("module", SERVICES)
def test_unreachable_redis_is_one_line(module: str, tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "secret: lifecycle-test-secret-0123456789abcdef\n"
        "redis: {url: 'redis://127.0.0.1:1/0'}\n"
        f"store: {{url: 'sqlite:///{tmp_path}/s.db'}}\n"
    )
    proc = run(module, "--config", str(cfg))
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert "127.0.0.1:1" in proc.stderr
    assert len([line for line in proc.stderr.splitlines() if "error" in line.lower()]) == 1


async def test_shutdown_first_stops_second_forces() -> None:
    sd = Shutdown()
    sd.request()
    assert sd.stopping.is_set() and not sd.forced.is_set()
    sd.request()
    assert sd.forced.is_set()


async def test_drain_returns_unfinished() -> None:
    import asyncio

    fast = asyncio.create_task(asyncio.sleep(0))
    slow = asyncio.create_task(asyncio.sleep(10))
    left = await drain({fast, slow}, 0.2)
    assert left == {slow}
    slow.cancel()


@pytest.mark.parametrize("module", SERVICES)
def test_unreachable_database_is_one_line(module: str, tmp_path: Path, redis_server: Any) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        "secret: lifecycle-test-secret-0123456789abcdef\n"
        f"redis: {{url: '{redis_server.url}', namespace: lc{tmp_path.name[-6:]}}}\n"
        "store: {url: 'mysql://root@127.0.0.1:1/fluxfunc'}\n"
    )
    proc = run(module, "--config", str(cfg))
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr
    assert "127.0.0.1:1" in proc.stderr
    assert len([line for line in proc.stderr.splitlines() if "error" in line.lower()]) == 1


async def test_sleep_or_stop_ends_on_the_event_or_the_time() -> None:
    import asyncio

    stop = asyncio.Event()
    assert await sleep_or_stop(stop, 0.01) is False  # the time ran out, the event is not set
    assert await sleep_or_stop(stop, 0) is False  # nothing to wait: yields once
    sleeper = asyncio.create_task(sleep_or_stop(stop, 3600))
    await asyncio.sleep(0)
    assert not sleeper.done()
    stop.set()  # wakes the hour-long sleep: it ends on the event, not on the time
    assert await sleeper is True
    assert await sleep_or_stop(stop, 3600) is True  # already set: no wait at all


async def test_every_runs_rounds_until_stopped_and_survives_a_bad_one() -> None:
    import asyncio

    stop = asyncio.Event()
    rounds: list[int] = []

    async def step() -> None:
        rounds.append(len(rounds))
        if len(rounds) == 2:
            raise RuntimeError("a bad round")
        if len(rounds) == 4:
            stop.set()

    await asyncio.wait_for(every(0, step, stop), 60)
    assert rounds == [0, 1, 2, 3]  # the failed second round did not end the loop
    stop.clear()
    waited = asyncio.create_task(every(3600, step, stop, first=False))
    await asyncio.sleep(0)
    stop.set()  # first=False: it waits an interval before the first round, and stops from there
    await asyncio.wait_for(waited, 60)
    assert rounds == [0, 1, 2, 3]
