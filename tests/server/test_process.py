"""The real ``fluxfunc-server`` process: start, ``--check``, ``fluxfunc admin create-token``,
startup errors, and a graceful shutdown that finishes the sync calls in flight."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from tests.conftest import RedisServer
from tests.server.conftest import demo_sync_api
from tests.server.processes import create_token, running, server, write_config

from fluxfunc_common.proc.localredis import free_port


@pytest.fixture
def served(deployment: tuple[Path, int], tmp_path: Path) -> Iterator[tuple[Path, str]]:
    config, port = deployment
    base = f"http://127.0.0.1:{port}"
    with running(server(config, tmp_path, tmp_path), ready_url=f"{base}/healthz"):
        yield config, base


def check(config: Path, state_dir: Path) -> int:
    return subprocess.run([sys.executable, "-m", "fluxfunc_server", "--config", str(config), "--check"],
                          env={"FLUXFUNC_STATE_DIR": str(state_dir), "PATH": "/usr/bin:/bin"},
                          capture_output=True, timeout=30).returncode


def test_check_and_admin_token(served: tuple[Path, str], tmp_path: Path) -> None:
    config, base = served
    assert check(config, tmp_path) == 0
    token = create_token(config)
    assert token.startswith("ff_")

    async def use() -> tuple[int, int]:
        async with aiohttp.ClientSession(base) as http:
            denied = await http.get("/api/v1/scripts")
            allowed = await http.get("/api/v1/scripts", headers={"Authorization": f"Bearer {token}"})
            return denied.status, allowed.status

    assert asyncio.run(use()) == (401, 200)


def test_check_fails_when_not_running(deployment: tuple[Path, int], tmp_path: Path) -> None:
    config, _ = deployment
    assert check(config, tmp_path) == 1


def test_startup_errors_are_one_line(tmp_path: Path, redis_server: RedisServer) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("server: {port: 8088, colour: blue}\n")
    done = subprocess.run([sys.executable, "-m", "fluxfunc_server", "--config", str(bad)],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "server.colour: unknown key" in done.stderr
    assert "Traceback" not in done.stderr
    nosecret = tmp_path / "nosecret.yaml"
    nosecret.write_text(f"redis: {{url: '{redis_server.url}'}}\n")
    done = subprocess.run([sys.executable, "-m", "fluxfunc_server", "--config", str(nosecret)],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode == 2 and "secret" in done.stderr and "Traceback" not in done.stderr
    down = write_config(tmp_path / "down.yaml", redis_url=f"redis://127.0.0.1:{free_port()}/0",
                        namespace="x", store_url=f"sqlite:///{tmp_path / 's.db'}", port=free_port())
    done = subprocess.run([sys.executable, "-m", "fluxfunc_server", "--config", str(down)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 3 and "Redis unreachable" in done.stderr and "Traceback" not in done.stderr


def test_graceful_shutdown_finishes_in_flight_calls(deployment: tuple[Path, int], tmp_path: Path) -> None:
    """SIGTERM while sync calls wait: they all get their results, new connections are refused,
    the process exits 0."""
    config, port = deployment
    base = f"http://127.0.0.1:{port}"
    service = server(config, tmp_path, tmp_path)

    async def scenario() -> tuple[list[Any], int | None, bool]:
        async with demo_sync_api(config, base, "slow") as (sid, worker, _):

            async def call() -> Any:
                async with aiohttp.ClientSession(base) as own:  # its own connection
                    r = await own.post(f"/api/v1/sync/{sid}", json={"kwargs": {"seconds": 3}})
                    return r.status, await r.text()

            calls = [asyncio.create_task(call()) for _ in range(5)]
            await worker.wait_seen(5)
            service.signal(signal.SIGTERM)
            refused = await refused_while(calls, base)
            results = await asyncio.gather(*calls)
            code = await asyncio.get_running_loop().run_in_executor(None, service.wait, 20)
            return results, code, refused

    with running(service, ready_url=f"{base}/healthz"):
        results, code, refused = asyncio.run(scenario())
    assert results == [(200, "done")] * 5
    assert code == 0 and refused
    assert '"stopped"' in service.output() or "stopped" in service.output()


async def refused_while(calls: list[asyncio.Task[Any]], base: str) -> bool:
    """Whether new connections are refused while ``calls`` are still in flight (polled: a busy
    machine may take a while to act on the signal)."""
    while not all(c.done() for c in calls):
        try:
            async with aiohttp.ClientSession(base) as late:
                await late.get("/healthz", timeout=aiohttp.ClientTimeout(total=2))
        except (aiohttp.ClientError, TimeoutError):
            return not all(c.done() for c in calls)
        await asyncio.sleep(0.05)
    return False


def test_admin_access_key_signs_requests(served: tuple[Path, str]) -> None:
    """``fluxfunc admin create-access-key`` → id and secret a DataFlux Func SDK client signs with."""
    config, base = served
    done = subprocess.run([sys.executable, "-m", "fluxfunc_common.cli", "admin", "create-access-key",
                           "--config", str(config), "--name", "sdk"], capture_output=True, text=True,
                          timeout=60, check=True)
    ak_id, secret = done.stdout.strip().splitlines()[-2:]
    assert ak_id.startswith("ak-") and secret and secret not in (config.read_text())

    async def use() -> int:
        from fluxfunc_server.adminauth import sign_request

        async with aiohttp.ClientSession(base) as http:
            headers = sign_request(ak_id, secret, "GET", "/api/v1/funcs")
            resp = await http.get("/api/v1/funcs", headers=headers)
            return resp.status

    assert asyncio.run(use()) == 200
