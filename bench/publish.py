"""Benchmark of a publish: what the next call of the OTHER scripts costs after one script of
many is published again (docs/internals.md, Notifications).

One ``fluxfunc-worker`` (``--concurrency 1``: one child holds every module) serves N published
scripts; every script is called once so all modules are warm. Then one script is published
again, the worker serves its new code, and every other script is called once more. Each
call's time is the task's own ``endTime - startTime`` (the child resolves the function —
rebuilding the module when it was dropped — inside that window; queueing is not counted).

Two modes, alternated ``--rounds`` times on the same worker:
  * ``partial``: the publish as the Server does it (``scriptchanges.announce``: the version
    step and which script it changed): only the published script and its importers rebuild;
  * ``fallback``: the version counter bumped alone, as a worker that missed a step of the
    change log sees it: every module is dropped and rebuilt (the behaviour before per-script
    invalidation).

Starts its own private redis-server (from PATH) on a free port and uses a SQLite store.

    .venv/bin/python bench/publish.py [--scripts 1000] [--rounds 2] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
import yaml

from fluxfunc_common import scriptchanges
from fluxfunc_common.envelope import Origin, TaskResult
from fluxfunc_common.proc.localredis import private_redis
from fluxfunc_common.redisconn import RedisClients, open_redis
from fluxfunc_common.scripts import analyse
from fluxfunc_common.settings import Settings
from fluxfunc_common.store import Entity, Store, open_store
from fluxfunc_common.streams import StreamProtocol
from fluxfunc_common.tasks import build_envelope

BENCH_SECRET = "bench-secret-0123456789abcdef0123456789"  # fluxfunc refuses < 32 bytes
WORKER = str(Path(sys.executable).parent / "fluxfunc-worker")
# A modest script: a few imports, constants and helpers built at module level.
CODE = '''
import json
import re

VERSION = {version}
PATTERN = re.compile(r"^[a-z]+-[0-9]+$")
TABLE = {{f"key{{i}}": i * i for i in range(200)}}


def _helper(value):
    return json.dumps({{"v": value, "ok": bool(PATTERN.match("abc-1"))}})


class Thing:
    def __init__(self, n):
        self.n = n

    def total(self):
        return sum(TABLE.values()) + self.n


@DFF.API("Call")
def call(n=0):
    return [VERSION, Thing(n).total(), _helper(n)]
'''


def script_id(i: int) -> str:
    return f"demo__s{i:04d}"


class Driver:
    """Publishes and calls the bench scripts."""

    def __init__(self, settings: Settings, clients: RedisClients, store: Store) -> None:
        self.settings = settings
        self.clients = clients
        self.store = store
        self.streams = StreamProtocol(clients.main, clients.keys, blocking=clients.blocking)

    async def publish(self, sid: str, version: int, *, log_change: bool = True) -> None:
        code = CODE.format(version=version)
        if await self.store.find(Entity.SCRIPT, sid) is None:
            await self.store.create(Entity.SCRIPT, {"id": sid, "scriptSetId": "demo", "code": code})
        await self.store.publish_script(sid, code, analyse(sid, code).funcs)
        keys, redis = self.clients.keys, self.clients.main
        if log_change:
            await scriptchanges.announce(redis, keys, sid)
        else:
            await redis.incr(keys.scripts_version())
        await redis.publish(keys.events(), orjson.dumps({"type": "scriptPublished", "scriptId": sid}))

    async def call_all(self, sids: list[str]) -> list[TaskResult]:
        """Enqueue one call of each script, wait for every result (the worker runs them in turn)."""
        envs = []
        now = time.time()
        for sid in sids:
            func = await self.store.get(Entity.FUNC, f"{sid}.call")
            envs.append(build_envelope(func, {"n": 1}, origin=Origin.DIRECT, now=now,
                                       settings=self.settings.tasks))
        for start in range(0, len(envs), 500):
            await self.streams.enqueue_many(envs[start:start + 500], max_len=10**9)
        results = []
        deadline = time.monotonic() + 120 + len(envs) / 10
        for env in envs:
            while (found := await self.streams.get_result(env.id)) is None:
                if time.monotonic() > deadline:
                    raise SystemExit(f"no result for {env.func_id} (see the worker log)")
                await asyncio.sleep(0.01)
            if found.status.value != "success":
                raise SystemExit(f"{env.func_id} failed: {found.exception}")
            results.append(found)
        return results

    async def until_live(self, sid: str, version: int) -> None:
        deadline = time.monotonic() + 30
        while (await self.call_all([sid]))[0].result[0] != version:
            if time.monotonic() > deadline:
                raise SystemExit(f"{sid} version {version} never went live")


def millis(results: list[TaskResult]) -> list[float]:
    return [((r.end_time or 0) - (r.start_time or 0)) * 1000 for r in results]


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return {"p50_ms": round(statistics.median(ordered), 3), "p99_ms": round(p99, 3),
            "mean_ms": round(statistics.fmean(ordered), 3)}


async def measure(settings: Settings, scripts: int, rounds: int) -> dict[str, Any]:
    sids = [script_id(i) for i in range(scripts)]
    async with open_redis(settings.redis) as clients, open_store(settings.store) as store:
        driver = Driver(settings, clients, store)
        warm = millis(await driver.call_all(sids))  # first call: every module built
        steady = millis(await driver.call_all(sids))  # nothing published: all warm
        figures: dict[str, list[float]] = {"partial": [], "fallback": []}
        version = 1
        for r in range(rounds):
            for mode in ("partial", "fallback"):
                version += 1
                changed = sids[r % len(sids)]
                await driver.publish(changed, version, log_change=mode == "partial")
                await driver.until_live(changed, version)
                figures[mode] += millis(await driver.call_all([s for s in sids if s != changed]))
    return {"scripts": scripts, "rounds": rounds, "first_call": summary(warm),
            "warm_no_publish": summary(steady),
            **{f"after_publish_{mode}": summary(values) for mode, values in figures.items()},
            "load_average": [round(x, 2) for x in os.getloadavg()]}


async def prepare(settings: Settings, scripts: int) -> None:
    async with open_redis(settings.redis) as clients, open_store(settings.store) as store:
        await store.create(Entity.SCRIPT_SET, {"id": "demo", "title": "demo"})
        driver = Driver(settings, clients, store)
        for i in range(scripts):
            await driver.publish(script_id(i), 1)


def run(redis_url: str, scripts: int, rounds: int) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="fluxfunc-bench-publish-"))
    settings = Settings.model_validate({
        "secret": BENCH_SECRET, "redis": {"url": redis_url, "namespace": "bench" + secrets.token_hex(4)},
        "store": {"url": f"sqlite:///{workdir / 'store.db'}"}, "log": {"level": "WARNING", "format": "json"},
        "worker": {"queues": ["default"], "concurrency": 1, "max_tasks_per_child": 10**9},
    })
    asyncio.run(prepare(settings, scripts))
    config = workdir / "worker.yaml"
    data = settings.model_dump(mode="json")
    data["secret"] = BENCH_SECRET
    config.write_text(yaml.safe_dump(data))
    log = (workdir / "worker.log").open("wb")
    env = {**os.environ, "FLUXFUNC_STATE_DIR": str(workdir)}
    proc = subprocess.Popen([WORKER, "--config", str(config)], stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        return asyncio.run(measure(settings, scripts, rounds))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        log.close()
        shutil.rmtree(workdir, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scripts", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=2, help="publishes per mode")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with private_redis(prefix="fluxfunc-bench-redis-") as server:
        result = run(server.url, args.scripts, args.rounds)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{args.scripts} scripts warm in one worker child; the next call of each other script "
          f"after one publish (task endTime - startTime, {args.rounds} publishes per mode):")
    for name in ("first_call", "warm_no_publish", "after_publish_partial", "after_publish_fallback"):
        f = result[name]
        print(f"  {name:24s} p50 {f['p50_ms']:8.3f} ms   p99 {f['p99_ms']:8.3f} ms   "
              f"mean {f['mean_ms']:8.3f} ms")
    print(f"  load average {result['load_average']}")


if __name__ == "__main__":
    main()
