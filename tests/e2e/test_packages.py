"""Extra Python packages end to end, with a real Server and real Workers that share no package
folder (each has its own ``packages.dir``): a wheel uploaded to the resource directory, a
small package from PyPI, a bad requirement that leaves the old set working and is reported per
worker (API, ops overview, ``fluxfunc streams``), and a worker started later that installs the
set before it claims a task."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from tests.conftest import RedisServer
from tests.e2e.test_server_worker import Client
from tests.server.processes import Service, create_token, running, server, worker, write_config
from tests.wheels import module_wheel

from fluxfunc_common.proc.localredis import free_port

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e-packages"), pytest.mark.timeout(300)]

SCRIPT = '''
import importlib
import os

@DFF.API("Probe")
def probe(module):
    mod = importlib.import_module(module)
    return {"worker": os.getppid(), "value": getattr(mod, "VALUE", None), "file": mod.__file__}

@DFF.API("Joke")
def joke():
    import pyjokes
    return {"worker": os.getppid(), "joke": pyjokes.get_joke(), "file": pyjokes.__file__}
'''
PATH = "/api/v1/python-packages"
INSTALL_SECONDS = 90  # pip from a local wheel takes seconds; from PyPI, more


@dataclass
class Deployment:
    client: Client
    tmp: Path
    config: Path
    workers: dict[str, Service]
    probe: str  # sync API id of Probe

    def worker_config(self, name: str, **packages: Any) -> Path:
        """A worker's own config: the shared Redis, store and resources, its own package folder."""
        server_config = self.config.read_text()
        path = self.tmp / f"{name}.yaml"
        path.write_text(server_config)
        return _with_packages(path, self.tmp / f"packages-{name}", **packages)


def _with_packages(path: Path, folder: Path, **packages: Any) -> Path:
    import yaml

    data = yaml.safe_load(path.read_text())
    data["packages"] = {"dir": str(folder), **packages}
    data["worker"] = {**data.get("worker", {}), "concurrency": 1}
    path.write_text(yaml.safe_dump(data))
    return path


def _start_worker(dep: Deployment, name: str, **packages: Any) -> Service:
    log_dir = dep.tmp / name
    log_dir.mkdir(exist_ok=True)
    return worker(dep.worker_config(name, **packages), log_dir, log_dir).start()


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer) -> Iterator[Deployment]:
    tmp = tmp_path_factory.mktemp("e2e-packages")
    port = free_port()
    config = write_config(tmp / "fluxfunc.yaml", redis_url=redis_server.url,
                          namespace="e2e" + secrets.token_hex(4),
                          store_url=f"sqlite:///{tmp / 'store.db'}", port=port)
    base = f"http://127.0.0.1:{port}"
    with running(server(config, tmp, tmp), ready_url=f"{base}/healthz"):
        client = Client(base, create_token(config))
        client.data(client.post("/api/v1/scripts", {"id": "demo__pkgs", "code": SCRIPT}))
        client.data(client.post("/api/v1/scripts/demo__pkgs/publish"))
        probe = client.data(client.post("/api/v1/sync-apis", {"funcId": "demo__pkgs.probe"}))["id"]
        dep = Deployment(client, tmp, config, {}, probe)
        try:
            for name in ("a", "b"):
                dep.workers[name] = _start_worker(dep, name)
            _wait_for_workers(dep, 2)
            yield dep
        finally:
            for service in dep.workers.values():
                service.stop()


def _wait_for_workers(dep: Deployment, count: int) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        for service in dep.workers.values():
            assert service.proc is None or service.proc.poll() is None or service.proc.returncode == 0, \
                service.output()
        if len(dep.client.data(dep.client.get(PATH))["workers"]) >= count:
            return
        time.sleep(0.2)
    raise AssertionError("the workers never showed up")


def _put(dep: Deployment, lines: list[str]) -> str:
    data = dep.client.data(dep.client.http.put(dep.client.base + PATH, json={"packages": lines},
                                               headers=dep.client.admin, timeout=30))
    return str(data["resolved"]["hash"])


def _wait_states(dep: Deployment, wanted: str, state: str) -> list[dict[str, Any]]:
    """Every live worker reports ``state`` for the set ``wanted`` (within the install time)."""
    deadline = time.monotonic() + INSTALL_SECONDS
    while True:
        workers = dep.client.data(dep.client.get(PATH))["workers"]
        if workers and all(w["wanted"] == wanted and w["state"] == state for w in workers):
            return list(workers)
        unexpected = [w for w in workers if w["wanted"] == wanted and w["state"] not in (state, "installing")]
        assert not unexpected, unexpected
        assert time.monotonic() < deadline, (workers, [s.output()[-3000:] for s in dep.workers.values()])
        time.sleep(0.2)


def _calls_reach_every_worker(dep: Deployment, sync_id: str, body: dict[str, Any],
                              services: list[Service]) -> dict[int, dict[str, Any]]:
    """Call until each of ``services`` answered once; {worker pid: its answer}."""
    pids = {s.proc.pid for s in services if s.proc is not None}
    seen: dict[int, dict[str, Any]] = {}
    deadline = time.monotonic() + 60
    while set(seen) != pids:
        assert time.monotonic() < deadline, f"answered by {sorted(seen)}, wanted {sorted(pids)}"
        resp = dep.client.post(f"/api/v1/sync/{sync_id}", {"kwargs": body}, admin=False)
        assert resp.status_code == 200, resp.text[:2000]
        answer = resp.json()
        seen[int(answer["worker"])] = answer
    return seen


def _upload_wheel(dep: Deployment, name: str, version: str, value: str) -> None:
    wheel = module_wheel(dep.tmp / "built", name, version, value)
    resp = dep.client.http.post(dep.client.base + "/api/v1/resources?path=packages",
                                files={"files": (wheel.name, wheel.read_bytes())},
                                headers=dep.client.admin, timeout=30)
    dep.client.data(resp)


def _pypi_reachable() -> bool:
    try:
        return requests.get("https://pypi.org/simple/pyjokes/", timeout=10).status_code == 200
    except requests.RequestException:
        return False


def test_a_wheel_in_the_resource_directory_is_installed_by_every_worker(deployment: Deployment) -> None:
    dep = deployment
    _upload_wheel(dep, "fluxdemo-offline", "1.0", "from the resource directory")
    wanted = _put(dep, ["fluxdemo-offline==1.0"])
    states = _wait_states(dep, wanted, "ok")
    assert {w["hash"] for w in states} == {wanted} and len(states) == 2
    seen = _calls_reach_every_worker(dep, dep.probe, {"module": "fluxdemo_offline"},
                                     [dep.workers["a"], dep.workers["b"]])
    for name, service in (("a", dep.workers["a"]), ("b", dep.workers["b"])):
        assert service.proc is not None
        answer = seen[service.proc.pid]
        assert answer["value"] == "from the resource directory"
        assert answer["file"].startswith(str(dep.tmp / f"packages-{name}")), "its own local folder"


def test_a_package_from_pypi_is_installed_by_every_worker(deployment: Deployment) -> None:
    if not _pypi_reachable():
        pytest.skip("PyPI is not reachable from this machine")
    dep = deployment
    wanted = _put(dep, ["pyjokes==0.8.3"])
    _wait_states(dep, wanted, "ok")
    joke = dep.client.data(dep.client.post("/api/v1/sync-apis", {"funcId": "demo__pkgs.joke"}))["id"]
    seen = _calls_reach_every_worker(dep, joke, {}, [dep.workers["a"], dep.workers["b"]])
    assert all(answer["joke"] and "packages-" in answer["file"] for answer in seen.values())


def test_a_bad_requirement_keeps_the_old_set_and_is_reported_per_worker(deployment: Deployment) -> None:
    dep = deployment
    _upload_wheel(dep, "fluxdemo-offline", "1.0", "from the resource directory")
    good = _put(dep, ["fluxdemo-offline==1.0"])
    _wait_states(dep, good, "ok")
    bad = _put(dep, ["fluxdemo-offline==1.0", "no-such-package-fluxtest==9.9"])
    states = _wait_states(dep, bad, "failed")
    for state in states:
        assert state["hash"] == good, "the old set stays in use"
        assert "no-such-package-fluxtest" in state["error"] and "pip install failed" in state["error"]
    seen = _calls_reach_every_worker(dep, dep.probe, {"module": "fluxdemo_offline"},
                                     [dep.workers["a"], dep.workers["b"]])
    assert {a["value"] for a in seen.values()} == {"from the resource directory"}

    overview = dep.client.data(dep.client.get("/api/v1/ops/overview"))
    deadline = time.monotonic() + 20  # the heartbeat carries it within its interval
    while not all(w.get("packages", {}).get("state") == "failed" for w in overview["services"]["worker"]):
        assert time.monotonic() < deadline, overview["services"]["worker"]
        time.sleep(0.5)
        overview = dep.client.data(dep.client.get("/api/v1/ops/overview"))
    out = subprocess.run([sys.executable, "-m", "fluxfunc_common.cli", "streams", "--config",
                          str(dep.config)], capture_output=True, text=True, timeout=60, check=True).stdout
    lines = [line for line in out.splitlines() if f"failed {good} (wanted {bad})" in line]
    assert len(lines) == 2 and all("no-such-package-fluxtest" in line for line in lines), out
    _put(dep, ["fluxdemo-offline==1.0"])
    _wait_states(dep, good, "ok")


def test_a_worker_started_later_installs_the_set_before_it_claims_a_task(deployment: Deployment) -> None:
    dep = deployment
    _upload_wheel(dep, "fluxdemo-offline", "1.0", "from the resource directory")
    _upload_wheel(dep, "fluxdemo-late", "2.0", "late")
    wanted = _put(dep, ["fluxdemo-offline==1.0", "fluxdemo-late==2.0"])
    _wait_states(dep, wanted, "ok")
    for name in ("a", "b"):
        dep.workers.pop(name).stop()
    aapi = dep.client.data(dep.client.post("/api/v1/async-apis", {"funcId": "demo__pkgs.probe"}))["id"]
    tasks = [dep.client.data(dep.client.post(f"/api/v1/async/{aapi}", {"kwargs": {"module": "fluxdemo_late"}},
                                             admin=False))["id"] for _ in range(3)]
    dep.workers["c"] = late = _start_worker(dep, "c", offline=True)  # wheels only, no index
    for task_id in tasks:
        task = dep.client.data(dep.client.get(f"/api/v1/tasks/{task_id}?wait=60", admin=False))
        deadline = time.monotonic() + INSTALL_SECONDS
        while task["status"] in ("queued", "running"):
            assert time.monotonic() < deadline, task
            task = dep.client.data(dep.client.get(f"/api/v1/tasks/{task_id}?wait=30", admin=False))
        assert task["status"] == "success", task
        assert task["result"]["value"] == "late" and late.proc is not None
        assert task["result"]["worker"] == late.proc.pid
        assert task["result"]["file"].startswith(str(dep.tmp / "packages-c"))
    [state] = dep.client.data(dep.client.get(PATH))["workers"]
    assert state["state"] == "ok" and state["hash"] == wanted
    events = [json.loads(line).get("event") for line in late.output().splitlines() if line.startswith("{")]
    assert events.index("package set in use") < events.index("worker started"), events
