"""Fallback load generator (when ``wrk`` is not on PATH): closed-loop HTTP POST callers.

    python loadgen.py URL --connections 64 --seconds 15 --body '{"x": 1}'

Each of ``--connections`` callers sends the body, waits for the answer, and sends again, over
keep-alive connections (like ``wrk -c``). Prints one JSON line with the same fields as
``wrk.lua``'s summary: requests, duration_us, error counts, latency percentiles in µs. It
costs more CPU per request than wrk, so on a small machine it lowers every system's figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

import aiohttp


def percentile(sorted_values: list[float], p: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(p / 100 * len(sorted_values)) - 1))
    return sorted_values[index]


async def run(url: str, connections: int, seconds: float, body: bytes) -> dict[str, float]:
    latencies: list[float] = []
    errors = {"connect": 0, "read": 0, "write": 0, "status": 0, "timeout": 0}
    headers = {"Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=connections)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        started = time.perf_counter()
        deadline = started + seconds

        async def caller() -> None:
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                try:
                    async with session.post(url, data=body, headers=headers) as resp:
                        await resp.read()
                        if resp.status >= 400:
                            errors["status"] += 1
                except TimeoutError:
                    errors["timeout"] += 1
                    continue
                except aiohttp.ClientConnectionError:
                    errors["read"] += 1
                    continue
                latencies.append(time.perf_counter() - t0)

        await asyncio.gather(*(caller() for _ in range(connections)))
        duration = time.perf_counter() - started
    latencies.sort()
    us = [v * 1e6 for v in latencies]
    return {
        "requests": len(latencies) + errors["status"],
        "duration_us": int(duration * 1e6),
        **errors,
        "p50_us": int(percentile(us, 50)),
        "p90_us": int(percentile(us, 90)),
        "p99_us": int(percentile(us, 99)),
        "max_us": int(us[-1]) if us else 0,
        "mean_us": round(sum(us) / len(us), 1) if us else 0.0,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("url")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--body", default="{}")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    out = asyncio.run(run(args.url, args.connections, args.seconds, args.body.encode()))
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
