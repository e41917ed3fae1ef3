"""Benchmark of the stream protocol alone (no HTTP, no function execution).

Measures, in one process:
  1. enqueue throughput: ``StreamProtocol.enqueue_many`` in pipelined batches;
  2. consume + complete cycles/s: ``read`` (COUNT batch) then ``complete_many`` (one pipeline
     of owner-checked ``complete`` scripts: result SET, throughput counter, XACK + XDEL).

Starts its own private redis-server (from PATH) on a free port unless ``--redis-url`` is
given; it only ever touches keys under a fresh random namespace, and deletes them afterwards.

    .venv/bin/python bench/protocol.py [--tasks 50000] [--batch 500] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import time

import redis.asyncio as aioredis

from fluxfunc_common import ids
from fluxfunc_common.envelope import Origin, TaskEnvelope, TaskResult, TaskStatus
from fluxfunc_common.keys import Keys
from fluxfunc_common.proc.localredis import private_redis
from fluxfunc_common.streams import StreamProtocol


def envelopes(n: int) -> list[TaskEnvelope]:
    now = time.time()
    return [TaskEnvelope(id=ids.task_id(), func_id="demo__bench.noop", kwargs={"x": i, "y": "abc"},
                         origin=Origin.ASYNC_API, trigger_time=now) for i in range(n)]


async def bench_enqueue(proto: StreamProtocol, envs: list[TaskEnvelope], batch: int) -> float:
    started = time.perf_counter()
    for i in range(0, len(envs), batch):
        await proto.enqueue_many(envs[i:i + batch], max_len=10_000_000)
    return len(envs) / (time.perf_counter() - started)


async def bench_consume(proto: StreamProtocol, total: int, batch: int) -> float:
    done = 0
    started = time.perf_counter()
    while done < total:
        got = await proto.read("bench-consumer", ["default"], batch, block_ms=0)
        if not got:
            break
        items = [(d, TaskResult.for_envelope(d.envelope, TaskStatus.SUCCESS, result=None), 60_000)
                 for d in got]
        acked = await proto.complete_many("bench-consumer", items)
        done += sum(acked)
    elapsed = time.perf_counter() - started
    if done != total:
        raise SystemExit(f"only {done} of {total} tasks completed")
    return done / elapsed


async def cleanup(client: aioredis.Redis, keys: Keys) -> None:
    async for key in client.scan_iter(f"{keys.ns}:*", count=1000):
        await client.unlink(key)


async def run(url: str, tasks: int, batch: int) -> dict[str, float | int]:
    client = aioredis.Redis.from_url(url)
    keys = Keys("bench" + secrets.token_hex(4))
    proto = StreamProtocol(client, keys)
    try:
        await proto.ensure_groups(["default"])
        envs = envelopes(tasks)
        enq = await bench_enqueue(proto, envs, batch)
        cyc = await bench_consume(proto, tasks, batch)
    finally:
        await cleanup(client, keys)
        await client.aclose()
    return {"tasks": tasks, "batch": batch, "enqueue_per_s": round(enq), "complete_cycles_per_s": round(cyc)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--redis-url", help="use this Redis instead of a private redis-server")
    parser.add_argument("--tasks", type=int, default=50_000)
    parser.add_argument("--batch", type=int, default=500, help="enqueue pipeline / read COUNT size")
    parser.add_argument("--uvloop", action="store_true", help="run on uvloop (as the services do)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    opts = parser.parse_args()
    if opts.uvloop:
        import uvloop

        uvloop.install()
    if opts.redis_url:
        result = asyncio.run(run(opts.redis_url, opts.tasks, opts.batch))
    else:
        with private_redis(prefix="fluxfunc-bench-") as server:
            result = asyncio.run(run(server.url, opts.tasks, opts.batch))
    if opts.json:
        print(json.dumps(result))
    else:
        print(f"enqueue (enqueue_many, batch {opts.batch}): {result['enqueue_per_s']:>8,} tasks/s")
        print(f"read + complete_many (COUNT {opts.batch}):  {result['complete_cycles_per_s']:>8,} cycles/s")


if __name__ == "__main__":
    main()
