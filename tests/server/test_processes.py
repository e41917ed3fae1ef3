"""``fluxfunc-server --processes 2``: two real server processes share the port under one
supervisor (fluxfunc_server.processes): every sync call gets its own result whichever process
took it, SIGTERM stops them all, a killed one is started again."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from tests.server.conftest import demo_sync_api
from tests.server.processes import Service, running, wait_http

from fluxfunc_common.heartbeat import list_services, local_instances
from fluxfunc_common.settings import Settings, load_settings
from fluxfunc_server.processes import BACKOFF_MAX, Slot, process_count

CALLS = 60


def supervisor(config: Path, tmp_path: Path) -> Service:
    return Service(["-m", "fluxfunc_server", "--config", str(config), "--processes", "2"],
                   tmp_path / "server.log", env={"FLUXFUNC_STATE_DIR": str(tmp_path)})


@pytest.fixture
def served(deployment: tuple[Path, int], tmp_path: Path,
           monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, str, Service]]:
    config, port = deployment
    monkeypatch.setenv("FLUXFUNC_STATE_DIR", str(tmp_path))  # where local_instances looks
    base = f"http://127.0.0.1:{port}"
    service = supervisor(config, tmp_path)
    with running(service, ready_url=f"{base}/healthz"):
        wait_instances(load_settings(config).redis.namespace, 2, service)
        yield config, base, service


def wait_instances(namespace: str, count: int, service: Service,
                   exclude: frozenset[str] = frozenset(), timeout: float = 60) -> list[str]:
    """The server instances of this machine once there are ``count`` (none in ``exclude``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [i for i in local_instances("server", namespace) if i not in exclude]
        if len(found) == count:
            return found
        assert service.proc is not None and service.proc.poll() is None, service.output()
        time.sleep(0.1)
    raise AssertionError(f"{count} server instances not seen:\n{service.output()}")


async def instances_answering(base: str, connections: int) -> set[str]:
    """The instance ids that answered ``/healthz`` over ``connections`` fresh connections."""
    seen: set[str] = set()
    for _ in range(connections):
        async with aiohttp.ClientSession(base) as http, http.get("/healthz") as resp:
            seen.add((await resp.json())["data"]["instance"])
    return seen


async def sync_calls(config: Path, base: str) -> tuple[list[object], set[str], list[str]]:
    """Publish the demo script, make CALLS concurrent sync calls each on its own connection;
    their results, the instances that answered /healthz and the live server heartbeats."""
    async with demo_sync_api(config, base, "plus") as (sid, _, clients):

        async def call(x: int) -> object:
            async with aiohttp.ClientSession(base) as own:
                r = await own.post(f"/api/v1/sync/{sid}", json={"kwargs": {"x": x}})
                return r.status, await r.json(content_type=None)

        results = await asyncio.gather(*(call(x) for x in range(CALLS)))
        answering = await instances_answering(base, 40)
        beats = [s["instance"] for s in await list_services(clients.main, clients.keys)
                 if s.get("role") == "server"]
        return list(results), answering, beats


def test_two_processes_share_the_port(served: tuple[Path, str, Service], tmp_path: Path) -> None:
    config, base, _ = served
    check = subprocess.run([sys.executable, "-m", "fluxfunc_server", "--config", str(config), "--check"],
                           env={**os.environ, "FLUXFUNC_STATE_DIR": str(tmp_path)}, timeout=60)
    assert check.returncode == 0  # every process's heartbeat is fresh
    results, answering, beats = asyncio.run(sync_calls(config, base))
    assert results == [(200, x + 1) for x in range(CALLS)]
    assert len(answering) == 2  # both processes took connections (40 fresh ones)
    assert set(beats) == answering  # one heartbeat per process (the ops overview lists each)


def test_sigterm_stops_every_process(served: tuple[Path, str, Service], tmp_path: Path) -> None:
    config, _, service = served
    pids = child_pids(tmp_path, load_settings(config).redis.namespace)
    assert len(pids) == 2 and service.proc is not None and service.proc.pid not in pids
    service.signal(signal.SIGTERM)
    assert service.wait(60) == 0
    for pid in pids:
        assert not alive(pid)


def test_killed_process_is_restarted(served: tuple[Path, str, Service], tmp_path: Path) -> None:
    config, base, service = served
    namespace = load_settings(config).redis.namespace
    before = local_instances("server", namespace)
    victim = child_pids(tmp_path, namespace)[0]
    os.kill(victim, signal.SIGKILL)
    wait_gone(victim)
    survivor = frozenset(i for i in before if f"-{victim}-" not in i)
    wait_instances(namespace, 1, service, exclude=survivor)  # the replacement
    wait_http(f"{base}/healthz", service=service)
    results, answering, _ = asyncio.run(sync_calls(config, base))
    assert results == [(200, x + 1) for x in range(CALLS)]
    assert len(answering) == 2 and not answering & {i for i in before if i not in survivor}


def test_port_taken_exits_3(deployment: tuple[Path, int], tmp_path: Path) -> None:
    config, port = deployment
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        done = subprocess.run([sys.executable, "-m", "fluxfunc_server", "--config", str(config),
                               "--processes", "2"], capture_output=True, text=True, timeout=120,
                              env={**os.environ, "FLUXFUNC_STATE_DIR": str(tmp_path)})
    assert done.returncode == 2 and "cannot listen" in done.stderr, done.stderr


def child_pids(state_dir: Path, namespace: str) -> list[int]:
    return sorted(int(p.stem.rsplit("-", 1)[-1])
                  for p in state_dir.glob(f"fluxfunc-{namespace}-server-*.instance"))


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_gone(pid: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)


def test_process_count() -> None:
    settings = Settings.model_validate({"server": {"port": 8088}})
    assert process_count(3, settings) == 3
    assert process_count(None, settings.with_overrides(server={"processes": 2})) == 2
    assert process_count(None, settings) == len(os.sched_getaffinity(0))
    assert process_count(4, settings.with_overrides(server={"port": 0})) == 1  # a port each else


def test_backoff_doubles_up_to_a_maximum() -> None:
    slot = Slot(0, ["true"], started=time.monotonic())
    delays = [slot.backoff() for _ in range(10)]
    assert delays[:3] == [0.5, 1.0, 2.0] and delays[-1] == BACKOFF_MAX
    slot.started = time.monotonic() - 3600  # a child that ran for long starts over
    assert slot.backoff() == 0.5
