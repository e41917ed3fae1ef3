"""Fixtures of the Server tests: the app under the aiohttp test client, an admin token, a
published demo script, and an in-process fake consumer that plays the worker.

The fake consumer claims tasks with ``StreamProtocol.claim`` and completes them with
``StreamProtocol.complete_many`` — exactly what the real worker does — running the demo
script's functions as plain Python coroutines (:data:`FAKE_FUNCS`), so invocation routes
get real results without a worker process.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp.test_utils import TestClient
from tests.conftest import RedisServer
from tests.server.processes import create_token, write_config

from fluxfunc_common.crypto import Cipher, hash_token, new_token
from fluxfunc_common.envelope import HttpResponse, TaskEnvelope, TaskResult, TaskStatus
from fluxfunc_common.keys import GROUP
from fluxfunc_common.proc.localredis import free_port
from fluxfunc_common.redisconn import RedisClients, open_redis
from fluxfunc_common.settings import Settings, load_settings
from fluxfunc_common.streams import Claimed, Start, StreamProtocol
from fluxfunc_server.app import create_app
from fluxfunc_server.appkeys import CTX
from fluxfunc_server.context import AppContext

# The script the route tests publish (the Server only analyses it; the fake consumer below
# implements the same functions).
DEMO_SCRIPT = '''
@DFF.API("Plus")
def plus(x, y=1):
    """Add two numbers."""
    return x + y

@DFF.API("Echo")
def echo(**kwargs):
    return kwargs

@DFF.API("Fail")
def fail(x=0):
    return 1 / x

@DFF.API("Slow", timeout=10)
def slow(seconds=1.0):
    import time
    time.sleep(seconds)
    return "done"

@DFF.API("Resp")
def resp(kind="json"):
    return DFF.RESP({"kind": kind}, status_code=201, headers={"X-Custom": "yes"})

@DFF.API("Cached", cache_result=60)
def cached(x):
    return {"x": x}

@DFF.API("Text")
def text():
    return "plain text"

@DFF.API("NoArgs")
def noargs():
    return None
'''

FakeFunc = Callable[[dict[str, Any], TaskEnvelope], Awaitable[Any]]
AK_ID, AK_SECRET = "ak-test", "the-ak-secret"  # the access key of the ``access_key`` fixture
MARKER_TTL_MS = 60_000  # the running marker of a claimed task (the real Worker renews its own)


class FakeFailure(Exception):
    """Raised by a fake func to end its task with a given status."""

    def __init__(self, status: TaskStatus, exception: str, traceback_text: str | None = None) -> None:
        super().__init__(exception)
        self.status = status
        self.exception = exception
        self.traceback_text = traceback_text


async def _plus(kw: dict[str, Any], env: TaskEnvelope) -> Any:
    return kw["x"] + kw.get("y", 1)


async def _echo(kw: dict[str, Any], env: TaskEnvelope) -> Any:
    return kw


async def _fail(kw: dict[str, Any], env: TaskEnvelope) -> Any:
    return 1 / kw.get("x", 0)


async def _slow(kw: dict[str, Any], env: TaskEnvelope) -> Any:
    await asyncio.sleep(float(kw.get("seconds", 1.0)))
    return "done"


async def _resp(kw: dict[str, Any], env: TaskEnvelope) -> Any:
    return HttpResponse(status_code=201, headers={"X-Custom": "yes"}, data={"kind": kw.get("kind", "json")},
                        content_type=kw.get("contentType"))


async def _cached(kw: dict[str, Any], env: TaskEnvelope) -> Any:
    return {"x": kw["x"], "task": env.id}


async def _text(kw: dict[str, Any], env: TaskEnvelope) -> Any:
    return "plain text"


async def _noargs(kw: dict[str, Any], env: TaskEnvelope) -> Any:
    return None


FAKE_FUNCS: dict[str, FakeFunc] = {
    "plus": _plus, "echo": _echo, "fail": _fail, "slow": _slow, "resp": _resp,
    "cached": _cached, "text": _text, "noargs": _noargs,
}


@dataclass
class FakeWorker:
    """A consumer of the queue streams that runs :data:`FAKE_FUNCS` in-process.

    It takes tasks as the real Worker does: ``StreamProtocol.claim`` (read and start check in
    one script call: an entry with a result is acknowledged, a cancelled one ends
    ``cancelled`` without running, the others get their running marker) and completes them
    with ``StreamProtocol.complete_many``. :meth:`pause` stops the claiming, so tasks enqueued
    meanwhile stay ``queued`` until :meth:`resume`."""

    clients: RedisClients
    queues: list[str]
    consumer: str = "fake-worker"
    funcs: dict[str, FakeFunc] = field(default_factory=lambda: dict(FAKE_FUNCS))
    seen: list[TaskEnvelope] = field(default_factory=list)
    _resumed: asyncio.Event = field(default_factory=asyncio.Event)
    _claiming: asyncio.Lock = field(default_factory=asyncio.Lock)
    _stopping: bool = False
    _task: asyncio.Task[None] | None = None
    _running: set[asyncio.Task[None]] = field(default_factory=set)
    _delivered: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.streams = StreamProtocol(self.clients.main, self.clients.keys, blocking=self.clients.blocking)
        self._resumed.set()

    async def start(self) -> None:
        await self.streams.ensure_groups(self.queues)
        for queue in self.queues:  # a live consumer from now on: sync calls are not refused
            await self.clients.main.xgroup_createconsumer(self.clients.keys.queue(queue), GROUP,
                                                          self.consumer)
        self._task = asyncio.create_task(self._loop(), name="fake-worker")

    async def stop(self) -> None:
        self._stopping = True  # the claim loop ends within one short BLOCK
        self._resumed.set()
        if self._task is not None:
            await asyncio.wait_for(self._task, timeout=5)
        for task in list(self._running):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*self._running, return_exceptions=True)

    async def pause(self) -> None:
        """Claim nothing more until :meth:`resume`; returns once a claim in flight has landed."""
        self._resumed.clear()
        async with self._claiming:
            pass

    def resume(self) -> None:
        self._resumed.set()

    async def _loop(self) -> None:
        while not self._stopping:
            await self._resumed.wait()
            async with self._claiming:
                if not self._resumed.is_set():
                    continue
                _, claimed = await self.streams.claim(self.consumer, self.queues, 50,
                                                      marker_ttl_ms=MARKER_TTL_MS, block_ms=100)
            for c in claimed:
                self.seen.append(c.delivery.envelope)
                self._delivered.set()
                task = asyncio.create_task(self._settle(c))
                self._running.add(task)
                task.add_done_callback(self._running.discard)

    async def wait_seen(self, count: int, within: float = 10) -> None:
        """Until ``count`` tasks were delivered (TimeoutError after ``within`` seconds)."""
        async with asyncio.timeout(within):
            while len(self.seen) < count:
                self._delivered.clear()
                await self._delivered.wait()

    async def _settle(self, claimed: Claimed) -> None:
        d = claimed.delivery
        if claimed.start is Start.DONE:  # a re-delivery of a finished task: never run twice
            await self.streams.ack_duplicate(self.consumer, d)
            return
        result = await self._run(d.envelope, cancelled=claimed.start is Start.CANCELLED)
        await self.streams.complete_many(self.consumer, [(d, result, (d.envelope.result_ttl or 3600) * 1000)])

    async def _run(self, env: TaskEnvelope, *, cancelled: bool) -> TaskResult:
        name = env.func_id.rsplit(".", 1)[-1]
        fields: dict[str, Any] = {"start_time": time.time()}
        try:
            if cancelled:
                raise FakeFailure(TaskStatus.CANCELLED, "Cancelled: the task was cancelled")
            value = await self.funcs[name](env.kwargs, env)
            status = TaskStatus.SUCCESS
            fields["response" if isinstance(value, HttpResponse) else "result"] = value
        except FakeFailure as exc:
            status = exc.status
            fields.update(exception=exc.exception, traceback=exc.traceback_text)
        except Exception as exc:
            status = TaskStatus.FAILURE
            fields.update(exception=f"{type(exc).__name__}: {exc}",
                          traceback="Traceback (most recent call last):\n"
                                    f'  File "{env.func_id.split(".")[0]}", line 11, in {name}\n'
                                    + "".join(traceback.format_exception_only(exc)))
        return TaskResult.for_envelope(env, status, end_time=time.time(),
                                       print_logs="fake worker log line", **fields)


@dataclass
class Api:
    """The test client plus what the tests need to drive it."""

    client: TestClient
    ctx: AppContext
    token: str

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    async def call(self, method: str, path: str, *, admin: bool = True, expect: int | None = 200,
                   **kwargs: Any) -> tuple[int, Any, Any]:
        """(status, parsed JSON or text, response); asserts ``expect`` unless None."""
        headers = {**(self.admin if admin else {}), **kwargs.pop("headers", {})}
        resp = await self.client.request(method, path, headers=headers, **kwargs)
        raw = await resp.read()
        body: Any = raw.decode(errors="replace")
        if resp.content_type == "application/json" and raw:
            body = orjson.loads(raw)
        assert resp.headers.get("X-Trace-Id"), f"{method} {path}: no X-Trace-Id"
        if expect is not None:
            assert resp.status == expect, f"{method} {path}: {resp.status} {raw[:500]!r}"
        return resp.status, body, resp

    async def create(self, path: str, data: dict[str, Any]) -> dict[str, Any]:
        _, body, _ = await self.call("POST", path, json=data)
        created: dict[str, Any] = body["data"]
        return created

    async def entry(self, kind: str, func: str = "plus", **fields: Any) -> str:
        """A new entry point (``kind``: ``sync-apis``, ``async-apis``…) of a demo func; its id."""
        created = await self.create(f"/api/v1/{kind}", {"funcId": f"demo__basic.{func}", **fields})
        return str(created["id"])

    async def publish(self, script_id: str = "demo__basic", code: str = DEMO_SCRIPT) -> dict[str, Any]:
        await self.call("POST", "/api/v1/scripts", json={"id": script_id, "code": code})
        _, body, _ = await self.call("POST", f"/api/v1/scripts/{script_id}/publish", json={})
        published: dict[str, Any] = body["data"]
        return published


@pytest.fixture
def server_settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(tasks={"result_ttl": 600})


@pytest.fixture
async def api(aiohttp_client: Callable[..., Awaitable[TestClient]], server_settings: Settings) -> Api:
    """The Server app (catalogue cache off, so management changes are seen at once) and an
    admin token."""
    app = create_app(server_settings, catalog_ttl=0)
    client = await aiohttp_client(app)
    ctx = app[CTX]
    token = new_token()
    await ctx.store.add_admin_token("tok-test", hash_token(token), "tests")
    return Api(client, ctx, token)


@pytest.fixture
async def fake_worker(api: Api, server_settings: Settings) -> AsyncIterator[FakeWorker]:
    """A fake consumer on the configured queues, stopped after the test."""
    async with open_redis(server_settings.redis) as clients:
        worker = FakeWorker(clients, list(server_settings.worker.queues))
        await worker.start()
        try:
            yield worker
        finally:
            await worker.stop()


@pytest.fixture
async def published(api: Api) -> dict[str, Any]:
    """The demo script, published."""
    return await api.publish()


@pytest.fixture
async def access_key(api: Api) -> None:
    """The access key :data:`AK_ID` with the secret :data:`AK_SECRET`."""
    await api.ctx.store.add_access_key(AK_ID, api.ctx.cipher.encrypt(AK_SECRET), "tests")


def nested(levels: int) -> dict[str, Any]:
    """A JSON object nested ``levels`` deep (the outer object is level 1)."""
    value: dict[str, Any] = {}
    for _ in range(levels - 1):
        value = {"a": value}
    return value


@pytest.fixture
def cipher(server_settings: Settings) -> Cipher:
    return Cipher(server_settings.require_secret())


# --- real Server processes (tests/server/test_process.py, test_processes.py) -------------------


@pytest.fixture
def deployment(tmp_path: Path, redis_server: RedisServer, namespace: str) -> tuple[Path, int]:
    """The config file of a real ``fluxfunc-server`` on a free port (private Redis, SQLite in
    ``tmp_path``), and that port."""
    port = free_port()
    config = write_config(tmp_path / "fluxfunc.yaml", redis_url=redis_server.url, namespace=namespace,
                          store_url=f"sqlite:///{tmp_path / 'store.db'}", port=port)
    return config, port


@contextlib.asynccontextmanager
async def demo_sync_api(config: Path, base: str,
                        func: str) -> AsyncIterator[tuple[str, FakeWorker, RedisClients]]:
    """Against the real Server at ``base`` (configured by ``config``): a fake worker on its
    queues, the demo script published and a sync API of ``demo__basic.<func>`` made over HTTP
    with a new admin token. Yields (the sync API's id, the worker, its Redis clients); the
    worker stops after."""
    settings = load_settings(config)
    admin = {"Authorization": f"Bearer {create_token(config)}"}
    async with open_redis(settings.redis) as clients, aiohttp.ClientSession(base) as http:
        worker = FakeWorker(clients, list(settings.worker.queues))
        await worker.start()
        try:
            await (await http.post("/api/v1/scripts", headers=admin,
                                   json={"id": "demo__basic", "code": DEMO_SCRIPT})).read()
            await (await http.post("/api/v1/scripts/demo__basic/publish", headers=admin)).read()
            resp = await http.post("/api/v1/sync-apis", headers=admin,
                                   json={"funcId": f"demo__basic.{func}"})
            yield str((await resp.json())["data"]["id"]), worker, clients
        finally:
            await worker.stop()
