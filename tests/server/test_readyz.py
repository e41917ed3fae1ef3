"""``/readyz``: answers within its own short timeout whatever hangs, and names the dependency
that is unreachable or unhealthy (Redis, the store, a store that cannot write); ``/healthz``
stays a liveness probe throughout."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

import aiohttp
import pytest
from tests.conftest import RedisServer

from fluxfunc_server.app import create_app
from fluxfunc_server.appkeys import CTX
from fluxfunc_server.handlers import ops

# Far above the handler's own deadline (READY_CHECK_SECONDS): a probe that hangs fails this,
# a busy machine does not.
PROBE_TIMEOUT = aiohttp.ClientTimeout(total=10)


async def _ready(client: Any) -> tuple[int, dict[str, Any]]:
    resp = await client.get("/readyz", timeout=PROBE_TIMEOUT)
    body = await resp.json()
    return resp.status, (body.get("data") if resp.status == 200 else body["detail"]) or {}


async def test_ready_lists_every_check(aiohttp_client: Any, make_settings: Any) -> None:
    client = await aiohttp_client(create_app(make_settings()))
    status, data = await _ready(client)
    assert status == 200 and data["checks"] == {"redis": "ok", "store": "ok", "storeWrite": "ok"}


async def test_stalled_redis_is_named_within_the_deadline(aiohttp_client: Any, make_settings: Any) -> None:
    """Redis SIGSTOPped: the PING never answers; /readyz gives up on it, says so, 503."""
    private = RedisServer()
    private.start()
    try:
        client = await aiohttp_client(create_app(make_settings(redis={"url": private.url})))
        assert (await _ready(client))[0] == 200
        assert private.proc is not None
        os.kill(private.proc.pid, signal.SIGSTOP)
        try:
            status, detail = await _ready(client)
            assert status == 503
            assert detail["checks"]["redis"].endswith(f"no answer within {ops.READY_CHECK_SECONDS:g} s")
            assert detail["checks"]["store"] == "ok"
            assert (await client.get("/healthz", timeout=PROBE_TIMEOUT)).status == 200
        finally:
            os.kill(private.proc.pid, signal.SIGCONT)
        await asyncio.sleep(0)
    finally:
        private.stop()


async def test_store_that_cannot_write_is_not_ready(aiohttp_client: Any, make_settings: Any,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """Reads work, commits fail (SQLite on a full disk): 503 naming the write."""
    import sqlite3

    app = create_app(make_settings())
    client = await aiohttp_client(app)
    store = app[CTX].store

    async def full(*args: Any, **kwargs: Any) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(store, "kv_set", full)
    status, detail = await _ready(client)
    assert status == 503
    assert detail["checks"]["store"] == "ok"
    assert "disk is full" in detail["checks"]["storeWrite"]


async def test_hanging_store_is_named_within_the_deadline(aiohttp_client: Any, make_settings: Any,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    app = create_app(make_settings())
    client = await aiohttp_client(app)
    release = asyncio.Event()

    async def hang() -> None:
        await release.wait()

    monkeypatch.setattr(app[CTX].store, "ping", hang)
    status, detail = await _ready(client)
    release.set()
    assert status == 503
    assert detail["checks"] == {"redis": "ok", "storeWrite": "not tried",
                                "store": f"store unreachable: no answer within {ops.READY_CHECK_SECONDS:g} s"}
