"""Redis Sentinel support: ``open_redis`` with ``redis.sentinel`` set finds the primary through a
real ``redis-sentinel`` (``redis-server --sentinel``, the same binary) and the stream protocol
works through it, also after a failover to the replica.

Every process here is private: free ports, a temp dir, never the machine's shared Redis.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import redis_server_binary
from tests.processes import wait_for

from fluxfunc_common.envelope import Origin
from fluxfunc_common.proc.localredis import free_port
from fluxfunc_common.redisconn import open_redis
from fluxfunc_common.settings import Settings
from fluxfunc_common.streams import StreamProtocol
from fluxfunc_common.tasks import build_envelope

SERVICE = "fluxtest"


def _ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class Node:
    """One private redis-server (or sentinel) process."""

    def __init__(self, workdir: Path, name: str, args: list[str]) -> None:
        self.port = free_port()
        self.dir = workdir / name
        self.dir.mkdir()
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, *, sentinel: bool = False) -> None:
        conf = self.dir / "redis.conf"
        lines = [f"port {self.port}", "bind 127.0.0.1", f'dir "{self.dir}"', 'save ""',
                 "appendonly no", "loglevel warning", *self.args]
        conf.write_text("\n".join(lines) + "\n")
        cmd = [redis_server_binary(), str(conf)] + (["--sentinel"] if sentinel else [])
        log = open(self.dir / "log", "wb")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while not _ping(self.port):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"{cmd} did not start: {(self.dir / 'log').read_text()[-2000:]}")
            time.sleep(0.05)

    def terminate(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()

    def stop(self) -> None:
        self.terminate()
        if self.proc and self.proc.poll() is None:
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def sentinel_setup() -> Iterator[tuple[Node, Node, Node]]:
    """A primary, a replica of it, and one Sentinel (quorum 1) watching them."""
    workdir = Path(tempfile.mkdtemp(prefix="fluxfunc-sentinel-"))
    nodes: list[Node] = []
    try:
        primary = Node(workdir, "primary", [])
        primary.start()
        nodes.append(primary)
        replica = Node(workdir, "replica", [f"replicaof 127.0.0.1 {primary.port}"])
        replica.start()
        nodes.append(replica)
        sentinel = Node(workdir, "sentinel", [
            f"sentinel monitor {SERVICE} 127.0.0.1 {primary.port} 1",
            f"sentinel down-after-milliseconds {SERVICE} 1000",
            f"sentinel failover-timeout {SERVICE} 5000",
        ])
        sentinel.start(sentinel=True)
        nodes.append(sentinel)
        yield primary, replica, sentinel
    finally:
        # All at once: a primary waits on shutdown for its replicas to catch up, unless they
        # are stopping too.
        for node in nodes:
            node.terminate()
        for node in nodes:
            node.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def _settings(sentinel_port: int) -> Settings:
    return Settings.model_validate({
        "redis": {"url": "redis://unused:1/0", "namespace": "sentineltest",
                  "sentinel": {"hosts": [f"127.0.0.1:{sentinel_port}"], "service": SERVICE}},
    })


def _envelope() -> object:
    return build_envelope({"id": "demo__basic.plus"}, {"x": 1}, origin=Origin.DIRECT,
                          now=time.time(), settings=Settings().tasks)


async def _wait_replicated(replica_port: int, key: str) -> None:
    import redis.asyncio as aioredis

    client = aioredis.Redis(port=replica_port)
    try:  # the replica's first full sync can be slow on a busy machine
        await wait_for(lambda: client.exists(key), 20, what=f"{key} on the replica")
    finally:
        await client.aclose()


async def test_open_redis_reaches_primary_through_sentinel(
        sentinel_setup: tuple[Node, Node, Node]) -> None:
    primary, _replica, sentinel = sentinel_setup
    settings = _settings(sentinel.port)
    async with open_redis(settings.redis) as clients:
        info = await clients.main.info("server")
        assert int(info["tcp_port"]) == primary.port
        protocol = StreamProtocol(clients.main, clients.keys, blocking=clients.blocking)
        await protocol.ensure_groups(["default"])
        env = _envelope()
        done = await protocol.enqueue(env, max_len=100)  # type: ignore[arg-type]
        assert done.entry_id is not None
        (delivery,) = await protocol.read("w1", ["default"], 1, block_ms=500)
        assert delivery.envelope.id == done.task_id
        # the blocking client goes through the Sentinel too
        assert await protocol.read("w1", ["default"], 1, block_ms=200) == []


async def test_clients_follow_a_failover(sentinel_setup: tuple[Node, Node, Node]) -> None:
    primary, replica, sentinel = sentinel_setup
    settings = _settings(sentinel.port)
    async with open_redis(settings.redis) as clients:
        protocol = StreamProtocol(clients.main, clients.keys)
        await protocol.ensure_groups(["default"])
        first = await protocol.enqueue(_envelope(), max_len=100)  # type: ignore[arg-type]
        await _wait_replicated(replica.port, clients.keys.queue("default"))

        import redis.asyncio as aioredis

        admin = aioredis.Redis(port=sentinel.port)
        try:
            await admin.execute_command("SENTINEL", "FAILOVER", SERVICE)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                _host, port = await admin.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME",
                                                          SERVICE)
                if int(port) == replica.port:
                    break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("Sentinel did not promote the replica")
        finally:
            await admin.aclose()

        # Sentinel demotes the old primary a moment after promoting the replica (writes in that
        # window are lost: Redis replication is asynchronous, see docs/operations.md). Once it is
        # read-only, the pooled connections to it must move to the new primary on their own.
        old = aioredis.Redis(port=primary.port)
        try:
            deadline = time.monotonic() + 30
            while (await old.info("replication"))["role"] != "slave":
                assert time.monotonic() < deadline, "Sentinel never demoted the old primary"
                await asyncio.sleep(0.2)
        finally:
            await old.aclose()
        deadline = time.monotonic() + 20
        while True:
            try:
                second = await protocol.enqueue(_envelope(), max_len=100)  # type: ignore[arg-type]
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)
        info = await clients.main.info("server")
        assert int(info["tcp_port"]) == replica.port
        length = await clients.main.xlen(clients.keys.queue("default"))
        assert length == 2 and first.task_id != second.task_id


def test_sentinel_settings_from_env_and_yaml(tmp_path: Path) -> None:
    from fluxfunc_common.redisconn import describe
    from fluxfunc_common.settings import load_settings

    env = {"FLUXFUNC_REDIS__SENTINEL__HOSTS": "s1:26379, s2:26380",
           "FLUXFUNC_REDIS__SENTINEL__SERVICE": "prod",
           "FLUXFUNC_REDIS__SENTINEL__PASSWORD": "p@ss:word"}
    settings = load_settings(None, env)
    sentinel = settings.redis.sentinel
    assert sentinel is not None and sentinel.hosts == ["s1:26379", "s2:26380"]
    assert sentinel.service == "prod" and sentinel.password is not None
    assert sentinel.password.get_secret_value() == "p@ss:word"
    assert "p@ss" not in describe(settings.redis)
    config = tmp_path / "fluxfunc.yaml"
    config.write_text("redis:\n  sentinel:\n    hosts: [a:1, b:2]\n    service: m\n")
    from_yaml = load_settings(config, {}).redis.sentinel
    assert from_yaml is not None and from_yaml.hosts == ["a:1", "b:2"]
