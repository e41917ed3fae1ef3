"""Throughput driver: queue N no-op tasks, then wait until every result is available.

    python driver.py warmup     --system S [--calls 20] [--timeout 60]
    python driver.py throughput --system S [--tasks 5000] [--timeout 120]

Prints one JSON object on stdout. ``warmup`` waits until the system answers a call (the worker
is up and has loaded the function), then makes ``--calls`` more calls. ``throughput`` starts the
clock, queues the tasks as fast as the system's client allows (arq/saq: 100 concurrent
enqueues; Celery: a send loop; fluxfunc: ``POST /api/v1/func-many`` in batches), then watches
the result of the last task queued every 20 ms; once it is there it checks every id at once and
goes on with the stragglers. The clock stops when no result is missing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from common import load_client

POLL = 0.02


async def warmup(system: str, calls: int, limit: float) -> dict[str, Any]:
    client = load_client(system)
    await client.start()
    try:
        deadline = time.monotonic() + limit
        started = time.monotonic()
        last_error = ""
        while True:
            try:
                value = await asyncio.wait_for(client.call("warm"), min(5.0, limit))
                if value != "warm":
                    raise RuntimeError(f"unexpected result {value!r}")
                break
            except Exception as exc:  # the worker may not be up yet
                last_error = f"{type(exc).__name__}: {exc}"
                if time.monotonic() > deadline:
                    return {"ok": False, "error": last_error}
                await asyncio.sleep(0.2)
        ready_s = time.monotonic() - started
        for i in range(calls):
            value = await client.call(i)
            if value != i:
                return {"ok": False, "error": f"call {i} returned {value!r}"}
        return {"ok": True, "ready_s": round(ready_s, 3)}
    finally:
        await client.close()


async def throughput(system: str, tasks: int, limit: float) -> dict[str, Any]:
    client = load_client(system)
    await client.start()
    try:
        xs = list(range(tasks))
        started = time.perf_counter()
        ids = await client.enqueue_many(xs)
        enqueued = time.perf_counter()
        if len(ids) != tasks:
            return {"ok": False, "error": f"{len(ids)} ids for {tasks} tasks"}
        deadline = started + limit
        pending = ids
        while pending:
            if time.perf_counter() > deadline:
                break
            if await client.missing(pending[-1:]):
                await asyncio.sleep(POLL)
                continue
            pending = await client.missing(pending)
        finished = time.perf_counter()
        done = tasks - len(pending)
        elapsed = finished - started
        return {
            "ok": not pending,
            "tasks": tasks,
            "done": done,
            "enqueue_s": round(enqueued - started, 3),
            "enqueue_per_s": round(tasks / (enqueued - started), 1),
            "total_s": round(elapsed, 3),
            "per_s": round(done / elapsed, 1),
            **({"error": f"{len(pending)} results missing after {limit:.0f} s"} if pending else {}),
        }
    finally:
        await client.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=("warmup", "throughput"))
    parser.add_argument("--system", required=True)
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    if args.mode == "warmup":
        out = asyncio.run(warmup(args.system, args.calls, args.timeout))
    else:
        out = asyncio.run(throughput(args.system, args.tasks, args.timeout))
    print(json.dumps(out), flush=True)
    return 0 if out.get("ok") else 1


if __name__ == "__main__":
    sys.exit(main())
