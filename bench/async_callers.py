"""Benchmark of ``async def`` functions sharing children: N concurrent sync-HTTP callers of an
``async def`` that sleeps 1 s, through ONE ``fluxfunc-server`` and ONE ``fluxfunc-worker``
(``--concurrency 4``: four children, each running up to ``worker.async_per_child`` async
tasks at once).

Every caller has its own keep-alive connection, opened before the measurement (a
``GET /healthz`` each); then all of them call ``POST /api/v1/sync/{id}`` at the same moment and
each call's latency (request sent → answer read) is measured. Reported per N: calls that
succeeded (HTTP 200 with the function's value), p50, p99 and max latency, the CPU seconds
the server, the worker (children included) and the callers used, and from the task records
where the time went (how long the server took to enqueue them all, p99 wait in the queue,
p99 run). The callers run in ``--client-procs`` processes, each a hand-written HTTP/1.1
client on raw uvloop streams (as ``bench/peers/burst.py``): the load generator shares the
machine with what it measures, so it must cost little CPU.

Everything is started fresh: a private redis-server (from PATH) on a free port, a SQLite store
in a temp dir, the two services as real processes, the admin token from
``fluxfunc admin create-token``, the script published and the entry point created over HTTP.
The machine's load average is reported with the figures (a busy 2-core machine is noisy).

    .venv/bin/python bench/async_callers.py [--callers 1000,5000] [--async-per-child 1500]
                                            [--client-procs 2] [--json] [--keep-logs]

Targets (issue 13): 5,000 callers, all succeed, p99 ≤ 2 s; 1,000 callers, p99 ≤ 1.3 s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
from httpload import cpu_seconds, http, services, wait_served

CODE = """
import asyncio


@DFF.API("Sleep one second", timeout=60)
async def nap(i=0):
    await asyncio.sleep(1)
    return i
"""
TARGETS = {1000: 1.3, 5000: 2.0}  # p99 seconds
CONNECT_BATCH = 500  # connections opened at once: the accept queue never overflows into SYN retries
ANSWER_SECONDS = 120.0


@contextmanager
def deployment(workdir: Path, async_per_child: int) -> Iterator[tuple[str, str, dict[str, int]]]:
    """Redis + server + worker; yields (base URL, sync entry id, pid by service)."""
    with services(workdir, server={},
                  worker={"concurrency": 4, "async_per_child": async_per_child}) as deployed:
        base, token = deployed.base, deployed.token
        http("POST", f"{base}/api/v1/scripts", {"id": "bench__aio", "code": CODE}, token)
        http("POST", f"{base}/api/v1/scripts/bench__aio/publish", {}, token)
        entry = http("POST", f"{base}/api/v1/sync-apis", {"funcId": "bench__aio.nap"}, token)["data"]["id"]
        wait_served(f"{base}/api/v1/sync/{entry}", {"kwargs": {"i": 0}}, workdir / "worker.log")
        yield base, entry, deployed.pids


# --- one client process: --callers-proc URL N ------------------------------------------------------
Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def _answer(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """The status and body of one HTTP/1.1 answer (Content-Length framing)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    length = next((int(line.split(":", 1)[1]) for line in lines[1:]
                   if line.lower().startswith("content-length:")), 0)
    return int(lines[0].split(" ", 2)[1]), await reader.readexactly(length)


async def _connect(host: str, port: int, hello: bytes) -> Conn:
    """A keep-alive connection the server has answered on once (``GET /healthz``)."""
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(hello)
    await _answer(reader)
    return reader, writer


def _value(body: bytes) -> Any:
    """The function's value in a sync answer (bare, or wrapped in ``data``)."""
    answer = orjson.loads(body)
    return answer.get("data", answer) if isinstance(answer, dict) else answer


async def _call(conn: Conn, request: bytes, i: int) -> tuple[float, bool]:
    reader, writer = conn
    started = time.monotonic()
    writer.write(request)
    try:
        status, body = await asyncio.wait_for(_answer(reader), ANSWER_SECONDS)
        ok = status == 200 and _value(body) == i
    except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError):
        ok = False
    return time.monotonic() - started, ok


async def _callers(url: str, n: int) -> None:
    """Open ``n`` connections, say ready, wait for the go on stdin, make one call on each at
    once; print the (latency, ok) of each call, then the CPU seconds the calls cost."""
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    hello = f"GET /healthz HTTP/1.1\r\nHost: {parts.netloc}\r\n\r\n".encode()
    conns: list[Conn] = []
    for start in range(0, n, CONNECT_BATCH):
        conns += await asyncio.gather(*(_connect(host, port, hello)
                                        for _ in range(min(CONNECT_BATCH, n - start))))
    head = f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: application/json\r\n"
    requests = []
    for i in range(1, n + 1):
        body = b'{"kwargs":{"i":%d}}' % i
        requests.append(f"{head}Content-Length: {len(body)}\r\n\r\n".encode() + body)
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)  # the go
    before = os.times()
    calls = zip(conns, requests, strict=True)
    results = await asyncio.gather(*(_call(conn, request, i) for i, (conn, request) in enumerate(calls, 1)))
    after = os.times()
    for _, writer in conns:
        writer.close()
    print(json.dumps(results), flush=True)
    print(json.dumps(after.user + after.system - before.user - before.system), flush=True)


def burst(url: str, callers: int, procs: int) -> tuple[list[tuple[float, bool]], float]:
    """``callers`` concurrent calls from ``procs`` client processes, all sent at once; their
    (latency, ok) and the CPU seconds the client processes spent on them."""
    share = [callers // procs + (1 if i < callers % procs else 0) for i in range(procs)]
    clients = [subprocess.Popen([sys.executable, __file__, "--callers-proc", url, str(n)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for n in share]
    try:
        for c in clients:
            assert c.stdout is not None
            if c.stdout.readline().strip() != "ready":
                sys.exit("a client process failed to connect")
        for c in clients:  # go
            assert c.stdin is not None
            c.stdin.write("go\n")
            c.stdin.flush()
        out: list[tuple[float, bool]] = []
        cpu = 0.0
        for c in clients:
            assert c.stdout is not None
            out += [tuple(r) for r in json.loads(c.stdout.readline())]
            cpu += float(json.loads(c.stdout.readline()))
        return out, cpu
    finally:
        for c in clients:
            if c.poll() is None:
                c.kill()
            c.wait()


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def breakdown(store: Path, since: float) -> dict[str, float]:
    """From the task records of the calls made after ``since`` (epoch s): how long the Server
    took to enqueue them all, and p99 of the wait in the queue and of the run itself."""
    time.sleep(2)  # records are written in batches
    with sqlite3.connect(store) as db:
        rows = db.execute("SELECT trigger_time, start_time, end_time FROM task_records "
                          "WHERE trigger_time >= ? AND start_time IS NOT NULL", (since,)).fetchall()
    if not rows:
        return {}
    triggers = [r[0] for r in rows]
    return {"enqueue_spread_s": round(max(triggers) - min(triggers), 3),
            "queue_wait_p99_s": round(quantile([r[1] - r[0] for r in rows], 0.99), 3),
            "run_p99_s": round(quantile([r[2] - r[1] for r in rows], 0.99), 3)}


def measure(base: str, entry: str, pids: dict[str, int], callers: int, procs: int,
            store: Path) -> dict[str, Any]:
    before = {role: cpu_seconds(pid) for role, pid in pids.items()}
    load = os.getloadavg()[0]
    since = time.time()
    started = time.monotonic()
    results, client_cpu = burst(f"{base}/api/v1/sync/{entry}", callers, procs)
    wall = time.monotonic() - started
    cpu = {f"{role}_cpu_s": round(cpu_seconds(pid) - before[role], 2) for role, pid in pids.items()}
    cpu["client_cpu_s"] = round(client_cpu, 2)
    latencies = [t for t, ok in results if ok]
    return {"callers": callers, "succeeded": len(latencies), "failed": len(results) - len(latencies),
            "p50_s": round(quantile(latencies, 0.5), 3), "p99_s": round(quantile(latencies, 0.99), 3),
            "max_s": round(max(latencies, default=float("nan")), 3), "wall_s": round(wall, 2),
            "loadavg": round(load, 2), **cpu, **breakdown(store, since)}


def main() -> int:
    if sys.argv[1:2] == ["--callers-proc"]:
        import uvloop

        uvloop.run(_callers(sys.argv[2], int(sys.argv[3])))
        return 0
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--callers", default="1000,5000", help="comma-separated caller counts")
    parser.add_argument("--async-per-child", type=int, default=1500,
                        help="worker.async_per_child of the worker (4 children)")
    parser.add_argument("--client-procs", type=int, default=2)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--keep-logs", action="store_true", help="keep the temp dir with the logs")
    args = parser.parse_args()
    counts = [int(c) for c in args.callers.split(",") if c.strip()]
    workdir = Path(tempfile.mkdtemp(prefix="fluxfunc-bench-aio-"))
    report: dict[str, Any] = {"async_per_child": args.async_per_child, "children": 4, "cpus": os.cpu_count(),
                              "client_procs": args.client_procs, "runs": []}
    try:
        with deployment(workdir, args.async_per_child) as (base, entry, pids):
            for n in counts:
                report["runs"].append(measure(base, entry, pids, n, args.client_procs,
                                              workdir / "store.db"))
    finally:
        if args.keep_logs:
            report["logs"] = str(workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"one worker, 4 children, async_per_child {args.async_per_child}, {report['cpus']} CPUs, "
          f"{args.client_procs} client processes")
    for r in report["runs"]:
        target = TARGETS.get(r["callers"])
        verdict = "" if target is None else (
            " OK" if r["failed"] == 0 and r["p99_s"] <= target else f" (target p99 ≤ {target} s)")
        print(f"{r['callers']:6} callers: {r['succeeded']} ok, {r['failed']} failed   p50 {r['p50_s']:.3f} s"
              f"   p99 {r['p99_s']:.3f} s   max {r['max_s']:.3f} s   load {r['loadavg']:.1f}   "
              f"CPU server {r['server_cpu_s']} s, worker {r['worker_cpu_s']} s, "
              f"callers {r['client_cpu_s']} s{verdict}")
        if "run_p99_s" in r:
            print(f"        server enqueued them over {r['enqueue_spread_s']:.3f} s; p99 wait in the queue "
                  f"{r['queue_wait_p99_s']:.3f} s, p99 run {r['run_p99_s']:.3f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
