"""``fluxfunc up`` refuses to claim what is not its own: a taken port stops it before anything
starts (non-zero exit, no banner), and the server answering the URL must be the one it
started; its worker reads every queue that published functions use (or ``--queues``)."""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import aiohttp
import pytest
from aiohttp import web
from tests.ops.test_up import clean_env

from fluxfunc_common.cli import up
from fluxfunc_common.errors import FatalError
from fluxfunc_common.heartbeat import state_file
from fluxfunc_common.proc.localredis import free_port
from fluxfunc_common.settings import Settings

BIN = Path(sys.executable).parent


def test_a_taken_port_stops_up_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as other:  # another program listens on the port
        other.bind(("127.0.0.1", 0))
        other.listen(1)
        port = other.getsockname()[1]
        out = subprocess.run([str(BIN / "fluxfunc"), "up", "--port", str(port), "--no-demo"],
                             cwd=tmp_path, env=clean_env(), capture_output=True, text=True, timeout=60)
    assert out.returncode == 2, out.stderr
    assert f"cannot listen on 127.0.0.1:{port}" in out.stderr and "--port" in out.stderr
    assert "fluxfunc is up" not in out.stdout and "admin token" not in out.stdout
    assert not (tmp_path / ".fluxfunc" / "config.yaml").exists()  # nothing was started


def test_check_port_accepts_a_free_port() -> None:
    up.check_port("127.0.0.1", free_port())
    up.check_port("127.0.0.1", 0)  # 0: the system picks one


def args(**given: object) -> argparse.Namespace:
    base = {"dir": ".fluxfunc", "host": None, "port": None, "concurrency": None, "queues": None,
            "no_demo": True, "config": None}
    return argparse.Namespace(**{**base, **given})


def test_the_worker_reads_the_queues_of_published_functions(tmp_path: Path) -> None:
    run = up.Up(args(dir=str(tmp_path)))
    chosen = run.queues(Settings(), {"slow", "3", "default"})
    assert chosen.worker.queues == ["default", "cron", "async", "3", "slow"]
    chosen = up.Up(args(dir=str(tmp_path), queues="slow, default")).queues(Settings(), {"other"})
    assert chosen.worker.queues == ["slow", "default"]


async def test_the_banner_needs_our_own_server_to_answer(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    answering = {"instance": "srv-other"}

    async def healthz(request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "data": {"status": "ok", **answering}})

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    run = up.Up(args(dir=str(tmp_path)))
    run.children = [SimpleNamespace(name="server", pid=4242)]  # type: ignore[list-item]
    settings = Settings()
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / state_file("server", settings.redis.namespace, pid=4242).name).write_text("srv-ours")
    try:
        async with aiohttp.ClientSession() as http:
            with pytest.raises(FatalError, match=r"answered by another server .*srv-other.*srv-ours"):
                await run.check_identity(settings, f"http://127.0.0.1:{port}", http)
            answering["instance"] = "srv-ours"
            await run.check_identity(settings, f"http://127.0.0.1:{port}", http)
    finally:
        await runner.cleanup()
