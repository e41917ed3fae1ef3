"""Benchmark of the Beat: N cron jobs on ``* * * * * *``, fired by a real ``fluxfunc-beat``.

Measures, over a window after a warm-up:
  - fires/s sustained (and how many (job, second) fires are missing or duplicated);
  - lateness = enqueue time (the stream entry id, Redis time) − scheduled fire time,
    p50 / p90 / p99 / max;
  - CPU used by the Beat process and by Redis during the window;
  - with ``--takeover``: a standby Beat is started after the window and the leader SIGKILLed;
    the time until the standby leads (a new epoch) and the latest fire of that gap.

Starts its own private redis-server on a free port and a SQLite store in a temp directory
(``--store mysql://…`` for MariaDB: the database must exist; it is reused, and a later run
with fewer jobs than an earlier one fires them all), seeds the jobs,
starts ``fluxfunc-beat --config …`` and reads the cron stream itself, deleting what it has
read so memory stays flat. Nothing else runs (no worker): this measures the Beat alone. The
reader reads once a second, half a second after each moment: Redis runs one command at a
time, so a reader in the moment puts its own work (replies of thousands of entries, trims)
between the Beat's calls. ``--read-during`` reads as entries arrive instead, as busy workers
would, and shows what that costs the lateness.

    .venv/bin/python bench/beat.py [--jobs 1000,10000] [--seconds 30] [--warmup 8]
                                   [--store URL] [--profile beat.prof] [--takeover]
                                   [--read-during] [--json]

``--profile`` runs the Beat under cProfile (``python -m pstats beat.prof`` to read it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import psutil
import redis.asyncio as aioredis
import yaml

from fluxfunc_beat.leader import current_leader
from fluxfunc_common.keys import Keys
from fluxfunc_common.proc.localredis import LocalRedis
from fluxfunc_common.settings import StoreSettings
from fluxfunc_common.store import Entity, open_store

BEAT = str(Path(sys.executable).parent / "fluxfunc-beat")
READ_PHASE_MS = 500  # the reader reads this long after each second's moment (see read_fires)
CROCKFORD = {c: i for i, c in enumerate("0123456789ABCDEFGHJKMNPQRSTVWXYZ")}
FUNC = {"id": "bench__cron.tick", "scriptId": "bench__cron", "scriptSetId": "bench", "name": "tick",
        "title": "Tick", "description": "", "definition": "tick()", "args": [], "kwargsSpec": {},
        "varKwargs": True, "isAsync": False,
        "extraConfig": {"timeout": 30, "expires": None, "cacheResult": None, "queue": None,
                        "fixedCronExpr": None, "retries": 0},
        "category": None, "tags": []}


@dataclass
class Result:
    jobs: int
    window_s: float
    fires: int
    expected: int
    missing: int
    duplicates: int
    fires_per_s: float
    late_p50_ms: float
    late_p90_ms: float
    late_p99_ms: float
    late_max_ms: float
    beat_cpu_pct: float
    redis_cpu_pct: float
    load_avg_1m: float
    beat_rss_mb: float = 0.0  # the Beat's resident memory at the end of the window
    redis_used_mb: float = 0.0  # Redis used_memory then (the fires read are deleted)
    first_p50_ms: float = 0.0  # per second, the lateness of its first fire: the median over seconds
    script_us_per_fire: float = 0.0  # Redis time inside the fire script (commandstats), per fire
    takeover_ms: float | None = None  # SIGKILL of the leader → the standby leads
    takeover_late_max_ms: float | None = None  # the latest fire scheduled after the SIGKILL


def ulid_ms(task_id: str) -> int:
    """The time part (ms) of a ``task-<ULID>`` id: a cron fire's scheduled time."""
    value = 0
    for ch in task_id[5:15]:
        value = value * 32 + CROCKFORD[ch]
    return value


async def seed(store_url: str, jobs: int) -> None:
    async with open_store(StoreSettings(url=store_url)) as store:
        if await store.find(Entity.FUNC, FUNC["id"]) is None:
            await store.create(Entity.FUNC, FUNC)
        have = {j["id"] for j in (await store.list(Entity.CRON_JOB, limit=1_000_000)).items}
        for i in range(jobs):
            if f"cron-b{i:05d}" in have:
                continue
            await store.create(Entity.CRON_JOB, {
                "id": f"cron-b{i:05d}", "funcId": FUNC["id"], "cronExpr": "* * * * * *", "kwargs": {},
                "timezone": None, "misfirePolicy": "fireOnce", "overlapPolicy": "allow",
                "expireTime": None, "isDisabled": False})


async def read_fires(redis: aioredis.Redis, stream: str, stop: asyncio.Event,
                     out: list[tuple[int, int, str]], *, during: bool = False) -> None:
    """Collect (fire ms, enqueue ms, task id) and delete what was read: once a second, half a
    second after the moment (Redis is single-threaded: a reader in the moment adds its own
    work between the Beat's calls), or with ``during`` as soon as entries arrive."""
    last = "0-0"
    while not stop.is_set():
        if not during:
            await asyncio.sleep(((READ_PHASE_MS - time.time() * 1000) % 1000) / 1000)
        reply: Any = await redis.xread({stream: last}, count=100_000, block=200)
        for _key, entries in reply or []:
            for entry_id, fields in entries:
                tid = fields[b"task"].decode()
                out.append((ulid_ms(tid), int(entry_id.split(b"-")[0]), tid))
            last = entries[-1][0].decode()
            await redis.xtrim(stream, minid=last)


def start_beat(cmd: list[str], log: Any, env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)


def _cpu(proc: psutil.Process) -> float:
    t = proc.cpu_times()
    return float(t.user + t.system)


async def redis_cpu(redis: aioredis.Redis) -> float:
    info = await redis.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def script_usec(redis: aioredis.Redis) -> float:
    """Microseconds Redis has spent in EVALSHA calls (the fire script, mostly)."""
    stats = await redis.info("commandstats")
    return float(stats.get("cmdstat_evalsha", {}).get("usec", 0))


async def _beating(redis: aioredis.Redis, keys: Keys, pid: int) -> bool:
    async for key in redis.scan_iter(match=keys.svc_pattern("beat")):
        raw = await redis.get(key)
        if raw and json.loads(raw).get("pid") == pid:
            return True
    return False


async def takeover(cmd: list[str], log: Any, env: dict[str, str], redis: aioredis.Redis, keys: Keys,
                   leader: subprocess.Popen[bytes],
                   procs: list[subprocess.Popen[bytes]]) -> tuple[int, float]:
    """Start a standby Beat; once it beats, SIGKILL the leader. (kill time ms, ms until the
    standby leads: a new epoch)."""
    procs.append(start_beat(cmd, log, env))
    while not await _beating(redis, keys, procs[-1].pid):  # noqa: ASYNC110 (polling another process)
        await asyncio.sleep(0.05)
    _, epoch = await current_leader(redis, keys)
    leader.kill()
    killed = time.time()
    while True:
        token, now_epoch = await current_leader(redis, keys)
        if token is not None and now_epoch > epoch:
            return int(killed * 1000), round((time.time() - killed) * 1000, 1)
        await asyncio.sleep(0.01)


async def run_one(jobs: int, seconds: float, warmup: float, store_url: str | None, profile: str | None,
                  workdir: Path, with_takeover: bool = False, read_during: bool = False) -> Result:
    with LocalRedis(workdir / f"redis-{jobs}") as local:
        url = store_url or f"sqlite:///{workdir / f'store-{jobs}.db'}"
        await seed(url, jobs)
        ns = f"bench{jobs}"
        config = workdir / f"beat-{jobs}.yaml"
        config.write_text(yaml.safe_dump({
            "secret": "bench-only-secret-0123456789abcdef",
            "redis": {"url": local.url, "namespace": ns, "queue_max_len": 10_000_000},
            "store": {"url": url}, "log": {"level": "WARNING", "format": "json"}}))
        cmd = [BEAT, "--config", str(config)]
        if profile:
            cmd = [sys.executable, "-m", "cProfile", "-o", profile, "-m", "fluxfunc_beat",
                   "--config", str(config)]
        log = (workdir / f"beat-{jobs}.log").open("wb")
        env = {**os.environ, "FLUXFUNC_STATE_DIR": str(workdir)}
        redis = aioredis.Redis.from_url(local.url)
        rows: list[tuple[int, int, str]] = []
        stop = asyncio.Event()
        reader = asyncio.create_task(read_fires(redis, Keys(ns).queue("cron"), stop, rows,
                                                during=read_during))
        proc = start_beat(cmd, log, env)
        procs = [proc]
        killed_ms, took_ms = 0, None
        try:
            ps = psutil.Process(proc.pid)
            await asyncio.sleep(warmup)
            t0, beat0, redis0 = time.time(), _cpu(ps), await redis_cpu(redis)
            script0 = await script_usec(redis)
            await asyncio.sleep(seconds)
            t1, beat1, redis1 = time.time(), _cpu(ps), await redis_cpu(redis)
            script1 = await script_usec(redis)
            load = os.getloadavg()[0]
            rss_mb = ps.memory_info().rss / 1e6
            used_mb = int((await redis.info("memory"))["used_memory"]) / 1e6
            if with_takeover:
                killed_ms, took_ms = await takeover(cmd, log, env, redis, Keys(ns), proc, procs)
                await asyncio.sleep(3)  # the fires of the gap, and a few after
        finally:
            for each in procs:
                each.send_signal(signal.SIGTERM)
                try:
                    each.wait(60)
                except subprocess.TimeoutExpired:
                    each.kill()
                    each.wait()
            await asyncio.sleep(0.5)
            stop.set()
            await reader
            await redis.aclose()
            log.close()
    lo, hi = int(t0 * 1000) // 1000 * 1000 + 1000, int(t1 * 1000) // 1000 * 1000
    window = [r for r in rows if lo <= r[0] <= hi]
    tids = [r[2] for r in window]
    late = sorted(enq - fire for fire, enq, _ in window) or [0]
    expected = jobs * ((hi - lo) // 1000 + 1)
    span = t1 - t0
    gap = [enq - fire for fire, enq, _ in rows if fire > killed_ms] if with_takeover else []
    first: dict[int, int] = {}
    for fire, enq, _ in window:
        first[fire] = min(first.get(fire, enq - fire), enq - fire)
    return Result(
        jobs=jobs, window_s=round(span, 1), fires=len(window), expected=expected,
        missing=expected - len(set(tids)), duplicates=len(tids) - len(set(tids)),
        fires_per_s=round(len(window) / ((hi - lo) / 1000 + 1), 1),
        late_p50_ms=statistics.median(late), late_p90_ms=late[int(len(late) * 0.9)],
        late_p99_ms=late[min(len(late) - 1, int(len(late) * 0.99))], late_max_ms=late[-1],
        beat_cpu_pct=round(100 * (beat1 - beat0) / span, 1),
        redis_cpu_pct=round(100 * (redis1 - redis0) / span, 1),
        load_avg_1m=round(load, 2), beat_rss_mb=round(rss_mb, 1), redis_used_mb=round(used_mb, 1),
        first_p50_ms=statistics.median(first.values()) if first else 0.0,
        script_us_per_fire=round((script1 - script0) / max(1, len(window)), 1),
        takeover_ms=took_ms, takeover_late_max_ms=max(gap, default=None))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", default="1000,10000", help="comma-separated job counts")
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--warmup", type=float, default=8, help="seconds ignored at the start")
    parser.add_argument("--store", help="store URL (default: a SQLite file in a temp dir)")
    parser.add_argument("--profile", help="run the Beat under cProfile, writing this file")
    parser.add_argument("--takeover", action="store_true",
                        help="after the window, SIGKILL the leader with a standby running: takeover time")
    parser.add_argument("--read-during", action="store_true",
                        help="read the fires as they arrive, in the moment (default: half a second after it)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="fluxfunc-bench-beat-") as tmp:
        for jobs in (int(j) for j in args.jobs.split(",")):
            result = await run_one(jobs, args.seconds, args.warmup, args.store, args.profile, Path(tmp),
                                   args.takeover, args.read_during)
            results.append(result)
            if not args.json:
                print(f"jobs={result.jobs:>6}  fires/s={result.fires_per_s:>8.1f}  missing={result.missing}"
                      f"  dup={result.duplicates}  late p50={result.late_p50_ms:.0f}ms"
                      f" p90={result.late_p90_ms:.0f}ms p99={result.late_p99_ms:.0f}ms"
                      f" max={result.late_max_ms:.0f}ms first={result.first_p50_ms:.0f}ms"
                      f"  beat cpu={result.beat_cpu_pct}%  script={result.script_us_per_fire}us/fire"
                      f"  redis cpu={result.redis_cpu_pct}%  beat rss={result.beat_rss_mb}MB"
                      f"  redis used={result.redis_used_mb}MB  load={result.load_avg_1m}"
                      + (f"  takeover={result.takeover_ms:.0f}ms"
                         f" (latest fire {result.takeover_late_max_ms}ms)"
                         if result.takeover_ms is not None else ""), flush=True)
    if args.json:
        print(json.dumps([asdict(r) for r in results], indent=2))


if __name__ == "__main__":
    asyncio.run(main())
