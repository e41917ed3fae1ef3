"""The HA layout as real processes on this machine: nginx on loopback in front of 2 Servers,
3 Workers and 2 Beats, one private Redis and a fresh MariaDB database — each started the way
an operator starts it (console scripts, one YAML config, ``fluxfunc db upgrade``,
``fluxfunc admin create-token``, ``fluxfunc deploy``).

Under a steady load of sync and async calls (every call carries an idempotency key; a client
that sees a transport error retries with the same key, as a careful client does) plus a cron
job firing every 2 s, one Worker, one Server and then the Beat leader are SIGKILLed in turn.
Afterwards every accepted call has a final result, each call made exactly one task, every
cron fire of the window happened exactly once, and nothing is left pending, lagging, delayed
or dead. A summary table is printed; it must show zero lost and zero duplicated.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
import yaml

from fluxfunc_common.heartbeat import list_services
from fluxfunc_common.keys import Keys
from fluxfunc_common.proc.localredis import LocalRedis, free_port

pytestmark = [pytest.mark.mysql, pytest.mark.slow, pytest.mark.timeout(240)]

BIN = Path(sys.executable).parent
LOAD_SECONDS = 48.0
KILLS = ((12.0, "worker"), (24.0, "server"), (36.0, "beat leader"))
CRON_EXPR = "*/2 * * * * *"
SYNC_CLIENTS = 3
ASYNC_PER_SECOND = 6
TRANSIENT = {502, 503, 504}

SCRIPT = '''"""Topology test load"""
import time


@DFF.API("Work", timeout=30)
def work(n, ms=30):
    DFF.CACHE.incr("exec:" + _DFF_TASK_ID)
    time.sleep(ms / 1000)
    return {"n": n}


@DFF.API("Tick", timeout=10)
def tick():
    DFF.CACHE.incr("exec:" + _DFF_TASK_ID)
    DFF.CACHE.hset("ticks", _DFF_TASK_ID, _DFF_TRIGGER_TIME)
    return {"at": _DFF_TRIGGER_TIME}
'''


def nginx_binary() -> str | None:
    return shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx")
                                          if os.access(p, os.X_OK)), None)


def require_nginx() -> str:
    """The nginx binary; without one the test fails under CI (which installs it) and is
    skipped elsewhere."""
    nginx = nginx_binary()
    if nginx is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true and nginx is not installed (.ci/run installs it with apt)")
        pytest.skip("nginx is not installed (apt-get install -y nginx)")
    return nginx


@dataclass
class Proc:
    """One service process, its log in the run folder."""

    name: str
    argv: list[str]
    log: Path
    popen: subprocess.Popen[bytes] | None = None

    def start(self, env: dict[str, str]) -> None:
        with open(self.log, "ab") as out:
            self.popen = subprocess.Popen(self.argv, stdout=out, stderr=subprocess.STDOUT,
                                          stdin=subprocess.DEVNULL, env=env)

    @property
    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self) -> None:
        assert self.popen is not None
        self.popen.send_signal(signal.SIGKILL)
        self.popen.wait(10)

    def terminate(self) -> None:
        if self.alive:
            assert self.popen is not None
            self.popen.terminate()

    def wait_stopped(self, timeout: float) -> None:
        if self.popen is None:
            return
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait()

    def tail(self, chars: int = 1500) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


@dataclass
class Topology:
    dir: Path
    url: str
    token: str
    keys: Keys
    redis_url: str
    config: Path
    procs: dict[str, Proc] = field(default_factory=dict)

    def of(self, prefix: str) -> list[Proc]:
        return [p for n, p in self.procs.items() if n.startswith(prefix)]


def nginx_conf(run: Path, listen: int, upstreams: list[int]) -> str:
    servers = "\n".join(f"        server 127.0.0.1:{p} max_fails=1 fail_timeout=2s;" for p in upstreams)
    user = "user root;\n" if os.geteuid() == 0 else ""
    temp = "\n".join(f"    {k}_temp_path {run / ('nginx-' + k)};"
                     for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    return f"""{user}worker_processes 1;
daemon off;
pid {run / 'nginx.pid'};
error_log {run / 'nginx-error.log'} warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
{temp}
    upstream fluxfunc {{
{servers}
        keepalive 32;
    }}
    server {{
        listen 127.0.0.1:{listen};
        client_max_body_size 10m;
        location / {{
            proxy_pass http://fluxfunc;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
            proxy_read_timeout 120s;
            proxy_next_upstream error timeout http_502 http_503;
        }}
    }}
}}
"""


def run_cli(*argv: str, env: dict[str, str], cwd: Path | None = None, timeout: float = 60) -> str:
    out = subprocess.run([str(BIN / "fluxfunc"), *argv], env=env, cwd=cwd, capture_output=True,
                         text=True, timeout=timeout)
    assert out.returncode == 0, f"fluxfunc {' '.join(argv)}: {out.stdout}{out.stderr}"
    return out.stdout


async def wait_http(url: str, deadline: float, procs: list[Proc]) -> None:
    async with aiohttp.ClientSession() as http:
        while True:
            for p in procs:
                assert p.alive, f"{p.name} exited at start:\n{p.tail()}"
            try:
                async with http.get(url, timeout=aiohttp.ClientTimeout(total=2)) as r:
                    if r.status == 200:
                        return
            except (aiohttp.ClientError, TimeoutError):
                pass
            assert time.monotonic() < deadline, f"{url} not ready"
            await asyncio.sleep(0.1)


@pytest.fixture
async def topology(tmp_path: Path, mysql_url: str) -> AsyncIterator[Topology]:
    nginx = require_nginx()
    run = tmp_path / "run"
    run.mkdir()
    redis = LocalRedis(run / "redis")
    redis.start()
    namespace = "topo" + os.urandom(4).hex()
    config = run / "fluxfunc.yaml"
    config.write_text(yaml.safe_dump({
        "secret": "topology-secret-for-fluxfunc-tests-0123456",
        "redis": {"url": redis.url, "namespace": namespace},
        "store": {"url": mysql_url, "auto_migrate": False},
        "server": {"host": "127.0.0.1", "shutdown_seconds": 5},
        "worker": {"concurrency": 2, "lease_seconds": 6, "reclaim_seconds": 1, "drain_seconds": 5,
                   "record_batch_seconds": 0.2},
        "beat": {"lease_seconds": 3},
        "log": {"level": "INFO", "format": "json"},
    }))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLUXFUNC_", "FF_"))}
    env["FLUXFUNC_STATE_DIR"] = str(run)
    ports = [free_port(), free_port()]
    listen = free_port()
    (run / "nginx.conf").write_text(nginx_conf(run, listen, ports))
    procs: dict[str, Proc] = {}
    topo = None
    try:
        run_cli("db", "upgrade", "--config", str(config), env=env)
        token = run_cli("admin", "create-token", "--config", str(config), "--name", "topology",
                        env=env).strip().splitlines()[-1]
        specs = [(f"server-{i + 1}", ["fluxfunc-server", "--config", str(config), "--port", str(p)])
                 for i, p in enumerate(ports)]
        specs += [(f"worker-{i}", ["fluxfunc-worker", "--config", str(config)]) for i in (1, 2, 3)]
        specs += [(f"beat-{i}", ["fluxfunc-beat", "--config", str(config)]) for i in (1, 2)]
        for name, argv in specs:
            procs[name] = Proc(name, [str(BIN / argv[0]), *argv[1:]], run / f"{name}.log")
            procs[name].start(env)
        procs["nginx"] = Proc("nginx", [nginx, "-p", str(run), "-c", str(run / "nginx.conf"), "-e",
                                        str(run / "nginx-error.log")], run / "nginx.log")
        procs["nginx"].start(env)
        deadline = time.monotonic() + 40
        for p in ports:
            await wait_http(f"http://127.0.0.1:{p}/readyz", deadline, list(procs.values()))
        await wait_http(f"http://127.0.0.1:{listen}/healthz", deadline, list(procs.values()))
        topo = Topology(run, f"http://127.0.0.1:{listen}", token, Keys(namespace), redis.url, config, procs)
        client = aioredis.Redis.from_url(redis.url)
        try:
            while True:  # every worker and Beat has its heartbeat: all are consuming / standing by
                roles = Counter(s["role"] for s in await list_services(client, topo.keys))
                if roles["worker"] >= 3 and roles["beat"] >= 2:
                    break
                assert time.monotonic() < deadline, f"heartbeats: {roles}"
                await asyncio.sleep(0.2)
        finally:
            await client.aclose()
        yield topo
    except BaseException:
        for p in procs.values():
            print(f"--- {p.name} ---\n{p.tail()}", file=sys.stderr)
        raise
    finally:
        for p in procs.values():
            p.terminate()
        for p in procs.values():
            p.wait_stopped(20)
        redis.stop()


# --- the load --------------------------------------------------------------------------------


@dataclass
class Ledger:
    """What the clients saw."""

    sync_ok: dict[str, Any] = field(default_factory=dict)        # key → result
    sync_failed: dict[str, str] = field(default_factory=dict)    # key → why
    async_ids: dict[str, str] = field(default_factory=dict)      # key → task id
    async_failed: dict[str, str] = field(default_factory=dict)
    expected: dict[str, int] = field(default_factory=dict)       # key → n
    retries: Counter[str] = field(default_factory=Counter)       # kind → transport retries
    id_mismatch: list[str] = field(default_factory=list)         # key answered with two task ids


class Api:
    def __init__(self, topo: Topology, http: aiohttp.ClientSession) -> None:
        self.topo, self.http = topo, http
        self.auth = {"Authorization": f"Bearer {topo.token}"}

    async def post(self, path: str, body: dict[str, Any], limit: float = 60) -> tuple[int, Any]:
        async with self.http.post(self.topo.url + path, json=body, headers=self.auth,
                                  timeout=aiohttp.ClientTimeout(total=limit)) as r:
            return r.status, await r.json(content_type=None)

    async def get(self, path: str, limit: float = 60) -> tuple[int, Any]:
        async with self.http.get(self.topo.url + path, headers=self.auth,
                                 timeout=aiohttp.ClientTimeout(total=limit)) as r:
            return r.status, await r.json(content_type=None)

    async def call(self, kind: str, key: str, n: int, ledger: Ledger) -> tuple[int, Any]:
        """One call, retried with the same idempotency key while the transport fails."""
        options: dict[str, Any] = {"idempotencyKey": key}
        if kind == "async":
            options["async"] = True
        body = {"kwargs": {"n": n}, "options": options}
        for _attempt in range(40):
            try:
                status, data = await self.post("/api/v1/func/topo__load.work", body)
            except (aiohttp.ClientError, TimeoutError, ValueError):
                status, data = 0, None
            if status not in TRANSIENT and status != 0:
                return status, data
            ledger.retries[kind] += 1
            await asyncio.sleep(0.25)
        return status, data


async def sync_client(api: Api, ledger: Ledger, worker: int, stop: asyncio.Event) -> None:
    n = 0
    while not stop.is_set():
        n += 1
        key = f"s-{worker}-{n}"
        value = worker * 100_000 + n
        ledger.expected[key] = value
        status, data = await api.call("sync", key, value, ledger)
        if status == 200 and data["data"]["result"] == {"n": value}:
            ledger.sync_ok[key] = data["data"]["result"]
        else:
            ledger.sync_failed[key] = f"HTTP {status}: {json.dumps(data)[:300]}"


async def async_client(api: Api, ledger: Ledger, stop: asyncio.Event) -> None:
    n = 0
    pending: set[asyncio.Task[None]] = set()

    async def one(key: str, value: int) -> None:
        status, data = await api.call("async", key, value, ledger)
        if status == 200 and str(data["data"].get("id", "")).startswith("task-"):
            ledger.async_ids[key] = data["data"]["id"]
        else:
            ledger.async_failed[key] = f"HTTP {status}: {json.dumps(data)[:300]}"

    while not stop.is_set():
        n += 1
        key = f"a-{n}"
        ledger.expected[key] = 900_000_000 + n
        task = asyncio.create_task(one(key, ledger.expected[key]))
        pending.add(task)
        task.add_done_callback(pending.discard)
        await asyncio.sleep(1 / ASYNC_PER_SECOND)
    await asyncio.gather(*pending)


async def beat_leader_proc(topo: Topology, redis: aioredis.Redis) -> Proc:
    """The Beat process whose heartbeat says it leads."""
    deadline = time.monotonic() + 15
    while True:
        leaders = [s for s in await list_services(redis, topo.keys)
                   if s.get("role") == "beat" and s.get("leader")]
        pids = {s["pid"] for s in leaders}
        for p in topo.of("beat-"):
            if p.alive and p.popen and p.popen.pid in pids:
                return p
        assert time.monotonic() < deadline, f"no live Beat leader in heartbeats: {leaders}"
        await asyncio.sleep(0.3)


async def killer(topo: Topology, redis: aioredis.Redis, started: float, log: list[str]) -> None:
    for at, what in KILLS:
        await asyncio.sleep(max(0.0, started + at - time.monotonic()))
        if what == "worker":
            victim = topo.procs["worker-1"]
        elif what == "server":
            victim = topo.procs["server-1"]
        else:
            victim = await beat_leader_proc(topo, redis)
        victim.kill()
        log.append(f"{victim.name} ({what}) SIGKILLed at {time.monotonic() - started:.1f}s")


# --- verification ------------------------------------------------------------------------------


async def final_task(api: Api, task_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        try:
            status, data = await api.get(f"/api/v1/tasks/{task_id}?wait=20", limit=30)
        except (aiohttp.ClientError, TimeoutError):
            status, data = 0, None
        if status == 200 and data["data"]["status"] not in ("queued", "running"):
            return dict(data["data"])
        assert time.monotonic() < deadline, f"{task_id} never ended: {data}"
        await asyncio.sleep(0.2)


async def all_records(api: Api, **filters: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor = None
    while True:
        query = "&".join(f"{k}={v}" for k, v in {**filters, "limit": "500"}.items())
        status, data = await api.get(f"/api/v1/task-records?{query}"
                                     + (f"&cursor={cursor}" if cursor else ""))
        assert status == 200, data
        out += data["data"]
        cursor = data["pageInfo"].get("nextCursor")
        if not cursor:
            return out


def summary_table(rows: list[list[str]], kills: list[str]) -> str:
    headers = ["kind", "calls/fires", "accepted", "final result", "lost", "duplicated",
               "client retries", "re-executed"]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    body = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(["", "topology: nginx -> 2 servers, 3 workers, 2 beats, 1 redis, mariadb",
                      *(f"  {k}" for k in kills), line, "-" * len(line), *body, ""])


async def test_ha_topology_survives_kills(topology: Topology, capsys: pytest.CaptureFixture[str]) -> None:
    topo = topology
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FLUXFUNC_", "FF_"))}
    scripts = topo.dir / "topo"
    scripts.mkdir()
    (scripts / "load.py").write_text(SCRIPT)
    await asyncio.to_thread(run_cli, "deploy", str(scripts), "--url", topo.url, "--token", topo.token,
                            env=env)

    redis = aioredis.Redis.from_url(topo.redis_url)
    ledger = Ledger()
    kills: list[str] = []
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64)) as http:
        api = Api(topo, http)
        await asyncio.sleep(2.5)  # the publish reaches every worker (≤ 2 s)
        # overlapPolicy allow: every fire must run (under the default `skip`, fires that come
        # while a SIGKILLed worker's run waits for its reclaim are rightly recorded `skipped`)
        status, data = await api.post("/api/v1/cron-jobs", {"id": "cron-topo", "funcId": "topo__load.tick",
                                                            "cronExpr": CRON_EXPR, "overlapPolicy": "allow"})
        assert status == 200, data
        cron_created = time.time()
        stop = asyncio.Event()
        started = time.monotonic()
        load = [asyncio.create_task(sync_client(api, ledger, i, stop)) for i in range(SYNC_CLIENTS)]
        load.append(asyncio.create_task(async_client(api, ledger, stop)))
        await killer(topo, redis, started, kills)
        await asyncio.sleep(max(0.0, started + LOAD_SECONDS - time.monotonic()))
        stop.set()
        window_end = time.time()
        await asyncio.gather(*load)

        # Every accepted call has a final result; one task per call (idempotency holds).
        finals: dict[str, dict[str, Any]] = {}
        for key, task_id in ledger.async_ids.items():
            finals[key] = await final_task(api, task_id)
        sync_ids: dict[str, str] = {}
        for key in ledger.sync_ok:
            status, data = await api.call("async", key, ledger.expected[key], ledger)
            assert status == 200, data
            sync_ids[key] = data["data"]["id"]
            finals[key] = await final_task(api, sync_ids[key])
        for key, task_id in ledger.async_ids.items():  # the key still names the same task
            status, data = await api.call("async", key, ledger.expected[key], ledger)
            if data["data"]["id"] != task_id:
                ledger.id_mismatch.append(key)
        lost = {k: f for k, f in finals.items()
                if f["status"] != "success" or f["result"] != {"n": ledger.expected[k]}}

        # Cron: every fire of the window exactly once (and one task per fire time).
        expected_fires = {t for t in range(int(cron_created) + 2, int(window_end) - 1) if t % 2 == 0}
        # the last fires of the window finish and their records land (batched, within 2 s);
        # past the deadline the assertions below name what is missing. What ran comes from the
        # function's own ledger as well as from the records: a worker SIGKILLed right after a
        # run loses the records of its last batch interval (buffered in memory, docs/worker.md),
        # while the run itself happened exactly once
        settle_until = time.monotonic() + 15
        while True:
            cron_records = await all_records(api, originId="cron-topo")
            ticks = {k.decode(): round(float(v))
                     for k, v in (await redis.hgetall(topo.keys.cache("topo__load", "ticks"))).items()}
            final = {round(float(r["triggerTime"])) for r in cron_records if r["status"] == "success"}
            if expected_fires <= final | set(ticks.values()) or time.monotonic() > settle_until:
                break
            await asyncio.sleep(0.25)
        by_fire: defaultdict[int, set[str]] = defaultdict(set)
        for task_id, at in ticks.items():
            by_fire[at].add(task_id)
        for r in cron_records:
            by_fire[round(float(r["triggerTime"]))].add(r["id"])
        fired = {t for t in by_fire if t in expected_fires}
        dup_fires = {t: ids for t, ids in by_fire.items() if len(ids) > 1}
        cron_unfinished = [r for r in cron_records if round(float(r["triggerTime"])) in expected_fires
                           and r["status"] != "success"]

        work_records = await all_records(api, funcId="topo__load.work")
        tasks_made = {r["id"] for r in work_records}
        call_ids = set(sync_ids.values()) | set(ledger.async_ids.values())
        extra_tasks = tasks_made - call_ids

        executions = {}
        for task_id in call_ids | {i for ids in by_fire.values() for i in ids}:
            raw = await redis.get(topo.keys.cache("topo__load", f"exec:{task_id}"))
            executions[task_id] = int(raw or 0)

        out = await asyncio.to_thread(run_cli, "streams", "--json", "--config", str(topo.config), env=env)
        queues = json.loads(out)
    await redis.aclose()

    def reexecuted(ids: set[str]) -> int:
        return sum(1 for i in ids if executions.get(i, 0) > 1)

    sync_lost = len(ledger.sync_failed) + sum(1 for k in ledger.sync_ok if k in lost)
    async_lost = len(ledger.async_failed) + sum(1 for k in ledger.async_ids if k in lost)
    rows = [
        ["sync", str(len(ledger.sync_ok) + len(ledger.sync_failed)), str(len(ledger.sync_ok)),
         str(sum(1 for k in ledger.sync_ok if k not in lost)), str(sync_lost),
         str(len(sync_ids) - len(set(sync_ids.values()))),
         str(ledger.retries["sync"]), str(reexecuted(set(sync_ids.values())))],
        ["async", str(len(ledger.async_ids) + len(ledger.async_failed)), str(len(ledger.async_ids)),
         str(sum(1 for k in ledger.async_ids if k not in lost)), str(async_lost),
         str(len(ledger.id_mismatch)), str(ledger.retries["async"]),
         str(reexecuted(set(ledger.async_ids.values())))],
        ["cron fires", str(len(expected_fires)), str(len(fired)),
         str(len(fired) - len({r['id'] for r in cron_unfinished})), str(len(expected_fires - fired)),
         str(len(dup_fires)), "-", str(reexecuted({i for ids in by_fire.values() for i in ids}))],
    ]
    stuck = {q["queue"]: {k: q[k] for k in ("pending", "lag", "delayed", "dead")}
             for q in queues if q["pending"] or q["lag"] or q["delayed"] or q["dead"]}
    table = summary_table(rows, kills) + (
        f"tasks not made by any call: {len(extra_tasks)}\n"
        f"stuck in queues at the end (pending/lag/delayed/dead): {stuck or 'none'}\n")
    with capsys.disabled():
        print(table)

    assert len(kills) == 3, kills
    assert len(ledger.sync_ok) > 50 and len(ledger.async_ids) > 100, table
    assert not ledger.sync_failed, list(ledger.sync_failed.items())[:5]
    assert not ledger.async_failed, list(ledger.async_failed.items())[:5]
    assert not lost, list(lost.items())[:5]
    assert not ledger.id_mismatch and not extra_tasks, (ledger.id_mismatch[:5], sorted(extra_tasks)[:5])
    assert len(set(sync_ids.values())) == len(sync_ids), "two sync calls shared a task"
    assert fired == expected_fires, f"missing fires: {sorted(expected_fires - fired)}"
    assert not dup_fires, dup_fires
    assert not cron_unfinished, cron_unfinished[:3]
    assert not stuck, stuck


def test_nginx_conf_is_valid(tmp_path: Path) -> None:
    """The generated load-balancer config passes ``nginx -t`` (fast feedback before the long run)."""
    nginx = require_nginx()
    (tmp_path / "nginx.conf").write_text(nginx_conf(tmp_path, free_port(), [free_port(), free_port()]))
    out = subprocess.run([nginx, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf"), "-e",
                          str(tmp_path / "err.log")], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
