"""Service processes for tests, started the way a user starts them and always stopped, plus
the polling helper the process tests wait with (a deadline, never a fixed sleep)."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import orjson


async def wait_for(predicate: Callable[[], Awaitable[Any]], within: float, interval: float = 0.05,
                   what: str = "condition") -> Any:
    """Poll an async predicate until truthy (returns its value) or fail after ``within`` s."""
    deadline = time.monotonic() + within
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {within}s")
        await asyncio.sleep(interval)


def terminate(proc: subprocess.Popen[bytes], timeout: float) -> int:
    """SIGTERM (the service drains), SIGKILL after ``timeout``; the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return int(proc.returncode)


def json_lines(path: Path) -> list[dict[str, Any]]:
    """A service's JSON log, one dict per line (``{"raw": …}`` for anything else)."""
    out = []
    for raw in path.read_bytes().splitlines():
        try:
            out.append(orjson.loads(raw))
        except orjson.JSONDecodeError:
            out.append({"raw": raw.decode(errors="replace")})
    return out


class LoggedProcess:
    """A service subprocess whose stdout and stderr go to ``log``; ``FLUXFUNC_STATE_DIR`` is
    ``state`` so its ``--check`` state file is its own."""

    def __init__(self, argv: Sequence[str], log: Path, state: Path) -> None:
        self.log = log
        self._out = log.open("wb")
        state.mkdir(exist_ok=True)
        env = {**os.environ, "FLUXFUNC_STATE_DIR": str(state)}
        self.proc = subprocess.Popen(list(argv), stdout=self._out, stderr=subprocess.STDOUT, env=env)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            self.proc.send_signal(sig)

    def kill(self) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.close_log()

    def wait(self, timeout: float) -> int:
        return int(self.proc.wait(timeout))

    def stop(self, timeout: float = 20) -> int:
        code = terminate(self.proc, timeout)
        self.close_log()
        return code

    def close_log(self) -> None:
        if not self._out.closed:
            self._out.close()

    def lines(self) -> list[dict[str, Any]]:
        return json_lines(self.log)

    def text(self) -> str:
        return self.log.read_text(errors="replace")
