"""How the Server listens: slow or silent clients are cut off (``server.keepalive_timeout``,
``server.body_timeout``), ``fluxfunc-server`` binds every interface unless told, and
``fluxfunc up`` binds 127.0.0.1."""

from __future__ import annotations

import argparse
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from tests.conftest import RedisServer
from tests.server.conftest import DEMO_SCRIPT
from tests.server.processes import create_token, running, server, write_config

from fluxfunc_common.cli.up import Up
from fluxfunc_common.proc.localredis import free_port
from fluxfunc_common.settings import ServerSettings, Settings

TIMEOUT = 1.0  # the configured timeouts
PATIENCE = 60.0  # how long the test waits for the close (never a bound on the server)


@pytest.fixture(scope="module")
def port(tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer) -> Iterator[int]:
    """A server process with 1 s keep-alive and body timeouts, and an open async API
    ``/api/v1/async/open`` (its handler reads the body)."""
    tmp = tmp_path_factory.mktemp("listen")
    port = free_port()
    config = write_config(tmp / "fluxfunc.yaml", redis_url=redis_server.url, namespace="listen",
                          store_url=f"sqlite:///{tmp / 'store.db'}", port=port,
                          server={"keepalive_timeout": TIMEOUT, "body_timeout": TIMEOUT})
    base = f"http://127.0.0.1:{port}"
    with running(server(config, tmp, tmp), ready_url=f"{base}/healthz"):
        admin = {"Authorization": f"Bearer {create_token(config)}"}
        for path, body in (("/api/v1/scripts", {"id": "demo__basic", "code": DEMO_SCRIPT}),
                           ("/api/v1/scripts/demo__basic/publish", {}),
                           ("/api/v1/async-apis", {"id": "open", "funcId": "demo__basic.echo"})):
            requests.post(base + path, json=body, headers=admin, timeout=30).raise_for_status()
        yield port


def closed_by_server(sock: socket.socket) -> float:
    """Seconds until the server closed ``sock`` (reading what it sends meanwhile)."""
    started = time.monotonic()
    sock.settimeout(PATIENCE)
    while sock.recv(65536):
        pass
    return time.monotonic() - started


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=PATIENCE)


@pytest.mark.parametrize("sent", [b"", b"GET /healthz HTTP/1.1\r\nHost: x\r\n",
                                  b"POST /api/v1/async/open HTTP/1.1\r\nHost: x\r\n"
                                  b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"k"])
def test_silent_and_half_sent_requests_are_closed(port: int, sent: bytes) -> None:
    """Nothing, half a request head, half a body: the connection is closed (on the code before
    these settings it stayed open for an hour)."""
    with connect(port) as sock:
        sock.sendall(sent)
        closed_by_server(sock)  # raises TimeoutError if the server never closes


def test_idle_keep_alive_connection_is_closed(port: int) -> None:
    with connect(port) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        sock.settimeout(PATIENCE)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
        closed_by_server(sock)


def test_a_timely_request_is_unaffected(port: int) -> None:
    with connect(port) as sock:
        for _ in range(3):  # keep-alive works while requests keep coming
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            assert sock.recv(65536).startswith(b"HTTP/1.1 200")


def test_bind_addresses(tmp_path: Path) -> None:
    assert ServerSettings().host == "0.0.0.0"  # containers: every interface, documented
    args = argparse.Namespace(dir=str(tmp_path), host=None, port=None, concurrency=None)
    settings = Up(args).settings(Settings())
    assert settings.server.host == "127.0.0.1"
    assert len(settings.require_secret()) >= 32  # and a secret it generated, long enough
    chosen = Up(args).settings(Settings().with_overrides(server={"host": "0.0.0.0"}))
    assert chosen.server.host == "0.0.0.0"  # an explicit choice is kept
