"""Real processes for the Server tests and the end-to-end tests: a config file written for a
test, and ``fluxfunc-server`` / ``fluxfunc-worker`` started the way a user starts them
(``python -m … --config …``), always stopped by the test, even when it fails."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from tests.processes import terminate


def write_config(path: Path, *, redis_url: str, namespace: str, store_url: str, port: int = 0,
                 **sections: dict[str, Any]) -> Path:
    """A YAML config for one test deployment (JSON logs, a test secret)."""
    data: dict[str, Any] = {
        "secret": "test-secret-for-fluxfunc-tests-only-0123",
        "redis": {"url": redis_url, "namespace": namespace},
        "store": {"url": store_url},
        "server": {"host": "127.0.0.1", "port": port, "shutdown_seconds": 10, "processes": 1},
        "log": {"level": "INFO", "format": "json"},
        "resources": {"path": str(path.parent / "resources")},
    }
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values}
    path.write_text(yaml.safe_dump(data))
    return path


@dataclass
class Service:
    """One running service process; its output goes to a log file kept for failures."""

    args: list[str]
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Service:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen([sys.executable, *self.args], stdout=log, stderr=subprocess.STDOUT,
                                     env={**os.environ, **self.env}, start_new_session=True)
        log.close()
        return self

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def stop(self, timeout: float = 15) -> int | None:
        """SIGTERM, then SIGKILL after ``timeout``; returns the exit code."""
        return None if self.proc is None else terminate(self.proc, timeout)

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


def wait_http(url: str, *, timeout: float = 20, service: Service | None = None) -> None:
    """Poll ``url`` until it answers 200 (fails early when ``service`` exits)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if service is not None and service.proc is not None and service.proc.poll() is not None:
            raise AssertionError(f"service exited {service.proc.returncode}:\n{service.output()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"{url} did not answer within {timeout} s:\n"
                         f"{service.output() if service else ''}")


@contextmanager
def running(service: Service, *, ready_url: str | None = None,
            ready_timeout: float = 30) -> Iterator[Service]:
    """Start ``service``, wait for ``ready_url``, and always stop it."""
    service.start()
    try:
        if ready_url:
            wait_http(ready_url, timeout=ready_timeout, service=service)
        yield service
    finally:
        service.stop()


def server(config: Path, log_dir: Path, state_dir: Path) -> Service:
    return Service(["-m", "fluxfunc_server", "--config", str(config)], log_dir / "server.log",
                   env={"FLUXFUNC_STATE_DIR": str(state_dir)})


def worker(config: Path, log_dir: Path, state_dir: Path, *extra: str) -> Service:
    return Service(["-m", "fluxfunc_worker", "--config", str(config), *extra], log_dir / "worker.log",
                   env={"FLUXFUNC_STATE_DIR": str(state_dir)})


def create_token(config: Path) -> str:
    """``fluxfunc admin create-token --config …``: the token is the last line."""
    done = subprocess.run([sys.executable, "-m", "fluxfunc_common.cli", "admin", "create-token",
                           "--config", str(config)], capture_output=True, text=True, timeout=60,
                          check=True)
    return done.stdout.strip().splitlines()[-1]
