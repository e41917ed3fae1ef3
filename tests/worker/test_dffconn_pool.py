"""The per-child connector pool with a fake worker and a fake client family: clients opened
lazily and kept, a new version closes the old client, a broken connection is reopened (once,
transparently), secrets are masked, and everything closes when the child retires."""

from __future__ import annotations

from typing import Any

import pytest

from fluxfunc_common.clock import FakeClock
from fluxfunc_common.connectors.types import ConnectorConfig, ConnectorType
from fluxfunc_worker.dffconn.pool import RECHECK_SECONDS, ConnectorError, ConnectorPool


class Broken(Exception):
    pass


class FakeFamily:
    def __init__(self) -> None:
        self.opened: list[dict[str, Any]] = []
        self.closed: list[dict[str, Any]] = []

    def open(self, config: ConnectorConfig, connector_id: str) -> dict[str, Any]:
        if config.host == "down":
            raise ConnectionRefusedError("Connection refused")
        client = {"host": config.host, "n": len(self.opened)}
        self.opened.append(client)
        return client

    def close(self, client: Any) -> None:
        self.closed.append(client)

    def is_broken(self, exc: BaseException) -> bool:
        return isinstance(exc, Broken)


class FakeWorker:
    def __init__(self) -> None:
        self.version = 1.0
        self.config: dict[str, object] = {"host": "h1", "password": "pw"}
        self.calls = 0
        self.exists = True

    def __call__(self, method: str, **params: Any) -> Any:
        assert method == "conn" and params == {"id": "c"}
        self.calls += 1
        if not self.exists:
            return None
        return {"id": "c", "type": "redis", "version": self.version, "config": self.config,
                "isDisabled": False, "secrets": ["pw"]}


@pytest.fixture
def parts() -> tuple[ConnectorPool, FakeWorker, FakeFamily, FakeClock, set[str]]:
    worker, family, clock, masks = FakeWorker(), FakeFamily(), FakeClock(), set[str]()
    pool = ConnectorPool(worker, masks.add, {ConnectorType.REDIS: family}, clock=clock.monotonic)
    return pool, worker, family, clock, masks


def test_lazy_kept_rechecked_and_replaced(parts: Any) -> None:
    pool, worker, family, clock, masks = parts
    assert pool.call("c", lambda c: c["n"]) == 0
    assert pool.call("c", lambda c: c["n"]) == 0 and worker.calls == 1 and masks == {"pw"}
    clock.advance(RECHECK_SECONDS)
    assert pool.call("c", lambda c: c["n"]) == 0 and worker.calls == 2  # same version: kept
    worker.version, worker.config = 2.0, {"host": "h2"}
    clock.advance(RECHECK_SECONDS)
    assert pool.call("c", lambda c: c["host"]) == "h2"
    assert family.closed == [family.opened[0]]
    pool.close_all()
    assert family.closed == family.opened


def test_broken_connection_is_reopened(parts: Any) -> None:
    pool, _, family, _, _ = parts
    attempts: list[int] = []

    def flaky(client: dict[str, Any]) -> int:
        attempts.append(client["n"])
        if client["n"] == 0:
            raise Broken("gone away")
        return int(client["n"])

    assert pool.call("c", flaky) == 1 and attempts == [0, 1] and family.closed == [family.opened[0]]
    # a connection that stays broken is a ConnectorError naming the connector
    with pytest.raises(ConnectorError, match=r"connector 'c' \(redis\): host unreachable.*again"):
        pool.call("c", lambda c: (_ for _ in ()).throw(Broken("again")), retry=False)
    assert len(family.closed) == 2
    with pytest.raises(ValueError):  # not a connection failure: the client stays
        pool.call("c", lambda c: (_ for _ in ()).throw(ValueError("bad")))
    assert len(family.closed) == 2


def test_missing_and_unreachable(parts: Any) -> None:
    pool, worker, _, clock, _ = parts
    worker.config = {"host": "down"}
    with pytest.raises(ConnectorError, match="connector 'c' \\(redis\\): host unreachable"):
        pool.call("c", lambda c: c)
    worker.exists = False
    clock.advance(RECHECK_SECONDS)
    with pytest.raises(ConnectorError, match="no connector 'c'"):
        pool.entry("c")


def test_disabled_connector_refused(parts: Any) -> None:
    pool, worker, _, _, _ = parts
    original = worker.__call__

    def disabled(method: str, **params: Any) -> Any:
        return {**original(method, **params), "isDisabled": True}

    pool._rpc = disabled
    with pytest.raises(ConnectorError, match="connector 'c' is disabled"):
        pool.call("c", lambda c: c)
