"""Benchmark of the HTTP path: sync and async calls through ONE ``fluxfunc-server`` process and
ONE ``fluxfunc-worker`` process (``--concurrency 2``), a no-op function, 64 concurrent callers.

Scenarios:
  * ``sync``: ``POST /api/v1/sync/{id}`` with a small JSON body; each caller waits for its
    answer (the function's return value) before the next call → calls/s, p50/p99 latency;
  * ``async``: ``POST /api/v1/async/{id}``: enqueue only (``data.id``) → calls/s, p50/p99,
    while the worker keeps consuming, as it would in production (on 2 cores it takes about
    half the machine);
  * ``enqueue``: the same with the worker paused (SIGSTOP of its process group, SIGCONT
    after): what the server alone can accept.

Everything is started fresh: a private redis-server (from PATH) on a free port, a SQLite store
in a temp dir, the two services as real processes (``python -m …``), the admin token from
``fluxfunc admin create-token``, the script published and the entry points created over HTTP.
Load comes from ``wrk`` when it is installed (cheap on CPU: the machine has 2 cores shared by
Redis, the server, the worker, its children and the load generator), else from an aiohttp
client in this process. Report the machine's load with the figures.

    .venv/bin/python bench/httpload.py [--seconds 10] [--connections 64] [--scenario sync|async|all]
                                       [--client wrk|aiohttp] [--worker real|fake] [--processes 1]
                                       [--json] [--keep-logs] [--profile DIR]

``--worker fake`` replaces the worker by a consumer in this script (``--fake-consumer``) that
completes every task at once without running it: the Server's own capacity.

Targets (2-core machine): sync ≥ 1,500 calls/s with p99 ≤ 100 ms; async ≥ 5,000 calls/s.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import yaml

from fluxfunc_common.proc.localredis import free_port, private_redis

CODE = '''
@DFF.API("No-op")
def noop(i=0):
    return None
'''
BODY = '{"kwargs": {"i": 1}}'
TARGETS = {"sync": (1500, 100.0), "async": (5000, None), "enqueue": (5000, None)}


@contextmanager
def service(args: list[str], log: Path, env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """A service process, stopped with SIGTERM (then SIGKILL) on exit."""
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, *args], stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, **env}, start_new_session=True)
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def http(method: str, url: str, body: Any = None, token: str | None = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json",
                                          **({"Authorization": f"Bearer {token}"} if token else {})})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read() or b"null")


def wait_ready(base: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"server exited:\n{log.read_text()}")
        try:
            http("GET", f"{base}/healthz")
            return
        except OSError:
            time.sleep(0.1)
    sys.exit("server did not become ready")


async def _fake_consumer(config: str) -> None:
    """``--worker fake``: complete every task at once, 200 per read (no user code runs).

    It heartbeats as a worker listing its queues, as the real one does: the Server refuses a
    sync call at once (503 ``EQueueNoConsumer``) to a queue that no live worker announces, and
    an idle reader does not count instead (Redis 7.0 creates a group's consumer only when an
    ``XREADGROUP`` delivers something, so ``XINFO CONSUMERS`` does not list it)."""
    from fluxfunc_common import ids
    from fluxfunc_common.envelope import TaskResult, TaskStatus
    from fluxfunc_common.heartbeat import heartbeat
    from fluxfunc_common.redisconn import open_redis
    from fluxfunc_common.settings import load_settings
    from fluxfunc_common.streams import StreamProtocol

    settings = load_settings(config)
    queues = settings.worker.queues
    async with open_redis(settings.redis) as clients, heartbeat(
            clients.main, clients.keys, "worker", ids.instance_id(),
            extra=lambda: {"queues": queues, "consumer": "fake"}):
        streams = StreamProtocol(clients.main, clients.keys, blocking=clients.blocking)
        await streams.ensure_groups(queues)
        while True:
            got = await streams.read("fake", queues, 200, block_ms=1000)
            now = time.time()
            await streams.complete_many("fake", [
                (d, TaskResult.for_envelope(d.envelope, TaskStatus.SUCCESS, start_time=now, end_time=now),
                 60_000) for d in got])


@dataclass(frozen=True)
class Services:
    """A running bench deployment: its URL, config, admin token and the two service processes."""

    base: str
    config: Path
    token: str
    server: subprocess.Popen[bytes]
    worker: subprocess.Popen[bytes]

    @property
    def pids(self) -> dict[str, int]:
        return {"server": self.server.pid, "worker": self.worker.pid}


@contextmanager
def services(workdir: Path, *, server: dict[str, Any], worker: dict[str, Any],
             worker_args: list[str] | None = None) -> Iterator[Services]:
    """A private Redis, a SQLite store in ``workdir``, a Server (``server`` settings on top of
    host and port) and a Worker (``worker`` settings; ``worker_args`` instead of the real
    ``fluxfunc_worker``), and an admin token; both stopped on exit."""
    with ExitStack() as stack:
        redis_url = stack.enter_context(private_redis(prefix="fluxfunc-bench-redis-")).url
        port = free_port()
        config = workdir / "fluxfunc.yaml"
        config.write_text(yaml.safe_dump({
            "secret": "bench-secret-0123456789abcdef0123456789",
            "store": {"url": f"sqlite:///{workdir / 'store.db'}"},
            "server": {"host": "127.0.0.1", "port": port, **server},
            "worker": worker,
            "redis": {"url": redis_url, "namespace": "bench", "queue_max_len": 5_000_000},
            "log": {"level": "WARNING", "format": "json"},
        }))
        env = {"FLUXFUNC_STATE_DIR": str(workdir)}
        base = f"http://127.0.0.1:{port}"
        srv = stack.enter_context(service(["-m", "fluxfunc_server", "--config", str(config)],
                                          workdir / "server.log", env))
        wait_ready(base, srv, workdir / "server.log")
        wrk = stack.enter_context(service(worker_args or ["-m", "fluxfunc_worker", "--config", str(config)],
                                          workdir / "worker.log", env))
        token = subprocess.run([sys.executable, "-m", "fluxfunc_common.cli", "admin", "create-token",
                                "--config", str(config)], capture_output=True, text=True, check=True,
                               env={**os.environ, **env}).stdout.strip().splitlines()[-1]
        yield Services(base, config, token, srv, wrk)


def wait_served(url: str, body: Any, worker_log: Path) -> None:
    """Call ``url`` until the worker answers (60 s), or exit with the last error and the
    worker's log."""
    deadline = time.monotonic() + 60
    while True:
        try:
            http("POST", url, body)
            return
        except OSError as exc:
            if time.monotonic() > deadline:
                sys.exit(f"worker never answered ({_error_text(exc)}); worker log:\n{worker_log.read_text()}")
            time.sleep(0.2)


def _error_text(exc: OSError) -> str:
    """An HTTP error with its body (the server's ``reason``), else the error itself."""
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code}: {exc.read().decode(errors='replace')[:500]}"
    return repr(exc)


@contextmanager
def deployment(workdir: Path, worker: str = "real",
               processes: int = 1) -> Iterator[tuple[str, dict[str, str], dict[str, int]]]:
    """Redis + server + worker; yields (base URL, entry id by scenario, pid by service)."""
    config = workdir / "fluxfunc.yaml"
    worker_args = None if worker == "real" else [__file__, "--fake-consumer", str(config)]
    with services(workdir, server={"processes": processes}, worker={"concurrency": 2},
                  worker_args=worker_args) as deployed:
        base, token = deployed.base, deployed.token
        http("POST", f"{base}/api/v1/scripts", {"id": "bench__http", "code": CODE}, token)
        http("POST", f"{base}/api/v1/scripts/bench__http/publish", {}, token)
        ids = {"sync": http("POST", f"{base}/api/v1/sync-apis", {"funcId": "bench__http.noop"}, token),
               "async": http("POST", f"{base}/api/v1/async-apis", {"funcId": "bench__http.noop"}, token)}
        entry = {name: resp["data"]["id"] for name, resp in ids.items()}
        entry["enqueue"] = entry["async"]
        wait_served(f"{base}/api/v1/sync/{entry['sync']}", json.loads(BODY), workdir / "worker.log")
        yield base, entry, deployed.pids


# --- load generators ----------------------------------------------------------------------------

WRK_LUA = f"""
wrk.method = "POST"
wrk.body = '{BODY}'
wrk.headers["Content-Type"] = "application/json"
"""


def _ms(text: str) -> float:
    number, unit = re.match(r"([\d.]+)(\w+)", text).groups()  # type: ignore[union-attr]
    return float(number) * {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}[unit]


def run_wrk(url: str, seconds: int, connections: int, workdir: Path) -> dict[str, Any]:
    script = workdir / "post.lua"
    script.write_text(WRK_LUA)
    out = subprocess.run(["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency",
                          "-s", str(script), url], capture_output=True, text=True, check=True).stdout
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    pct = dict(re.findall(r"^\s+(\d+)%\s+(\S+)$", out, re.M))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sock = re.search(r"Socket errors: (.*)", out)
    return {"calls_per_s": rate, "p50_ms": _ms(pct["50"]), "p99_ms": _ms(pct["99"]),
            "errors": int(errors.group(1)) if errors else 0,
            "socket_errors": sock.group(1) if sock else None}


async def _aiohttp_load(url: str, seconds: int, connections: int) -> dict[str, Any]:
    import aiohttp

    latencies: list[float] = []
    errors = 0
    stop_at = time.monotonic() + seconds
    body = BODY.encode()
    headers = {"Content-Type": "application/json"}

    async def caller(session: aiohttp.ClientSession) -> None:
        nonlocal errors
        while time.monotonic() < stop_at:
            started = time.perf_counter()
            async with session.post(url, data=body, headers=headers) as resp:
                await resp.read()
                if resp.status >= 300:
                    errors += 1
            latencies.append(time.perf_counter() - started)

    connector = aiohttp.TCPConnector(limit=connections)
    async with aiohttp.ClientSession(connector=connector) as session:
        began = time.monotonic()
        await asyncio.gather(*(caller(session) for _ in range(connections)))
        took = time.monotonic() - began
    latencies.sort()
    return {"calls_per_s": len(latencies) / took, "p50_ms": latencies[len(latencies) // 2] * 1000,
            "p99_ms": latencies[int(len(latencies) * 0.99)] * 1000, "errors": errors}


def run_load(client: str, url: str, seconds: int, connections: int, workdir: Path) -> dict[str, Any]:
    if client == "wrk":
        return run_wrk(url, seconds, connections, workdir)
    return asyncio.run(_aiohttp_load(url, seconds, connections))


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its descendants so far (live ones, and those it
    reaped: recycled worker children)."""
    proc = psutil.Process(pid)
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
            total += t.user + t.system + t.children_user + t.children_system
        except psutil.NoSuchProcess:
            continue
    return total


@contextmanager
def profiled(pid: int | None, out: Path, seconds: int) -> Iterator[None]:
    """``py-spy record`` of the server process for the scenario (collapsed stacks)."""
    spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if pid is None or not Path(spy).exists():
        yield
        return
    proc = subprocess.Popen([spy, "record", "-p", str(pid), "-d", str(seconds), "-r", "200",
                             "-f", "raw", "-o", str(out), "--nonblocking"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        proc.wait(seconds + 30)


def scenario(name: str, base: str, entry_id: str, pids: dict[str, int], args: argparse.Namespace,
             workdir: Path) -> dict[str, Any]:
    """Warm up, then load one scenario for ``args.seconds``; figures plus CPU per call."""
    url = f"{base}/api/v1/{'sync' if name == 'sync' else 'async'}/{entry_id}"
    paused = name == "enqueue"
    if paused:
        os.killpg(pids["worker"], signal.SIGSTOP)
    try:
        if args.warmup:
            run_load(args.client, url, args.warmup, args.connections, workdir)
        target = args.profile / f"server-{name}.txt" if args.profile else None
        if target:
            target.parent.mkdir(parents=True, exist_ok=True)
        before = {role: cpu_seconds(pid) for role, pid in pids.items()}
        with profiled(pids["server"] if target else None, target or workdir, args.seconds):
            result = run_load(args.client, url, args.seconds, args.connections, workdir)
        calls = result["calls_per_s"] * args.seconds
        for role, pid in pids.items():  # the CPU budget per call, whatever the machine load
            used = cpu_seconds(pid) - before[role]
            result[f"{role}_cpu_us_per_call"] = round(used / max(calls, 1) * 1e6, 1)
    finally:
        if paused:
            os.killpg(pids["worker"], signal.SIGCONT)
    return result


def main() -> int:
    if sys.argv[1:2] == ["--fake-consumer"]:
        import uvloop

        uvloop.run(_fake_consumer(sys.argv[2]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10, help="load per scenario (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="unmeasured load first (default 2)")
    parser.add_argument("--connections", type=int, default=64, help="concurrent callers (default 64)")
    parser.add_argument("--processes", type=int, default=1, help="fluxfunc-server --processes")
    parser.add_argument("--scenario", choices=["sync", "async", "enqueue", "all"], default="all")
    parser.add_argument("--client", choices=["wrk", "aiohttp"],
                        default="wrk" if shutil.which("wrk") else "aiohttp",
                        help="load generator (default: wrk when installed)")
    parser.add_argument("--worker", choices=["real", "fake"], default="real",
                        help="fake: a consumer that completes at once (the server's own capacity)")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--keep-logs", action="store_true", help="keep the temp dir with the logs")
    parser.add_argument("--profile", metavar="DIR", type=Path,
                        help="py-spy record the server during each scenario into DIR")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="fluxfunc-bench-http-"))
    scenarios = ["sync", "async", "enqueue"] if args.scenario == "all" else [args.scenario]
    report: dict[str, Any] = {"client": args.client, "worker": args.worker, "connections": args.connections,
                              "seconds": args.seconds, "cpus": os.cpu_count(),
                              "loadavg_before": os.getloadavg()}
    try:
        with deployment(workdir, args.worker, args.processes) as (base, entry, pids):
            for name in scenarios:
                report[name] = scenario(name, base, entry[name], pids, args, workdir)
    finally:
        report["loadavg_after"] = os.getloadavg()
        if args.keep_logs:
            report["logs"] = str(workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    if args.json:
        print(json.dumps(report))
        return 0
    print(f"client {report['client']}, {args.worker} worker, {args.connections} connections, "
          f"{args.seconds} s each, "
          f"{report['cpus']} CPUs, load average before {report['loadavg_before'][0]:.2f}")
    for name in scenarios:
        r = report[name]
        rate_target, p99_target = TARGETS[name]
        verdict = "OK" if r["calls_per_s"] >= rate_target and (
            p99_target is None or r["p99_ms"] <= p99_target) else "below target"
        print(f"{name:6} {r['calls_per_s']:9.0f} calls/s   p50 {r['p50_ms']:7.2f} ms   "
              f"p99 {r['p99_ms']:7.2f} ms   errors {r['errors']}   ({verdict}: ≥ {rate_target}/s"
              + (f", p99 ≤ {p99_target:g} ms)" if p99_target else ")"))
        print(f"{'':6} CPU per call: server {r['server_cpu_us_per_call']:.0f} µs, "
              f"worker (+ children) {r['worker_cpu_us_per_call']:.0f} µs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
