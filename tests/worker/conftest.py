"""Worker fixtures: a test bench (Redis clients, store, stream protocol) for publishing
scripts and enqueueing tasks without the Server, and real ``fluxfunc-worker`` processes.

Scripts are published the way the Server does it: script row + ``store.publish_script`` with
the funcs found by ``fluxfunc_common.scripts.analyse``, then
``scriptchanges.announce`` (the version step and which script it changed).
"""

from __future__ import annotations

import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from tests.processes import LoggedProcess, wait_for

from fluxfunc_common import scriptchanges
from fluxfunc_common.envelope import Origin, TaskEnvelope, TaskResult
from fluxfunc_common.keys import Keys
from fluxfunc_common.redisconn import RedisClients, open_redis
from fluxfunc_common.scripts import FuncRow, analyse, script_set_id
from fluxfunc_common.settings import Settings
from fluxfunc_common.store import Entity, Store, open_store
from fluxfunc_common.streams import StreamProtocol
from fluxfunc_common.tasks import build_envelope

WORKER = str(Path(sys.executable).parent / "fluxfunc-worker")

# Fast settings for process tests: short lease, frequent reclaim, quick record flushes.
FAST = {"lease_seconds": 2, "reclaim_seconds": 0.3, "record_batch_seconds": 0.2,
        "drain_seconds": 10, "concurrency": 2}


@dataclass
class Bench:
    """What a test needs to drive workers: settings, Redis, the store, the protocol."""

    settings: Settings
    clients: RedisClients
    store: Store
    tmp: Path
    streams: StreamProtocol = field(init=False)

    def __post_init__(self) -> None:
        self.streams = StreamProtocol(self.clients.main, self.clients.keys, blocking=self.clients.blocking)

    @property
    def keys(self) -> Keys:
        return self.clients.keys

    @property
    def redis(self) -> Any:
        return self.clients.main

    async def publish(self, script_id: str, code: str) -> list[FuncRow]:
        """Create (first time) and publish a script; announce it like the Server does."""
        if await self.store.find(Entity.SCRIPT, script_id) is None:
            set_id = script_set_id(script_id)
            if await self.store.find(Entity.SCRIPT_SET, set_id) is None:
                await self.store.create(Entity.SCRIPT_SET, {"id": set_id, "title": set_id})
            await self.store.create(Entity.SCRIPT, {"id": script_id, "scriptSetId": set_id,
                                                    "title": script_id, "code": code})
        funcs = analyse(script_id, code).funcs
        await self.store.publish_script(script_id, code, funcs)
        async with self.redis.pipeline(transaction=False) as pipe:
            await scriptchanges.announce(self.redis, self.keys, script_id, pipe)
            pipe.publish(self.keys.events(), orjson.dumps({"type": "scriptPublished", "scriptId": script_id}))
            await pipe.execute()
        return funcs

    async def envelope(self, func_id: str, kwargs: dict[str, Any] | None = None, *,
                       origin: Origin = Origin.DIRECT, **options: Any) -> TaskEnvelope:
        func = await self.store.get(Entity.FUNC, func_id)
        return build_envelope(func, kwargs or {}, origin=origin, now=time.time(),
                              settings=self.settings.tasks, **options)

    async def enqueue(self, func_id: str, kwargs: dict[str, Any] | None = None, **options: Any) -> str:
        env = await self.envelope(func_id, kwargs, **options)
        await self.streams.enqueue(env, max_len=self.settings.redis.queue_max_len)
        return env.id

    async def enqueue_many(self, func_id: str, kwargs_list: list[dict[str, Any]],
                           **options: Any) -> list[str]:
        func = await self.store.get(Entity.FUNC, func_id)
        now = time.time()
        envs = [build_envelope(func, kw, origin=Origin.DIRECT, now=now, settings=self.settings.tasks,
                               **options) for kw in kwargs_list]
        await self.streams.enqueue_many(envs, max_len=self.settings.redis.queue_max_len)
        return [e.id for e in envs]

    async def result(self, task_id: str, within: float = 60) -> TaskResult:
        """Wait for the task's result key."""
        found: TaskResult = await wait_for(lambda: self.streams.get_result(task_id), within,
                                           what=f"result of {task_id}")
        return found

    async def record(self, task_id: str, within: float = 5) -> dict[str, Any]:
        found: dict[str, Any] = await wait_for(lambda: self.store.get_task_record(task_id), within,
                                               what=f"task record of {task_id}")
        return found

    def config(self, name: str, **worker: Any) -> Path:
        """A config file for a worker process (``worker`` keys override FAST)."""
        data = self.settings.model_dump(mode="json")
        data["secret"] = "test-secret-for-fluxfunc-tests-only-0123"
        data["worker"] = {**data["worker"], **FAST, **worker}
        path = self.tmp / f"{name}.yaml"
        path.write_text(yaml.safe_dump(data))
        return path


@pytest.fixture
async def bench(make_settings: Callable[..., Settings], tmp_path: Path) -> AsyncIterator[Bench]:
    settings = make_settings()
    async with open_redis(settings.redis) as clients, open_store(settings.store) as store:
        yield Bench(settings, clients, store, tmp_path)


class WorkerProcess(LoggedProcess):
    """A ``fluxfunc-worker --config FILE`` subprocess with its log in a file."""

    def __init__(self, config: Path, log: Path, *args: str) -> None:
        super().__init__([WORKER, "--config", str(config), *args], log,
                         config.parent / f"state-{config.stem}")

    def task_lines(self) -> list[dict[str, Any]]:
        return [line for line in self.lines() if line.get("event") == "task"]

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    async def ready(self, bench: Bench, within: float = 30) -> None:
        """Wait until this worker's heartbeat key exists (its children are up)."""
        async def beating() -> bool:
            if not self.alive():
                raise AssertionError(f"worker exited early:\n{self.text()}")
            async for key in bench.redis.scan_iter(match=bench.keys.svc_pattern("worker"), count=100):
                raw = await bench.redis.get(key)
                if raw and orjson.loads(raw).get("pid") == self.pid:
                    return True
            return False

        await wait_for(beating, within, interval=0.1, what="worker heartbeat")

    async def heartbeat(self, bench: Bench) -> dict[str, Any]:
        """This worker's current heartbeat body (pool figures, counts …)."""
        async for key in bench.redis.scan_iter(match=bench.keys.svc_pattern("worker"), count=100):
            raw = await bench.redis.get(key)
            if raw and orjson.loads(raw).get("pid") == self.pid:
                found: dict[str, Any] = orjson.loads(raw)
                return found
        raise AssertionError("no heartbeat for this worker")


@pytest.fixture
def workers(bench: Bench, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start worker processes (``workers(name, **worker_settings)``); all stopped at the end."""
    started: list[WorkerProcess] = []

    def start(name: str = "w", *args: str, **worker: Any) -> WorkerProcess:
        proc = WorkerProcess(bench.config(name, **worker), tmp_path / f"{name}.log", *args)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.kill()


# A script with one function per behaviour the tests need. Side effects go to the file
# ``path`` (one line per event, appended with O_APPEND so concurrent children never interleave).
WORK = "demo__work"
WORK_CODE = '''
import asyncio
import os
import signal
import time


def _mark(path, what):
    with open(path, "a") as f:
        f.write(f"{what} {_DFF_TASK_ID} {_DFF_ATTEMPT}\\n")


@DFF.API("Append")
def append(path, i=0):
    _mark(path, "run")
    return i


@DFF.API("Sleepy", timeout=60)
def sleepy(path, seconds=1.0):
    _mark(path, "start")
    time.sleep(seconds)
    _mark(path, "end")
    return seconds


@DFF.API("Spin", timeout=2)
def spin():
    while True:
        pass


@DFF.API("Hog")
def hog(mb=512):
    block = bytearray(mb * 1024 * 1024)
    return len(block)


@DFF.API("Die")
def die():
    os._exit(1)


@DFF.API("Segfault")
def segfault():
    import ctypes
    ctypes.string_at(0)


@DFF.API("Flaky", retries=2)
def flaky(path):
    _mark(path, "run")
    raise ValueError(f"boom on attempt {_DFF_ATTEMPT}")


@DFF.API("Poison")
def poison():
    os.kill(os.getppid(), signal.SIGKILL)
    time.sleep(30)


@DFF.API("Async plus")
async def aplus(x, y=1):
    await asyncio.sleep(0.01)
    return x + y
'''


def marks(path: Path) -> list[tuple[str, str, int]]:
    """The (event, task id, attempt) lines the script wrote to ``path``."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        what, task, attempt = line.split()
        out.append((what, task, int(attempt)))
    return out
