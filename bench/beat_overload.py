"""Benchmark of the Beat past one core: overload, recovery, and two Beats sharing the partitions.

Two scenarios, each on its own private redis-server and SQLite store (no worker: the reader
deletes what it has read, so Redis memory stays flat):

``overload``: ``--high`` every-second jobs (default 50,000) for ``--seconds`` (60), then all but
``--low`` (5,000) expire (their ``expireTime``) and it runs ``--after`` (20) s more. Reports the
Beat's peak RSS, the lag it reported (heartbeat ``lagMs``, "beat behind schedule" lines), the
fires shed (misfire policy applied because it was behind), duplicates (a task id seen twice:
there must be none), fires/s under overload, lateness p99 and max under overload, and how many
seconds after the drop the per-second p99 lateness stays under 100 ms.

``partitions``: ``--split`` jobs (10,000) and two Beats: fires/s, how the jobs split between
them (their heartbeats' partitions), then the one not running the chores is SIGKILLed: how
long until the survivor holds every partition, the latest fire of that gap, duplicates, and
(job, second) fires missing between the two Beats' first and last fires.

    .venv/bin/python bench/beat_overload.py [overload|partitions|all] [--high 50000] [--low 5000]
        [--seconds 60] [--after 20] [--startup 55] [--split 10000] [--lease 5] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil
import redis.asyncio as aioredis
import yaml

from fluxfunc_beat.partitions import partition_of
from fluxfunc_common.heartbeat import list_services
from fluxfunc_common.keys import Keys
from fluxfunc_common.proc.localredis import LocalRedis
from fluxfunc_common.settings import StoreSettings
from fluxfunc_common.store import Entity, open_store
from fluxfunc_common.store.entities import insert_row, insert_sql

BEAT = str(Path(sys.executable).parent / "fluxfunc-beat")
CROCKFORD = {c: i for i, c in enumerate("0123456789ABCDEFGHJKMNPQRSTVWXYZ")}
NS = "bench"
FUNC = {"id": "bench__cron.tick", "scriptId": "bench__cron", "scriptSetId": "bench", "name": "tick",
        "title": "Tick", "definition": "tick()", "args": [], "kwargsSpec": {}, "varKwargs": True,
        "extraConfig": {"timeout": 30, "retries": 0}}


def ulid_ms(task_id: str) -> int:
    """The time part (ms) of a ``task-<ULID>`` id: a cron fire's scheduled time."""
    value = 0
    for ch in task_id[5:15]:
        value = value * 32 + CROCKFORD[ch]
    return value


async def seed(url: str, jobs: int, expire: dict[int, float]) -> None:
    """``jobs`` every-second jobs in one transaction; job i expires at ``expire[i]`` if given."""
    now = time.time()
    rows = [insert_row(Entity.CRON_JOB, {
        "id": f"cron-b{i:05d}", "funcId": FUNC["id"], "cronExpr": "* * * * * *", "kwargs": {},
        "misfirePolicy": "fireOnce" if i % 2 else "skip", "overlapPolicy": "allow",
        "expireTime": expire.get(i), "isDisabled": False, "createTime": now, "updateTime": now})
        for i in range(jobs)]
    async with open_store(StoreSettings(url=url)) as store:
        await store.create(Entity.FUNC, FUNC)
        async with store.db.transaction() as s:  # type: ignore[attr-defined]
            await s.executemany(insert_sql(Entity.CRON_JOB), rows)


@dataclass
class Fires:
    """What the reader saw: per fire second the lateness of each fire, and duplicates."""

    late: dict[int, list[int]] = field(default_factory=lambda: defaultdict(list))
    seen: set[int] = field(default_factory=set)
    duplicates: int = 0
    by_partition: Counter[int] = field(default_factory=Counter)


async def read_fires(redis: aioredis.Redis, stream: str, stop: asyncio.Event, out: Fires,
                     partitions: int = 0) -> None:
    last = "0-0"
    while not stop.is_set():
        try:
            reply: Any = await redis.xread({stream: last}, count=5000, block=200)
        except aioredis.RedisError:  # Redis busy past the socket timeout: read again
            continue
        for _key, entries in reply or []:
            for entry_id, fields in entries:
                tid = fields[b"task"].decode()
                fire = ulid_ms(tid)
                out.late[fire // 1000].append(int(entry_id.split(b"-")[0]) - fire)
                h = hash(tid)
                if h in out.seen:
                    out.duplicates += 1
                out.seen.add(h)
                if partitions:
                    origin = json.loads(fields[b"body"])["originId"]
                    out.by_partition[partition_of(origin, partitions)] += 1
            last = entries[-1][0].decode()
            await redis.xtrim(stream, minid=last)


def config(workdir: Path, url: str, name: str, lease: float) -> list[str]:
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump({
        "secret": "bench-only-secret-0123456789abcdef",
        "redis": {"url": url, "namespace": NS, "queue_max_len": 100_000_000},
        "store": {"url": f"sqlite:///{workdir / 'store.db'}"}, "beat": {"lease_seconds": lease},
        "log": {"level": "WARNING", "format": "json"}}))
    return [BEAT, "--config", str(path)]


def start(cmd: list[str], workdir: Path, name: str) -> subprocess.Popen[bytes]:
    log = (workdir / f"{name}.log").open("wb")
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "FLUXFUNC_STATE_DIR": str(workdir)})


async def heartbeats(redis: aioredis.Redis) -> dict[int, dict[str, Any]]:
    """pid → heartbeat of every live Beat (the heartbeat index: no SCAN over millions of guards)."""
    return {int(s["pid"]): s for s in await list_services(redis, Keys(NS)) if s.get("role") == "beat"}


def p99(values: list[int]) -> float:
    ordered = sorted(values)
    return float(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]) if ordered else 0.0


@dataclass
class Overload:
    high: int
    low: int
    fires_per_s: float
    peak_rss_mb: float
    reported_lag_max_ms: int
    behind_lines: int
    shed: int
    duplicates: int
    late_p99_ms: float
    late_max_ms: float
    recovered_after_s: float | None  # drop → per-second p99 < 100 ms from then on
    beat_cpu_pct: float  # during the overload window
    redis_cpu_pct: float
    load_avg_1m: float


async def overload(args: argparse.Namespace, workdir: Path) -> Overload:
    with LocalRedis(workdir / "redis") as local:
        # the window starts once seeding and the Beat's start are over (--startup)
        drop = time.time() + args.startup + args.seconds
        await seed(f"sqlite:///{workdir / 'store.db'}", args.high,
                   {i: drop for i in range(args.low, args.high)})
        _say(f"seeded; window in {drop - args.seconds - time.time():.0f} s")
        redis = aioredis.Redis.from_url(local.url, socket_timeout=60)
        fires, stop = Fires(), asyncio.Event()
        reader = asyncio.create_task(read_fires(redis, Keys(NS).queue("cron"), stop, fires))
        proc = start(config(workdir, local.url, "beat", args.lease), workdir, "beat")
        ps = psutil.Process(proc.pid)
        rss, lag, shed = 0, 0, 0
        cpu: dict[str, float] = {}
        try:
            t0 = drop - args.seconds
            while time.time() < drop + args.after:
                rss = max(rss, ps.memory_info().rss)
                for mark, at in (("start", t0), ("end", drop)):
                    if mark not in cpu and time.time() >= at:
                        info = await redis.info("cpu")
                        redis_s = float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
                        cpu.update({mark: time.time(), f"{mark}-beat": sum(ps.cpu_times()[:2]),
                                    f"{mark}-redis": redis_s})
                for body in (await heartbeats(redis)).values():
                    lag, shed = max(lag, int(body.get("lagMs") or 0)), int(body.get("shed") or 0)
                await asyncio.sleep(1)
            load = os.getloadavg()[0]
        finally:
            _say("stopping the Beat")
            proc.terminate()
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                _say("the Beat did not stop within 60 s of SIGTERM: killed")
                proc.kill()
                proc.wait()
            _say("stopped")
            stop.set()
            await reader
            await redis.aclose()
    behind = (workdir / "beat.log").read_text().count("beat behind schedule")
    window = [s for s in fires.late if t0 <= s < drop]
    under = [x for s in window for x in fires.late[s]]
    after = [s for s in range(int(drop) + 1, int(drop + args.after) - 1)]  # whole seconds
    series = [round(p99(fires.late.get(s, []))) for s in after]
    recovered = next((s - drop for i, s in enumerate(after) if all(p < 100 for p in series[i:])), None)
    _say(f"p99 lateness (ms) of each second after the drop: {series}")
    return Overload(args.high, args.low, round(len(under) / max(1, len(window)), 1), round(rss / 2**20, 1),
                    lag, behind, shed, fires.duplicates, p99(under), float(max(under, default=0)),
                    recovered, _pct(cpu, "beat"), _pct(cpu, "redis"), round(load, 2))


def _say(text: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} {text}", file=sys.stderr, flush=True)


def _pct(cpu: dict[str, float], who: str) -> float:
    span = cpu.get("end", 0) - cpu.get("start", 0)
    return round(100 * (cpu.get(f"end-{who}", 0) - cpu.get(f"start-{who}", 0)) / span, 1) if span > 0 else 0.0


@dataclass
class Partitions:
    jobs: int
    fires_per_s: float
    jobs_per_beat: list[int]
    takeover_s: float
    gap_latest_ms: float
    duplicates: int
    missing: int
    late_p99_ms: float
    load_avg_1m: float


async def partitions(args: argparse.Namespace, workdir: Path) -> Partitions:
    n = 16
    with LocalRedis(workdir / "redis") as local:
        await seed(f"sqlite:///{workdir / 'store.db'}", args.split, {})
        redis = aioredis.Redis.from_url(local.url, socket_timeout=60)
        fires, stop = Fires(), asyncio.Event()
        reader = asyncio.create_task(read_fires(redis, Keys(NS).queue("cron"), stop, fires, n))
        procs = [start(config(workdir, local.url, name, args.lease), workdir, name) for name in ("a", "b")]
        try:
            while True:  # both hold their share
                beats = await heartbeats(redis)
                if [len(beats.get(p.pid, {}).get("partitions", [])) for p in procs] == [n // 2] * 2:
                    break
                await asyncio.sleep(0.5)
            t0 = time.time()
            await asyncio.sleep(args.seconds / 2)
            t1 = time.time()
            ids = [f"cron-b{i:05d}" for i in range(args.split)]
            split = [sum(partition_of(c, n) in beats[p.pid]["partitions"] for c in ids) for p in procs]
            victim = next(p for p in procs if not beats[p.pid]["leader"])
            victim.kill()
            killed = time.time()
            keys = [Keys(NS).beat_partition(p) for p in range(n)]
            while len(set(await redis.mget(keys))) != 1 or None in await redis.mget(keys):  # noqa: ASYNC110
                await asyncio.sleep(0.05)  # polling another process's leases
            took = time.time() - killed
            await asyncio.sleep(5)
            t2 = time.time()
            load = os.getloadavg()[0]
        finally:
            for p in procs:
                if p.poll() is None:
                    p.terminate()
                    try:
                        p.wait(60)
                    except subprocess.TimeoutExpired:
                        p.kill()
                        p.wait()
            stop.set()
            await reader
            await redis.aclose()
    lo, hi = int(t0) + 1, int(t2) - 1
    window = [x for s in range(lo, hi + 1) for x in fires.late.get(s, [])]
    expected = args.split * (hi - lo + 1)
    gap = [x for s in fires.late if s >= int(killed) for x in fires.late[s]]
    steady = [len(fires.late.get(s, [])) for s in range(int(t0) + 1, int(t1))]
    return Partitions(args.split, round(statistics.mean(steady or [0]), 1), split, round(took, 2),
                      float(max(gap, default=0)), fires.duplicates, max(0, expected - len(window)),
                      p99(window), round(load, 2))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("scenario", nargs="?", default="all", choices=["overload", "partitions", "all"])
    parser.add_argument("--high", type=int, default=50_000)
    parser.add_argument("--low", type=int, default=5_000)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--after", type=float, default=20)
    parser.add_argument("--startup", type=float, default=55,
                        help="seconds allowed for seeding and the Beat's start before the window")
    parser.add_argument("--split", type=int, default=10_000)
    parser.add_argument("--lease", type=float, default=5)
    parser.add_argument("--workdir", help="keep the stores and the Beats' logs in this (empty) directory")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results: list[Any] = []
    for scenario in ("overload", "partitions"):
        if args.scenario in (scenario, "all"):
            run = overload if scenario == "overload" else partitions
            if args.workdir:  # kept: the Beats' logs stay there
                (workdir := Path(args.workdir) / scenario).mkdir(parents=True, exist_ok=True)
                result = await run(args, workdir)
            else:
                with tempfile.TemporaryDirectory(prefix=f"fluxfunc-bench-beat-{scenario}-") as tmp:
                    result = await run(args, Path(tmp))
            results.append(result)
            if not args.json:
                print(scenario, asdict(result), flush=True)
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=2))


if __name__ == "__main__":
    asyncio.run(main())
