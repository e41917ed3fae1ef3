"""Side-by-side benchmark: fluxfunc against arq, saq and Celery, in one run on one machine.

    .venv/bin/python bench/compare.py [--systems fluxfunc,arq,saq,celery,arq-default] [--tasks 5000]
        [--http-seconds 15] [--async-seconds 5] [--callers 64] [--burst 5000] [--processes N]
        [--concurrency 4] [--profile]

Run it with the project's venv (fluxfunc runs from there). The peers run from a separate venv,
``bench/.venv-peers``, made on first use from the ``[bench]`` extra of ``pyproject.toml``:
arq pins redis-py below 6 while fluxfunc uses redis-py 8, so the two never share a venv and
the project's venv is never changed.

For every system, in turn, on a fresh private ``redis-server`` (from PATH, free port, no
persistence) and with identical settings (one worker process running ``--concurrency`` tasks
at a time, the same no-op returning its input, default logging of each system):

1. worker throughput: queue ``--tasks`` tasks, time until every result is available;
2. sync HTTP: ``--callers`` concurrent callers for ``--http-seconds`` (after a 1 s warm-up)
   that each POST, wait for the answer, POST again; req/s, p50, p99. Peers: a minimal aiohttp
   front on uvloop (``bench/peers/front.py``) that enqueues and awaits the result. fluxfunc:
   the real ``fluxfunc-server`` + ``fluxfunc-worker``, calling a sync API created through the
   management API;
3. async HTTP enqueue: the same callers against the front's enqueue route / fluxfunc's async
   API for ``--async-seconds``, with the worker running; req/s;
4. burst: ``--burst`` (5,000) callers, each on its own connection opened beforehand, POST once
   to the same enqueue route at the same instant (``bench/peers/burst.py``); the time until
   every one has its answer. It starts once the system is idle again (its processes together
   used under 5 % of a core for half a second, at most 60 s of waiting): the async
   phase leaves thousands of tasks queued, and draining them on the same cores would be
   counted against the burst's ingress otherwise (the wait is logged).

``--processes N`` starts ``fluxfunc-server --processes N`` (default: the server's own, one per
core); the CPU of its children (each in a session of its own) is counted with the server's.

The load generator is ``wrk -t1`` when it is on PATH (``apt-get install wrk``), else the aiohttp
one in ``bench/peers/loadgen.py``; either way one separate process, the same for every system.
It prints a table with each system's figures, fluxfunc's advantage over each, the acceptance
checks of the benchmark issue and the machine (cores, Python, Redis), and writes the same as
JSON to ``bench/results/compare-<time>.json``. Every process it starts runs in its own process
group and is killed (TERM, then KILL) in ``finally`` blocks; the run ends by checking with
``ps`` that none is left. ``--profile`` also records fluxfunc's Server and Worker with py-spy
(``pip install py-spy`` into the project venv) during the throughput and sync phases and prints
the top functions.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import hashlib
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
PEERS = BENCH / "peers"
PEERS_VENV = BENCH / ".venv-peers"
RESULTS = BENCH / "results"
PROJECT_BIN = Path(sys.executable).parent
PEER_SYSTEMS = ("arq", "saq", "celery", "arq-default")
ALL_SYSTEMS = ("fluxfunc", *PEER_SYSTEMS)
# The request body of every HTTP call: the peers' fronts read {"x": …}; fluxfunc's sync and
# async APIs take the DataFlux Func "normal" format {"kwargs": {…}}.
X = {"n": 1, "s": "hello"}
PEER_BODY = json.dumps({"x": X})
FLUXFUNC_BODY = json.dumps({"kwargs": {"x": X}})
STOP_GRACE = 10.0


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- processes ---------------------------------------------------------------------------------
@dataclass
class Processes:
    """Every process this run starts, each the leader of its own process group."""

    logdir: Path
    started: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    groups: set[int] = field(default_factory=set)

    def start(self, name: str, argv: list[str], env: dict[str, str], cwd: Path | None = None,
              stdout: int | None = None) -> subprocess.Popen[bytes]:
        out = stdout if stdout is not None else open(self.logdir / f"{name}.log", "ab")  # noqa: SIM115
        proc = subprocess.Popen(argv, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
        if stdout is None:
            out.close()  # type: ignore[union-attr]
        self.started.append((name, proc))
        self.groups.add(proc.pid)
        return proc

    def stop(self, proc: subprocess.Popen[bytes], grace: float = STOP_GRACE) -> None:
        """TERM the group, wait up to ``grace`` for the leader, then KILL whatever is left."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            log(f"pid {proc.pid} ignored SIGTERM for {grace:.0f} s: SIGKILL")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(5)

    def stop_all(self) -> None:
        for _, proc in reversed(self.started):
            if proc.poll() is None or group_alive(proc.pid):
                self.stop(proc, grace=3.0)
        self.started.clear()

    def leftovers(self) -> list[str]:
        """``ps`` lines of any process still in one of this run's groups."""
        out = subprocess.run(["ps", "-eo", "pid=,pgid=,args="], capture_output=True, text=True).stdout
        rows = []
        for line in out.splitlines():
            parts = line.split(None, 2)
            if len(parts) >= 2 and int(parts[1]) in self.groups:
                rows.append(line.strip())
        return rows


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
LINE_NO = re.compile(r":\d+\)$")


def settle(roles: dict[str, int], *, quiet: float = 0.05, span: float = 0.5, limit: float = 60.0) -> float:
    """Wait until every process of ``roles`` (role → process group) is idle: together they used
    under ``quiet`` of a core over ``span`` seconds (at most ``limit`` s); the seconds waited."""
    start = time.monotonic()
    before = sum(cpu_seconds(pgid) for pgid in roles.values())
    while time.monotonic() - start < limit:
        time.sleep(span)
        now = sum(cpu_seconds(pgid) for pgid in roles.values())
        if now - before < quiet * span:
            break
        before = now
    return time.monotonic() - start


def cpu_seconds(pgid: int) -> float:
    """CPU time (user + system, with reaped children) of every process in group ``pgid`` and
    of their descendants in other sessions (``fluxfunc-server --processes N`` starts its
    children in sessions of their own)."""
    procs: dict[int, tuple[int, int, int]] = {}  # pid: (ppid, pgrp, ticks)
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # after the command: state ppid pgrp ... utime(12) stime(13) cutime(14) cstime(15)
        procs[int(stat.parent.name)] = (int(fields[1]), int(fields[2]),
                                        sum(int(v) for v in fields[11:15]))
    members = {pid for pid, (_, pgrp, _) in procs.items() if pgrp == pgid}
    grew = True
    while grew:
        more = {pid for pid, (ppid, _, _) in procs.items() if ppid in members} - members
        members |= more
        grew = bool(more)
    return sum(procs[pid][2] for pid in members) / CLOCK_TICKS


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} before listening")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} not listening on port {port} after {timeout:.0f} s")


@contextlib.contextmanager
def private_redis(procs: Processes, workdir: Path) -> Iterator[tuple[str, int]]:
    """A throwaway redis-server on a free port: yields its URL and pid."""
    binary = shutil.which("redis-server")
    if not binary:
        sys.exit("redis-server not on PATH: install it (apt-get install redis-server)")
    port = free_port()
    data = Path(tempfile.mkdtemp(prefix=f"redis-{port}-", dir=workdir))
    proc = procs.start(f"redis-{port}", [binary, "--port", str(port), "--bind", "127.0.0.1",
                                         "--save", "", "--appendonly", "no", "--dir", str(data)],
                       env=dict(os.environ))
    try:
        wait_port(port, proc, 10, "redis-server")
        yield f"redis://127.0.0.1:{port}/0", proc.pid
    finally:
        procs.stop(proc, grace=5)


# --- the peers' venv ---------------------------------------------------------------------------
def bench_requirements() -> list[str]:
    """The ``[bench]`` extra of pyproject.toml: what the peers' venv installs."""
    with open(ROOT / "pyproject.toml", "rb") as f:
        return list(tomllib.load(f)["project"]["optional-dependencies"]["bench"])


def peers_python() -> Path:
    """bench/.venv-peers/bin/python, made (or updated) from the [bench] extra when needed."""
    requirements = bench_requirements()
    digest = hashlib.sha256("\n".join(requirements).encode()).hexdigest()
    marker = PEERS_VENV / ".bench-requirements"
    python = PEERS_VENV / "bin" / "python"
    if python.exists() and marker.exists() and marker.read_text() == digest:
        return python
    log(f"installing the peers into {PEERS_VENV.relative_to(ROOT)}: {' '.join(requirements)}")
    started = time.monotonic()
    base = getattr(sys, "_base_executable", None) or shutil.which("python3") or "python3"
    if not python.exists():
        subprocess.run([base, "-m", "venv", str(PEERS_VENV)], check=True)
    subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                    *requirements], check=True)
    marker.write_text(digest)
    log(f"peers installed in {time.monotonic() - started:.0f} s")
    return python


def versions(python: Path, packages: list[str]) -> dict[str, str]:
    code = ("import importlib.metadata as m, json, sys\n"
            "out = {}\n"
            "for p in sys.argv[1:]:\n"
            "    try: out[p] = m.version(p)\n"
            "    except m.PackageNotFoundError: out[p] = None\n"
            "print(json.dumps(out))")
    res = subprocess.run([str(python), "-c", code, *packages], capture_output=True, text=True)
    return dict(json.loads(res.stdout)) if res.returncode == 0 else {}


# --- load -------------------------------------------------------------------------------------
@dataclass
class Load:
    """The load generator: wrk when available, else the aiohttp fallback."""

    callers: int
    use_wrk: bool

    @property
    def name(self) -> str:
        return f"wrk -t1 -c{self.callers}" if self.use_wrk else f"aiohttp loadgen ({self.callers} callers)"

    def run(self, procs: Processes, url: str, body: str, seconds: float) -> dict[str, Any]:
        env = {**os.environ, "BENCH_BODY": body}
        if self.use_wrk:
            argv = ["wrk", "-t1", f"-c{self.callers}", f"-d{max(1, round(seconds))}s", "--timeout", "10s",
                    "-s", str(PEERS / "wrk.lua"), url]
        else:
            argv = [sys.executable, str(PEERS / "loadgen.py"), url, "--connections", str(self.callers),
                    "--seconds", str(seconds), "--body", body]
        proc = procs.start("load", argv, env=env, stdout=subprocess.PIPE)
        try:
            out, _ = proc.communicate(timeout=seconds + 30)
        finally:
            procs.stop(proc, grace=2)
        line = [ln for ln in out.decode().splitlines() if ln.startswith("{")]
        if not line:
            raise RuntimeError(f"load generator printed no summary: {out.decode()[-500:]}")
        raw = json.loads(line[-1])
        errors = sum(raw[k] for k in ("connect", "read", "write", "status", "timeout"))
        good = max(0, raw["requests"] - raw["status"])
        secs = raw["duration_us"] / 1e6
        return {
            "req_per_s": round(good / secs, 1) if secs else 0.0,
            "p50_ms": round(raw["p50_us"] / 1000, 1),
            "p99_ms": round(raw["p99_us"] / 1000, 1),
            "max_ms": round(raw["max_us"] / 1000, 1),
            "requests": raw["requests"],
            "errors": errors,
            "seconds": round(secs, 2),
        }


# --- one system -------------------------------------------------------------------------------
@dataclass
class Run:
    args: argparse.Namespace
    procs: Processes
    load: Load
    workdir: Path
    peers_py: Path | None
    profile: bool = False

    def driver(self, python: Path | str, env: dict[str, str], mode: str, system: str,
               timeout: float, *extra: str) -> dict[str, Any]:
        proc = self.procs.start(f"driver-{system}", [str(python), str(PEERS / "driver.py"), mode,
                                                     "--system", system, *extra],
                                env=env, cwd=PEERS, stdout=subprocess.PIPE)
        try:
            out, _ = proc.communicate(timeout=timeout + 30)
        except subprocess.TimeoutExpired:
            return {"ok": False, "error": f"driver {mode} timed out"}
        finally:
            self.procs.stop(proc, grace=2)
        lines = [ln for ln in out.decode().splitlines() if ln.startswith("{")]
        if not lines:
            log_file = self.workdir / f"driver-{system}.log"
            return {"ok": False, "error": f"driver {mode} printed nothing (see {log_file})"}
        return dict(json.loads(lines[-1]))

    def env(self, redis_url: str, **extra: str) -> dict[str, str]:
        return {**os.environ, "BENCH_REDIS_URL": redis_url, "BENCH_CONCURRENCY": str(self.args.concurrency),
                "PYTHONPATH": str(PEERS), "PYTHONUNBUFFERED": "1", **extra}

    def workloads(self, system: str, python: Path | str, env: dict[str, str], roles: dict[str, int],
                  sync_url: str, async_url: str, body: str,
                  profile: Profiler | None = None) -> dict[str, Any]:
        """The three workloads against a running system; ``roles`` names the process groups
        whose CPU time is accounted per task / request (worker, front or server, redis)."""
        out: dict[str, Any] = {}
        warm = self.driver(python, env, "warmup", system, 60, "--timeout", "60")
        if not warm.get("ok"):
            raise RuntimeError(f"{system} did not answer a call: {warm.get('error')}")
        out["ready_s"] = warm["ready_s"]

        def phase(name: str, ops_key: str, run: Callable[[], dict[str, Any]]) -> dict[str, Any]:
            before = {role: cpu_seconds(pgid) for role, pgid in roles.items()}
            if profile:
                profile.start(name)
            try:
                result = run()
            finally:
                if profile:
                    profile.stop()
            ops = result.get(ops_key) or 0
            if ops:
                result["cpu_ms_per_op"] = {role: round(1000 * (cpu_seconds(pgid) - before[role]) / ops, 3)
                                           for role, pgid in roles.items()}
            log(f"{system}: {name}: {result}")
            return result

        log(f"{system}: throughput, {self.args.tasks} tasks")
        out["throughput"] = phase("throughput", "done", lambda: self.driver(
            python, env, "throughput", system, self.args.task_timeout, "--tasks", str(self.args.tasks),
            "--timeout", str(self.args.task_timeout)))
        self.load.run(self.procs, sync_url, body, 1)  # warm-up, not counted
        log(f"{system}: sync HTTP, {self.load.callers} callers, {self.args.http_seconds:g} s")
        out["sync"] = phase("sync", "requests",
                            lambda: self.load.run(self.procs, sync_url, body, self.args.http_seconds))
        log(f"{system}: async HTTP enqueue, {self.args.async_seconds:g} s")
        out["async"] = phase("async", "requests",
                             lambda: self.load.run(self.procs, async_url, body, self.args.async_seconds))
        if self.args.burst:
            waited = settle(roles)
            log(f"{system}: idle after {waited:.1f} s; burst of {self.args.burst} simultaneous async callers")
            out["burst"] = phase("burst", "ok", lambda: self.burst(async_url, body))
        return out

    def burst(self, url: str, body: str) -> dict[str, Any]:
        """``--burst`` callers, connected first, each POST once at the same instant
        (``peers/burst.py``): the time until every one has its answer."""
        argv = [sys.executable, str(PEERS / "burst.py"), url, "--callers", str(self.args.burst),
                "--body", body]
        proc = self.procs.start("burst", argv, env=dict(os.environ), stdout=subprocess.PIPE)
        try:
            out, _ = proc.communicate(timeout=120)
        finally:
            self.procs.stop(proc, grace=2)
        lines = [ln for ln in out.decode().splitlines() if ln.startswith("{")]
        if not lines:
            raise RuntimeError(f"burst client printed no summary: {out.decode()[-500:]}")
        return dict(json.loads(lines[-1]))

    def peer(self, system: str) -> dict[str, Any]:
        assert self.peers_py is not None
        bin_dir = self.peers_py.parent
        with private_redis(self.procs, self.workdir) as (redis_url, redis_pid):
            env = self.env(redis_url)
            if system == "arq-default":
                env["BENCH_ARQ_POLL"] = "0.5"  # arq's own default poll delay
            c = str(self.args.concurrency)
            if system in ("arq", "arq-default"):
                argv = [str(bin_dir / "arq"), "arq_app.WorkerSettings"]
            elif system == "saq":
                argv = [str(bin_dir / "saq"), "saq_app.settings"]
            else:
                argv = [str(bin_dir / "celery"), "-A", "celery_app", "worker", "--pool",
                        self.args.celery_pool, "-c", c, "--loglevel", "WARNING", "--without-heartbeat",
                        "--without-gossip", "--without-mingle"]
            worker = self.procs.start(f"{system}-worker", argv, env=env, cwd=PEERS)
            port = free_port()
            front = self.procs.start(f"{system}-front", [str(self.peers_py), str(PEERS / "front.py"),
                                                         "--system", system, "--port", str(port)],
                                     env=env, cwd=PEERS)
            try:
                wait_port(port, front, 30, f"{system} front")
                roles = {"worker": worker.pid, "front": front.pid, "redis": redis_pid}
                return self.workloads(system, self.peers_py, env, roles, f"http://127.0.0.1:{port}/sync",
                                      f"http://127.0.0.1:{port}/async", PEER_BODY)
            finally:
                self.procs.stop(front)
                self.procs.stop(worker)

    def fluxfunc(self) -> dict[str, Any]:
        sys.path.insert(0, str(PEERS))
        import fluxfunc_app

        with private_redis(self.procs, self.workdir) as (redis_url, redis_pid):
            home = Path(tempfile.mkdtemp(prefix="fluxfunc-", dir=self.workdir))
            port = free_port()
            namespace = f"bench{secrets.token_hex(3)}"
            store = self.args.store_url or f"sqlite:///{home / 'fluxfunc.db'}"
            config = home / "fluxfunc.yaml"
            config.write_text(json.dumps({  # JSON is YAML
                "secret": secrets.token_hex(16),
                "redis": {"url": redis_url, "namespace": namespace},
                "store": {"url": store},
                "server": {"host": "127.0.0.1", "port": port},
                "worker": {"concurrency": self.args.concurrency},
            }, indent=2))
            env = self.env(redis_url, FLUXFUNC_CONFIG=str(config), BENCH_FF_NS=namespace,
                           BENCH_FF_URL=f"http://127.0.0.1:{port}")
            made = subprocess.run([str(PROJECT_BIN / "fluxfunc"), "admin", "create-token", "--config",
                                   str(config)], env=env, capture_output=True, text=True, timeout=60)
            if made.returncode != 0:
                raise RuntimeError(f"fluxfunc admin create-token failed: {made.stderr.strip()}")
            token = made.stdout.strip().splitlines()[-1]
            env["BENCH_FF_TOKEN"] = token
            processes = ["--processes", str(self.args.processes)] if self.args.processes else []
            server = self.procs.start("fluxfunc-server", [str(PROJECT_BIN / "fluxfunc-server"), "--config",
                                                          str(config), *processes], env=env)
            worker = self.procs.start("fluxfunc-worker", [str(PROJECT_BIN / "fluxfunc-worker"), "--config",
                                                          str(config)], env=env)
            try:
                wait_port(port, server, 30, "fluxfunc-server")
                published = asyncio.run(fluxfunc_app.provision(f"http://127.0.0.1:{port}", token))
                funcs = [f["id"] for f in published["data"].get("funcs", [])]
                if fluxfunc_app.FUNC_ID not in funcs:
                    raise RuntimeError(f"publish did not export {fluxfunc_app.FUNC_ID}: {published}")
                profile = Profiler(self.procs, self.workdir, {"server": server.pid, "worker": worker.pid}) \
                    if self.profile else None
                roles = {"worker": worker.pid, "server": server.pid, "redis": redis_pid}
                out = self.workloads(
                    "fluxfunc", sys.executable, env, roles,
                    f"http://127.0.0.1:{port}/api/v1/sync/{fluxfunc_app.SYNC_API}",
                    f"http://127.0.0.1:{port}/api/v1/async/{fluxfunc_app.ASYNC_API}", FLUXFUNC_BODY, profile)
                if profile:
                    out["profile"] = profile.report()
                return out
            finally:
                self.procs.stop(server)
                self.procs.stop(worker)


# --- profiling (fluxfunc only) -----------------------------------------------------------------
class Profiler:
    """py-spy ``record --format raw`` of the Server and the Worker (with its children) per phase."""

    def __init__(self, procs: Processes, workdir: Path, pids: dict[str, int]) -> None:
        self.procs = procs
        self.workdir = workdir
        self.pids = pids
        self.binary = shutil.which("py-spy") or str(PROJECT_BIN / "py-spy")
        if not Path(self.binary).exists():
            raise SystemExit("--profile needs py-spy: .venv/bin/pip install py-spy")
        self.running: list[subprocess.Popen[bytes]] = []
        self.files: dict[str, Path] = {}

    def start(self, phase: str) -> None:
        for role, pid in self.pids.items():
            path = self.workdir / f"profile-{phase}-{role}.txt"
            self.files[f"{phase}/{role}"] = path
            argv = [self.binary, "record", "--pid", str(pid), "--format", "raw", "--rate", "200",
                    "--gil", "--nonblocking", "--output", str(path)]
            if role == "worker":
                argv.append("--subprocesses")
            self.running.append(self.procs.start(f"py-spy-{phase}-{role}", argv, env=dict(os.environ)))
        time.sleep(0.5)  # let py-spy attach

    def stop(self) -> None:
        for proc in self.running:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGINT)  # py-spy writes its output on SIGINT
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(15)
            self.procs.stop(proc, grace=1)
        self.running.clear()

    def report(self, top: int = 15) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name, path in self.files.items():
            if path.exists():
                out[name] = {"file": str(path), **summarise(path, top)}
        return out


def summarise(path: Path, top: int) -> dict[str, Any]:
    """Self and inclusive sample shares per function (line numbers folded) of a py-spy raw
    (collapsed) profile, split into the main process and its children (``--subprocesses``)."""
    parts: dict[str, tuple[Counter[str], Counter[str]]] = {}
    totals: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = [LINE_NO.sub(")", f) for f in stack.split(";")]
        part = "main"
        procs = [i for i, f in enumerate(frames[:3]) if f.startswith("process ")]
        if procs:  # py-spy --subprocesses: "process PID:cmd" frames, a child's under its parent's
            part = "children" if "fluxfunc_worker.child" in frames[procs[-1]] else "main"
            frames = frames[procs[-1] + 1:]
        if not frames:
            continue
        n = int(count)
        own, inclusive = parts.setdefault(part, (Counter(), Counter()))
        totals[part] += n
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    out: dict[str, Any] = {}
    for part, (own, inclusive) in parts.items():
        total = totals[part]
        out[part] = {
            "samples": total,
            "self": [[round(100 * n / total, 1), f] for f, n in own.most_common(top)],
            "inclusive": [[round(100 * n / total, 1), f] for f, n in inclusive.most_common(top * 2)],
        }
    return out


# --- report -----------------------------------------------------------------------------------
def machine(peers_py: Path | None) -> dict[str, Any]:
    info: dict[str, Any] = {"cores": os.cpu_count(), "python": platform.python_version(),
                            "platform": platform.platform()}
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
    redis_server = shutil.which("redis-server")
    if redis_server:
        text = subprocess.run([redis_server, "--version"], capture_output=True, text=True).stdout
        info["redis"] = next((p.split("=", 1)[1] for p in text.split() if p.startswith("v=")), text.strip())
    info["loadavg_start"] = [round(v, 2) for v in os.getloadavg()]
    info["fluxfunc_venv"] = versions(Path(sys.executable), ["fluxfunc", "redis", "hiredis", "aiohttp",
                                                            "uvloop", "orjson"])
    if peers_py:
        info["peers_venv"] = versions(peers_py, ["arq", "saq", "celery", "kombu", "redis", "hiredis",
                                                 "aiohttp", "uvloop"])
    return info


def fig(value: Any, fmt: str = "{:,.0f}") -> str:
    return "—" if value is None else fmt.format(value)


def metrics(result: dict[str, Any]) -> dict[str, float | None]:
    def get(phase: str, key: str) -> float | None:
        part = result.get(phase)
        if not isinstance(part, dict):
            return None
        if phase == "throughput" and not part.get("ok"):
            return None
        if phase != "throughput" and part.get("errors", 0) > 0.01 * max(1, part.get("requests", 0)):
            return None  # more than 1 % errors: not a valid figure
        value = part.get(key)
        return float(value) if isinstance(value, int | float) else None

    burst = result.get("burst")
    burst_s = (float(burst["all_answered_s"]) if isinstance(burst, dict)
               and burst.get("ok") == burst.get("callers") else None)  # every caller answered 2xx
    return {"throughput": get("throughput", "per_s"), "sync_rps": get("sync", "req_per_s"),
            "sync_p50": get("sync", "p50_ms"), "sync_p99": get("sync", "p99_ms"),
            "async_rps": get("async", "req_per_s"), "burst_s": burst_s}


def cpu_metrics(result: dict[str, Any]) -> dict[str, float | None]:
    """CPU ms per operation: the worker per queued task, every process per sync call, the
    front/Server per async enqueue (from ``cpu_ms_per_op``)."""
    def cpu(phase: str, roles: tuple[str, ...]) -> float | None:
        part = result.get(phase)
        per_op = part.get("cpu_ms_per_op") if isinstance(part, dict) else None
        if not per_op:
            return None
        return round(sum(float(v) for role, v in per_op.items() if role in roles), 3)

    return {"throughput_worker": cpu("throughput", ("worker",)),
            "sync_all": cpu("sync", ("worker", "front", "server", "redis")),
            "sync_worker": cpu("sync", ("worker",)),
            "sync_http": cpu("sync", ("front", "server")),
            "async_http": cpu("async", ("front", "server"))}


def median_metrics(rounds: list[dict[str, float | None]]) -> dict[str, float | None]:
    """Per metric, the median over the rounds that produced it (None if none did)."""
    out: dict[str, float | None] = {}
    for key in rounds[0]:
        values = [v for r in rounds if (v := r[key]) is not None]
        out[key] = round(statistics.median(values), 3) if values else None
    return out


def advantage(ff: dict[str, float | None], peer: dict[str, float | None]) -> dict[str, float | None]:
    """How many times better fluxfunc is: rates ff/peer, latencies peer/ff."""
    def ratio(a: float | None, b: float | None) -> float | None:
        return round(a / b, 2) if a and b else None

    return {"throughput": ratio(ff["throughput"], peer["throughput"]),
            "sync_rps": ratio(ff["sync_rps"], peer["sync_rps"]),
            "sync_p50": ratio(peer["sync_p50"], ff["sync_p50"]),
            "sync_p99": ratio(peer["sync_p99"], ff["sync_p99"]),
            "async_rps": ratio(ff["async_rps"], peer["async_rps"]),
            "burst_s": ratio(peer["burst_s"], ff["burst_s"])}


def checks(figures: dict[str, dict[str, float | None]]) -> list[dict[str, Any]]:
    """The acceptance lines of the benchmark issue, measured in this run."""
    ff = figures.get("fluxfunc")
    if not ff:
        return []
    out: list[dict[str, Any]] = []

    def add(name: str, value: float | None, target: float, higher: bool = True, unit: str = "") -> None:
        met = None if value is None else (value >= target if higher else value <= target)
        out.append({"check": name, "value": value, "target": target, "met": met, "unit": unit})

    for peer in ("arq", "arq-default", "celery"):
        if peer in figures:
            adv = advantage(ff, figures[peer])["throughput"]
            add(f"worker throughput ≥ 5× {peer}", adv, 5, unit="×")
    add("sync HTTP ≥ 1,500 calls/s", ff["sync_rps"], 1500, unit="/s")
    add("sync HTTP p99 ≤ 100 ms", ff["sync_p99"], 100, higher=False, unit=" ms")
    peer_rps = [f["sync_rps"] for name, f in figures.items() if name != "fluxfunc" and f["sync_rps"]]
    if peer_rps:
        best = round(ff["sync_rps"] / max(peer_rps), 2) if ff["sync_rps"] else None
        add("sync HTTP ≥ 3× best peer front", best, 3, unit="×")
    if "burst_s" in ff:
        add("burst: every simultaneous async caller enqueued ≤ 1.5 s", ff["burst_s"], 1.5,
            higher=False, unit=" s")
    return out


def markdown(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i])
                               for i, c in enumerate(r)) + " |" for r in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return lines


def table(report: dict[str, Any]) -> str:
    figures: dict[str, dict[str, float | None]] = report["figures"]
    head = ["system", "throughput (tasks/s)", "sync req/s", "sync p50 ms", "sync p99 ms", "async req/s",
            "burst s"]
    rows = [head]
    for name, f in figures.items():
        rows.append([name, fig(f["throughput"]), fig(f["sync_rps"]), fig(f["sync_p50"], "{:.1f}"),
                     fig(f["sync_p99"], "{:.1f}"), fig(f["async_rps"]), fig(f.get("burst_s"), "{:.2f}")])
    for name, adv in report["advantage"].items():
        keys = ("throughput", "sync_rps", "sync_p50", "sync_p99", "async_rps", "burst_s")
        rows.append([f"fluxfunc vs {name}", *(fig(adv[k], "{:.2f}×") for k in keys)])
    lines = markdown(rows)
    cpu_head = ["CPU ms per op", "worker / task (throughput)", "sync call: all", "worker",
                "front or server", "async enqueue: front or server"]
    cpu_rows = [cpu_head] + [[name, *(fig(c[k], "{:.2f}") for k in
                                       ("throughput_worker", "sync_all", "sync_worker", "sync_http",
                                        "async_http"))] for name, c in report["cpu"].items()]
    lines += ["", *markdown(cpu_rows)]
    m = report["machine"]
    s = report["settings"]
    notes = [
        "",
        f"machine: {m['cores']} cores ({m.get('cpu', '?')}), Python {m['python']}, "
        f"Redis {m.get('redis', '?')}, load average {m['loadavg_start'][0]} at start, "
        f"{m.get('loadavg_end', ['?'])[0]} at end",
        f"settings: {s['rounds']} round(s), medians; {s['tasks']} tasks; {s['load']}, "
        f"sync {s['http_seconds']:g} s, "
        f"async {s['async_seconds']:g} s; burst {s['burst']} callers; one worker process, "
        f"concurrency {s['concurrency']}; fluxfunc-server --processes {s['processes'] or 'default'}; "
        f"Celery pool {s['celery_pool']}",
        "advantage rows: how many times better fluxfunc is "
        "(rates: fluxfunc ÷ peer; latencies: peer ÷ fluxfunc)",
    ]
    for c in report["checks"]:
        state = {True: "MET ", False: "MISS", None: "n/a "}[c["met"]]
        value = "—" if c["value"] is None else f"{c['value']:,}{c['unit']}"
        notes.append(f"  [{state}] {c['check']}: {value}")
    for name, rounds in report["results"].items():
        for i, r in enumerate(rounds, 1):
            if "error" in r:
                notes.append(f"  {name} (round {i}): FAILED: {r['error']}")
    return "\n".join(lines + notes)


def print_profile(report: dict[str, Any]) -> None:
    profile = next((r["profile"] for r in report["results"].get("fluxfunc", []) if "profile" in r), None)
    if not profile:
        return
    print("\npy-spy --gil profiles of fluxfunc (share of the samples holding the GIL):")
    for name, p in profile.items():
        for part, q in p.items():
            if part == "file":
                continue
            print(f"\n{name} ({part}, {q['samples']} samples) — top self time:")
            for share, frame in q["self"][:12]:
                print(f"  {share:5.1f}%  {frame}")
    print(f"\n(collapsed stacks: {Path(next(iter(profile.values()))['file']).parent}/profile-*.txt)")


# --- main -------------------------------------------------------------------------------------
def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--systems", default=",".join(ALL_SYSTEMS),
                        help=f"comma-separated subset of {','.join(ALL_SYSTEMS)} (arq: polling every "
                             "10 ms; arq-default: arq's own 0.5 s polling)")
    parser.add_argument("--tasks", type=int, default=5000, help="tasks of the throughput workload")
    parser.add_argument("--task-timeout", type=float, default=60, help="give up the throughput run after (s)")
    parser.add_argument("--http-seconds", type=float, default=15, help="duration of the sync HTTP load")
    parser.add_argument("--async-seconds", type=float, default=5, help="duration of the async HTTP load")
    parser.add_argument("--callers", type=int, default=64, help="concurrent HTTP callers")
    parser.add_argument("--burst", type=int, default=5000,
                        help="simultaneous async callers of the burst phase (0: no burst)")
    parser.add_argument("--processes", type=int,
                        help="fluxfunc-server --processes N (default: the server's, one per core)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run every system this many times, round robin; figures are medians")
    parser.add_argument("--concurrency", type=int, default=4, help="tasks one worker runs at a time")
    parser.add_argument("--celery-pool", default="prefork", choices=("prefork", "threads", "solo"),
                        help="Celery worker pool (threads stalls under 64 concurrent sync callers)")
    parser.add_argument("--loadgen", default="auto", choices=("auto", "wrk", "aiohttp"))
    parser.add_argument("--store-url", help="fluxfunc store (default: a SQLite file in the run's temp dir)")
    parser.add_argument("--profile", action="store_true", help="py-spy the fluxfunc Server and Worker")
    parser.add_argument("--output", type=Path,
                        help="JSON report path (default bench/results/compare-<time>.json)")
    parser.add_argument("--keep-logs", action="store_true", help="keep the run's temp dir (logs, profiles)")
    args = parser.parse_args()
    args.systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    unknown = set(args.systems) - set(ALL_SYSTEMS)
    if unknown:
        parser.error(f"unknown system(s): {', '.join(sorted(unknown))}")
    return args


def main() -> int:
    args = parse_args()
    try:
        import fluxfunc_common  # noqa: F401
    except ImportError:
        sys.exit("run this with the project's venv: .venv/bin/python bench/compare.py")
    started = time.monotonic()
    if args.loadgen == "wrk" and not shutil.which("wrk"):
        sys.exit("wrk not on PATH (apt-get install wrk), or use --loadgen aiohttp")
    load = Load(args.callers, use_wrk=args.loadgen != "aiohttp" and shutil.which("wrk") is not None)
    peers_py = peers_python() if set(args.systems) & set(PEER_SYSTEMS) else None
    workdir = Path(tempfile.mkdtemp(prefix="fluxfunc-compare-"))
    procs = Processes(workdir)

    def on_signal(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    if signal.getsignal(signal.SIGINT) is not signal.SIG_IGN:
        signal.signal(signal.SIGINT, on_signal)
    report: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(peers_py),
        "settings": {"rounds": args.rounds, "tasks": args.tasks, "http_seconds": args.http_seconds,
                     "async_seconds": args.async_seconds, "callers": args.callers,
                     "burst": args.burst, "processes": args.processes,
                     "concurrency": args.concurrency, "celery_pool": args.celery_pool,
                     "load": load.name, "store": args.store_url or "sqlite (temp file)",
                     "peer_body": PEER_BODY, "fluxfunc_body": FLUXFUNC_BODY},
        "results": {},
    }
    run = Run(args, procs, load, workdir, peers_py)
    interrupted = False
    try:
        for round_no in range(1, args.rounds + 1):
            for system in args.systems:
                log(f"=== {system}" + (f", round {round_no} of {args.rounds}" if args.rounds > 1 else ""))
                t0 = time.monotonic()
                run.profile = args.profile and round_no == 1
                try:
                    result = run.fluxfunc() if system == "fluxfunc" else run.peer(system)
                except KeyboardInterrupt:
                    raise
                except Exception as exc:
                    log(f"{system} failed: {type(exc).__name__}: {exc} (logs in {workdir})")
                    result = {"error": f"{type(exc).__name__}: {exc}"}
                    args.keep_logs = True
                result["wall_s"] = round(time.monotonic() - t0, 1)
                report["results"].setdefault(system, []).append(result)
    except KeyboardInterrupt:
        interrupted = True
        log("interrupted: stopping every process of this run; the report covers the systems done")
    finally:
        procs.stop_all()
        leftovers = procs.leftovers()
        report["leftover_processes"] = leftovers
        if leftovers:
            log("processes left behind: " + "; ".join(leftovers))
    report["machine"]["loadavg_end"] = [round(v, 2) for v in os.getloadavg()]
    report["wall_s"] = round(time.monotonic() - started, 1)
    report["figures"] = {name: median_metrics([metrics(r) for r in rounds])
                         for name, rounds in report["results"].items()}
    report["cpu"] = {name: median_metrics([cpu_metrics(r) for r in rounds])
                     for name, rounds in report["results"].items()}
    ff = report["figures"].get("fluxfunc")
    report["advantage"] = {name: advantage(ff, f) for name, f in report["figures"].items()
                           if ff and name != "fluxfunc"}
    report["checks"] = checks(report["figures"])
    RESULTS.mkdir(exist_ok=True)
    output = args.output or RESULTS / f"compare-{time.strftime('%Y%m%d-%H%M%S')}.json"
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(table(report))
    print_profile(report)
    print(f"\nwall time {report['wall_s']:.0f} s; leftover processes: {len(leftovers) or 'none'}; "
          f"JSON: {output}")
    if args.keep_logs or args.profile:
        print(f"logs: {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    if interrupted:
        return 130
    failed = any("error" in r for rounds in report["results"].values() for r in rounds)
    return 0 if not leftovers and not failed else 1


if __name__ == "__main__":
    sys.exit(main())
