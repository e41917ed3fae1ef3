"""Beat fixtures: an open store + Redis clients for in-process tests, config files and Beat
subprocesses for the acceptance tests, and small helpers to read what was fired."""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis.asyncio as aioredis
import yaml
from tests.processes import LoggedProcess

from fluxfunc_common.keys import Keys
from fluxfunc_common.redisconn import RedisClients, open_redis
from fluxfunc_common.settings import Settings
from fluxfunc_common.store import Entity, Store, open_store

BEAT = str(Path(sys.executable).parent / "fluxfunc-beat")


def func_row(func_id: str = "demo__basic.tick", **extra: Any) -> dict[str, Any]:
    """A funcs catalogue row as publish writes it."""
    script = func_id.split(".")[0]
    return {
        "id": func_id, "scriptId": script, "scriptSetId": script.split("__")[0],
        "name": func_id.split(".")[1],
        "title": "Tick", "description": "", "definition": "tick()", "args": [], "kwargsSpec": {},
        "varKwargs": True, "isAsync": False,
        "extraConfig": {"timeout": 30, "expires": None, "cacheResult": None, "queue": None,
                        "fixedCronExpr": None, "retries": 0, **extra},
        "category": None, "tags": [],
    }


def cron_row(cron_id: str, expr: str = "* * * * * *", func_id: str = "demo__basic.tick",
             **extra: Any) -> dict[str, Any]:
    return {"id": cron_id, "funcId": func_id, "cronExpr": expr, "kwargs": {"n": 1}, "timezone": None,
            "misfirePolicy": "fireOnce", "overlapPolicy": "allow", "expireTime": None,
            "isDisabled": False, **extra}


@pytest.fixture
async def clients(make_settings: Callable[..., Settings]) -> AsyncIterator[RedisClients]:
    async with open_redis(make_settings().redis) as c:
        yield c


@pytest.fixture
async def store(make_settings: Callable[..., Settings]) -> AsyncIterator[Store]:
    async with open_store(make_settings().store) as s:
        yield s


async def fired_entries(redis: aioredis.Redis, keys: Keys, queue: str = "cron") -> list[dict[str, Any]]:
    """Every envelope on a queue stream (no worker runs in these tests)."""
    out = []
    for _entry_id, fields in await redis.xrange(keys.queue(queue)):
        out.append(orjson.loads(fields[b"body"]))
    return out


def fire_counts(entries: list[dict[str, Any]]) -> Counter[tuple[str, int]]:
    return Counter((e["originId"], round(e["triggerTime"] * 1000)) for e in entries)


async def seed(store: Store, jobs: int, expr: str = "* * * * * *", **job_extra: Any) -> list[str]:
    if await store.find(Entity.FUNC, "demo__basic.tick") is None:
        await store.create(Entity.FUNC, func_row())
    ids = [f"cron-t{i:04d}" for i in range(jobs)]
    for cron_id in ids:
        await store.create(Entity.CRON_JOB, cron_row(cron_id, expr, **job_extra))
    return ids


WORKER = str(Path(sys.executable).parent / "fluxfunc-worker")


class BeatProcess(LoggedProcess):
    """A `fluxfunc-beat --config file` subprocess (or another service's console script)."""

    def __init__(self, config: Path, log: Path, program: str = BEAT) -> None:
        state = config.parent if program == BEAT else config.parent / f"state-{config.stem}"
        super().__init__([program, "--config", str(config)], log, state)


@pytest.fixture
def beat_procs(tmp_path: Path) -> Iterator[Callable[..., BeatProcess]]:
    """Start Beat processes from settings (``program=WORKER`` for a worker); all are stopped at
    the end of the test."""
    started: list[BeatProcess] = []

    def start(settings: Settings, name: str, program: str = BEAT) -> BeatProcess:
        config = tmp_path / f"{name}.yaml"
        data = settings.model_dump(mode="json")
        data["secret"] = "test-secret-for-fluxfunc-tests-only-0123"
        config.write_text(yaml.safe_dump(data))
        proc = BeatProcess(config, tmp_path / f"{name}.log", program)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop(5)


class RunningBeat:
    """An in-process Beat (``Beat.run`` as a task) for tests that look inside it."""

    def __init__(self, beat: Any, task: Any, stop: Any) -> None:
        self.beat, self.task, self.stop = beat, task, stop

    async def leading(self, within: float = 10) -> None:
        """Wait until this Beat leads and has loaded its jobs."""
        import asyncio

        await asyncio.wait_for(self.beat.leading.wait(), within)

    async def close(self) -> None:
        import asyncio

        self.stop.set()
        try:
            await asyncio.wait_for(self.task, 15)
        except TimeoutError:
            self.task.cancel()


@pytest.fixture
async def run_beat(clients: RedisClients, store: Store) -> AsyncIterator[Callable[..., Any]]:
    """Start in-process Beats on the test's Redis and store; all stopped at the end."""
    import asyncio

    from fluxfunc_beat.beat import Beat

    started: list[RunningBeat] = []

    async def start(settings: Settings, **kwargs: Any) -> RunningBeat:
        beat = Beat(settings, clients, store, **kwargs)
        stop = asyncio.Event()
        running = RunningBeat(beat, asyncio.create_task(beat.run(stop)), stop)
        started.append(running)
        return running

    yield start
    for running in started:
        await running.close()
