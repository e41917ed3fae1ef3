"""Helpers of the fault tests: a TCP proxy the test can cut (the store behind it becomes
unreachable), a deployment of real ``fluxfunc-server`` / ``-worker`` / ``-beat`` processes
driven over HTTP, a load of sync and async calls, and the side-effect log the test functions
write outside fluxfunc (one line per run, appended by the child process that ran it)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import signal
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from tests.processes import wait_for
from tests.server.processes import Service, create_token, write_config

from fluxfunc_common.lifecycle import sleep_or_stop
from fluxfunc_common.proc.localredis import free_port

SCRIPT_ID = "demo__faults"

# Every run appends "<kind> <n> <task id> <trigger ms> <pid> <epoch s>" to ``path``.
SCRIPT = '''
import os
import time


def _note(path, kind, n=0):
    with open(path, "a") as f:
        f.write(f"{kind} {n} {_DFF_TASK_ID} {_DFF_TRIGGER_TIME_MS} {os.getpid()} {time.time():.3f}\\n")


@DFF.API("Work", timeout=60)
def work(path, n, seconds=0.3):
    _note(path, "run", n)
    time.sleep(seconds)
    return n


@DFF.API("Tick")
def tick(path):
    _note(path, "tick")


@DFF.API("Long", timeout=120)
def long(path, seconds=20.0):
    end = time.time() + seconds
    while time.time() < end:
        _note(path, "beat")
        time.sleep(0.1)
    _note(path, "end")
'''


@dataclass(frozen=True)
class Effect:
    kind: str
    n: int
    task_id: str
    trigger_ms: int
    pid: int
    at: float


def effects(path: Path) -> list[Effect]:
    """The side-effect lines written so far (a torn last line is left out)."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 6:
            kind, n, task_id, trigger, pid, at = parts
            out.append(Effect(kind, int(n), task_id, int(trigger) if trigger != "None" else 0,
                              int(pid), float(at)))
    return out


def runs_by_n(path: Path) -> Counter[int]:
    return Counter(e.n for e in effects(path) if e.kind == "run")


# --- the store behind a proxy --------------------------------------------------------------------


class TcpProxy:
    """Forwards 127.0.0.1:<port> to ``target`` on its own event loop thread. :meth:`cut`
    closes every connection and refuses new ones (accepted, then closed at once: the client
    sees the server gone); :meth:`heal` forwards again."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self.cut_off = False
        self._loop = asyncio.new_event_loop()
        self._writers: set[asyncio.StreamWriter] = set()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.AbstractServer | None = None

    def __enter__(self) -> TcpProxy:
        self._thread.start()
        self._server = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._serve, "127.0.0.1", self.port), self._loop).result(10)
        return self

    def __exit__(self, *exc: object) -> None:
        async def close() -> None:
            assert self._server is not None
            self._server.close()
            self._drop()

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def cut(self) -> None:
        def go() -> None:
            self.cut_off = True
            self._drop()
        self._loop.call_soon_threadsafe(go)

    def heal(self) -> None:
        self._loop.call_soon_threadsafe(setattr, self, "cut_off", False)

    def _drop(self) -> None:
        for w in list(self._writers):
            w.close()
        self._writers.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.cut_off:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.close()
            return
        self._writers |= {writer, up_writer}
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(Exception):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        writer.close()
        self._writers.discard(writer)


# --- a deployment ----------------------------------------------------------------------------


@dataclass
class Deployment:
    """Real service processes on one config, driven over HTTP with an admin token."""

    tmp: Path
    redis_url: str
    store_url: str
    sections: dict[str, dict[str, Any]] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    services: list[Service] = field(default_factory=list)
    token: str = ""
    http: aiohttp.ClientSession | None = None

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def effects_path(self) -> Path:
        return self.tmp / "effects.txt"

    def config(self) -> Path:
        return write_config(self.tmp / "fluxfunc.yaml", redis_url=self.redis_url,
                            namespace="faults" + secrets.token_hex(4), store_url=self.store_url,
                            port=self.port, **self.sections)

    def start(self, module: str, name: str) -> Service:
        state = self.tmp / f"state-{name}"
        state.mkdir(exist_ok=True)
        service = Service(["-m", module, "--config", str(self.tmp / "fluxfunc.yaml")],
                          self.tmp / f"{name}.log", env={"FLUXFUNC_STATE_DIR": str(state)}).start()
        self.services.append(service)
        return service

    async def open(self) -> None:
        """Config, token, the Server up and the test script published."""
        self.config()
        self.token = await asyncio.to_thread(create_token, self.tmp / "fluxfunc.yaml")
        server = self.start("fluxfunc_server", "server")
        self.http = aiohttp.ClientSession(self.base, headers={"Authorization": f"Bearer {self.token}"})
        await wait_for(lambda: self._answers("/healthz", server), 60, 0.2, what="server up")
        await self.call("POST", "/api/v1/scripts", {"id": SCRIPT_ID, "title": "Faults", "code": SCRIPT})
        await self.call("POST", f"/api/v1/scripts/{SCRIPT_ID}/publish")

    async def _answers(self, path: str, service: Service) -> bool:
        assert service.proc is not None and service.proc.poll() is None, service.output()[-3000:]
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            return (await self.get(path)).status == 200
        return False

    async def close(self) -> None:
        for s in reversed(self.services):
            with contextlib.suppress(Exception):
                os.killpg(s.proc.pid, signal.SIGCONT)  # type: ignore[union-attr]
            await asyncio.to_thread(s.stop, 20)
        if self.http is not None:
            await self.http.close()

    async def get(self, path: str, seconds: float = 30) -> aiohttp.ClientResponse:
        assert self.http is not None
        resp = await self.http.get(path, timeout=aiohttp.ClientTimeout(total=seconds))
        await resp.read()
        return resp

    async def call(self, method: str, path: str, body: Any = None, *, expect: int = 200,
                   seconds: float = 60) -> Any:
        assert self.http is not None
        async with self.http.request(method, path, json=body,
                                     timeout=aiohttp.ClientTimeout(total=seconds)) as resp:
            data = await resp.json()
            assert resp.status == expect, (method, path, resp.status, data)
            return data.get("data")

    async def workers_ready(self, count: int) -> None:
        async def beating() -> bool:
            overview = await self.call("GET", "/api/v1/ops/overview")
            return len(overview["services"].get("worker") or []) >= count
        await wait_for(beating, 60, 0.2, what=f"{count} worker heartbeats")

    async def task(self, task_id: str) -> dict[str, Any]:
        return dict(await self.call("GET", f"/api/v1/tasks/{task_id}"))

    async def readyz(self, *, deadline: float = 10) -> tuple[int, float, dict[str, Any]]:
        """(status, seconds it took, checks) of one ``/readyz``; TimeoutError when it has not
        answered within ``deadline`` seconds. (The seconds are a figure for ``bench/faults.py``;
        tests pass a ``deadline`` instead of asserting on them.)"""
        started = time.monotonic()
        resp = await self.get("/readyz", seconds=deadline)
        body = await resp.json()
        checks = (body.get("data") or {}).get("checks") if resp.status == 200 else body["detail"]["checks"]
        return resp.status, time.monotonic() - started, checks or {}


class Load:
    """Async calls at ``rate`` per second plus ``sync_callers`` callers in a loop, each call a
    ``work`` run with its own number ``n``; remembers which were accepted / answered."""

    def __init__(self, d: Deployment, *, rate: float = 10, sync_callers: int = 4,
                 seconds: float = 0.3) -> None:
        self.d, self.rate, self.sync_callers, self.seconds = d, rate, sync_callers, seconds
        self.accepted: dict[int, str] = {}  # n → task id of an async call answered 200
        self.answered: dict[int, str] = {}  # n → task id of a sync call answered 200
        self.refused = 0
        self._n = 0
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    def _next(self) -> int:
        self._n += 1
        return self._n

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._async_calls()),
                       *(asyncio.create_task(self._sync_calls()) for _ in range(self.sync_callers))]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)

    def _kwargs(self, n: int) -> dict[str, Any]:
        return {"path": str(self.d.effects_path), "n": n, "seconds": self.seconds}

    async def _async_calls(self) -> None:
        pending: set[asyncio.Task[None]] = set()
        while not self._stop.is_set():
            task = asyncio.create_task(self._one(self._next(), {"async": True}, self.accepted, 10))
            pending.add(task)
            task.add_done_callback(pending.discard)
            await sleep_or_stop(self._stop, 1 / self.rate)
        await asyncio.gather(*pending)

    async def _sync_calls(self) -> None:
        while not self._stop.is_set():
            if not await self._one(self._next(), {}, self.answered, 30):
                await sleep_or_stop(self._stop, 0.2)

    async def _one(self, n: int, options: dict[str, Any], into: dict[int, str], seconds: float) -> bool:
        assert self.d.http is not None
        body = {"kwargs": self._kwargs(n), "options": options}
        try:
            async with self.d.http.post(f"/api/v1/func/{SCRIPT_ID}.work", json=body,
                                        timeout=aiohttp.ClientTimeout(total=seconds)) as resp:
                data = await resp.json(content_type=None)
                if resp.status == 200:
                    into[n] = data["data"]["id"] if "id" in data["data"] else data["data"]["taskId"]
                    return True
        except (aiohttp.ClientError, TimeoutError, ValueError):
            pass
        self.refused += 1
        return False
