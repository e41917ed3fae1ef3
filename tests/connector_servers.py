"""The external servers the connector tests use (docs/connectors.md): each test asks for the
ones it needs with :func:`require`, which skips it when one is not reachable — and fails
instead under ``CI=true``, where .ci/run starts them all."""

from __future__ import annotations

import os
import socket

import pytest

SERVERS = {"mysql": 3306, "postgresql": 5432, "redis": 6379, "mqtt": 1883, "amqp": 5672,
           "nats": 4222, "memcached": 11211, "influxdb": 8086}


def require(*names: str) -> None:
    for name in names:
        port = SERVERS[name]
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                continue
        except OSError as exc:
            why = f"{name} not reachable at 127.0.0.1:{port}: {exc}"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and {why}")
        pytest.skip(why)
