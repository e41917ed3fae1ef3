"""Hostile callers next to legitimate traffic, with real ``fluxfunc-server`` and
``fluxfunc-worker`` processes: while async and sync API calls run at 200 calls/s, anonymous
senders post every bad body of the edge hardening (punycode and other charsets, 300- and
220-level nested kwargs, idempotency keys of an admin-only call, access-key requests with
nested bodies and unknown or known key ids). Every legitimate call must succeed with its
own result, ``/healthz`` must answer within 200 ms (polled every 100 ms from a thread of its
own), and nothing may reach the dead letters.

The 200 ms bound is held by 95 % of the polls, and every poll must answer within 1 s: the
stalls this guards against froze the Server for seconds (4.3 s for one punycode body), while a
single slow poll on a machine busy with other work is the scheduler, not the Server. The worst
poll is printed; on a quiet 2-core machine it was 36–54 ms.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import secrets
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis
import requests
from tests.conftest import RedisServer
from tests.server.processes import create_token, running, server, worker, write_config

from fluxfunc_common.envelope import Origin, TaskEnvelope
from fluxfunc_common.keys import Keys
from fluxfunc_common.proc.localredis import free_port

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("e2e-hostile")]

SCRIPT = '''
@DFF.API("Plus")
def plus(x, y=1):
    return x + y

@DFF.API("Secret")
def secret(order):
    return {"order": order, "secret": "admin only"}
'''
RATE = 200  # legitimate calls per second (half sync, half async)
LOAD_SECONDS = 10.0
# /healthz under attack, compared with the same probe just before the attack on the same machine
# (a busy machine slows both alike): 95 % of the polls within HEALTH_LIMIT or HEALTH_FACTOR times
# the quiet p95, whichever is larger; no poll beyond STALL_LIMIT or STALL_FACTOR times the quiet
# worst poll (a stalled event loop). On a quiet machine the absolute limits are the ones that bite.
HEALTH_LIMIT = 0.200
HEALTH_FACTOR = 5
STALL_LIMIT = 1.0
STALL_FACTOR = 5
QUIET_PROBE_SECONDS = 3.0
PUNYCODE = b"-" + b"b" * 400_000
MULTIPART = (b'--XyZ\r\nContent-Disposition: form-data; name="x"\r\n'
             b"Content-Type: text/plain; charset=punycode\r\n\r\n" + PUNYCODE + b"\r\n--XyZ--\r\n")


def nested_kwargs(depth: int) -> bytes:
    return b'{"kwargs": {"x": ' + b"[" * depth + b"]" * depth + b"}}"


class Deployment:
    def __init__(self, base: str, token: str, ak_id: str, ak_secret: str, keys: Keys,
                 redis_url: str) -> None:
        self.base, self.ak_id, self.ak_secret = base, ak_id, ak_secret
        self.admin = {"Authorization": f"Bearer {token}"}
        self.keys, self.redis_url = keys, redis_url

    def data(self, resp: requests.Response) -> Any:
        assert resp.status_code == 200, (resp.status_code, resp.text[:500])
        return resp.json()["data"]

    def admin_post(self, path: str, body: Any) -> Any:
        return self.data(requests.post(self.base + path, json=body, headers=self.admin, timeout=60))

    def admin_get(self, path: str) -> Any:
        return self.data(requests.get(self.base + path, headers=self.admin, timeout=60))


def _access_key(config: Path) -> tuple[str, str]:
    done = subprocess.run([sys.executable, "-m", "fluxfunc_common.cli", "admin", "create-access-key",
                           "--config", str(config)], capture_output=True, text=True, timeout=60,
                          check=True)
    ak_id, secret = done.stdout.strip().splitlines()[-2:]
    return ak_id, secret


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer) -> Iterator[Deployment]:
    tmp = tmp_path_factory.mktemp("e2e-hostile")
    port = free_port()
    namespace = "hostile" + secrets.token_hex(4)
    config = write_config(tmp / "fluxfunc.yaml", redis_url=redis_server.url, namespace=namespace,
                          store_url=f"sqlite:///{tmp / 'store.db'}", port=port,
                          worker={"concurrency": 4})
    base = f"http://127.0.0.1:{port}"
    with running(server(config, tmp, tmp), ready_url=f"{base}/healthz"), \
            running(worker(config, tmp, tmp)) as worker_proc:
        ak_id, ak_secret = _access_key(config)
        dep = Deployment(base, create_token(config), ak_id, ak_secret, Keys(namespace),
                         redis_server.url)
        dep.admin_post("/api/v1/scripts", {"id": "demo__hostile", "code": SCRIPT})
        dep.admin_post("/api/v1/scripts/demo__hostile/publish", {})
        deadline = time.monotonic() + 60
        while not dep.admin_get("/api/v1/ops/overview")["services"]["worker"]:
            alive = worker_proc.proc is not None and worker_proc.proc.poll() is None
            assert alive and time.monotonic() < deadline, worker_proc.output()
            time.sleep(0.2)
        yield dep


class HealthProbe(threading.Thread):
    """GET /healthz every 100 ms on its own connection and thread; every latency kept."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.latencies: list[float] = []
        self.failures: list[str] = []
        self.stop = threading.Event()

    def run(self) -> None:
        with requests.Session() as http:
            while not self.stop.wait(0.1):
                started = time.monotonic()
                try:
                    status = str(http.get(self.url, timeout=10).status_code)
                except requests.RequestException as exc:
                    status = repr(exc)
                self.latencies.append(time.monotonic() - started)
                if status != "200":
                    self.failures.append(f"{status} after {self.latencies[-1]:.3f} s")


def _signed(dep: Deployment, path: str, body: bytes, *, ak_id: str, secret: str) -> dict[str, str]:
    ts, nonce = str(int(time.time())), secrets.token_hex(8)
    text = f"POST&{path}&{ts}&{nonce}&{hashlib.md5(body).hexdigest()}"
    sign = hmac.new(secret.encode(), text.encode(), hashlib.sha1).hexdigest()
    return {"X-Dff-Ak-Id": ak_id, "X-Dff-Ak-Timestamp": ts, "X-Dff-Ak-Nonce": nonce,
            "X-Dff-Ak-Sign": sign, "Content-Type": "application/json"}


def hostile_requests(dep: Deployment, sync_id: str, async_id: str) -> list[tuple[str, dict[str, Any]]]:
    """(path, request kwargs) of every bad body; each must be refused with a 4xx."""
    direct = "/api/v1/func/demo__hostile.secret"
    deep = nested_kwargs(2000)

    def typed(ctype: str, data: bytes) -> dict[str, Any]:
        return {"data": data, "headers": {"Content-Type": ctype}}

    return [
        (f"/api/v1/sync/{sync_id}/s", typed("text/plain; charset=punycode", PUNYCODE)),
        (f"/api/v1/sync/{sync_id}", typed("application/x-www-form-urlencoded; charset=punycode",
                                          PUNYCODE)),
        (f"/api/v1/async/{async_id}", typed("text/plain; charset=utf-7", b"x" * 1000)),
        (f"/api/v1/sync/{sync_id}/s", typed("multipart/form-data; boundary=XyZ", MULTIPART)),
        (f"/api/v1/async/{async_id}", typed("application/json", nested_kwargs(300))),
        (f"/api/v1/async/{async_id}", typed("application/json", nested_kwargs(220))),
        (f"/api/v1/sync/{sync_id}", typed("application/json", nested_kwargs(230))),
        (direct, {"data": deep, "headers": _signed(dep, direct, deep, ak_id="ak-nobody", secret="x")}),
        (direct, {"data": deep, "headers": _signed(dep, direct, deep, ak_id=dep.ak_id, secret="no")}),
    ]


async def hostile_sender(dep: Deployment, sync_id: str, async_id: str, stop: asyncio.Event,
                         statuses: Counter[int]) -> None:
    async with aiohttp.ClientSession(dep.base) as http:
        while not stop.is_set():
            for path, kwargs in hostile_requests(dep, sync_id, async_id):
                try:
                    async with http.post(path, **kwargs) as resp:
                        await resp.read()
                        statuses[resp.status] += 1
                except aiohttp.ClientError:  # the Server may close on a refused upload
                    statuses[0] += 1
                if stop.is_set():
                    return


async def idempotency_thief(dep: Deployment, sync_id: str, stop: asyncio.Event,
                            stolen: list[Any]) -> None:
    """Anonymous sync calls reusing the admin's idempotency keys: each gets the result of the
    first call with that key in its own scope (x = i % 5), never the admin's."""
    async with aiohttp.ClientSession(dep.base) as http:
        i = 0
        while not stop.is_set():
            params = {"kwargs": json.dumps({"x": i}),
                      "options": json.dumps({"idempotencyKey": f"order-{i % 5}"})}
            async with http.get(f"/api/v1/sync/{sync_id}", params=params) as resp:
                body = await resp.json(content_type=None)
                if resp.status != 200 or body != i % 5 + 1:
                    stolen.append((resp.status, body))
            i += 1


async def legitimate_load(dep: Deployment, sync_id: str,
                          async_id: str) -> tuple[list[Any], list[str], float]:
    """RATE calls/s for LOAD_SECONDS (open loop): (failures, async task ids, calls started
    per second)."""
    failures: list[Any] = []
    task_ids: list[str] = []
    calls: set[asyncio.Task[None]] = set()
    async with aiohttp.ClientSession(dep.base, connector=aiohttp.TCPConnector(limit=200)) as http:

        async def one(i: int) -> None:
            try:
                if i % 2:
                    async with http.post(f"/api/v1/async/{async_id}", json={"kwargs": {"x": i}}) as resp:
                        body = await resp.json(content_type=None)
                        if resp.status == 200:
                            task_ids.append(body["data"]["id"])
                            return
                else:
                    async with http.post(f"/api/v1/sync/{sync_id}", json={"kwargs": {"x": i}}) as resp:
                        body = await resp.json(content_type=None)
                        if resp.status == 200 and body == i + 1:
                            return
                failures.append((i, resp.status, str(body)[:300]))
            except (aiohttp.ClientError, TimeoutError) as exc:
                failures.append((i, repr(exc)))

        started = time.monotonic()
        total = int(RATE * LOAD_SECONDS)
        for i in range(total):
            await asyncio.sleep(max(0.0, started + i / RATE - time.monotonic()))
            task = asyncio.create_task(one(i))
            calls.add(task)
            task.add_done_callback(calls.discard)
        launch_rate = total / max(time.monotonic() - started, 1e-3)
        await asyncio.gather(*calls)
    return failures, task_ids, launch_rate


async def _final_statuses(dep: Deployment, task_ids: list[str]) -> Counter[str]:
    counts: Counter[str] = Counter()
    sem = asyncio.Semaphore(20)
    async with aiohttp.ClientSession(dep.base, headers=dep.admin) as http:

        async def status(task_id: str) -> None:
            async with sem:
                deadline = time.monotonic() + 60
                while True:
                    async with http.get(f"/api/v1/tasks/{task_id}") as resp:
                        state = (await resp.json())["data"]["status"]
                    if state not in ("queued", "running") or time.monotonic() > deadline:
                        counts[state] += 1
                        return
                    await asyncio.sleep(0.2)

        await asyncio.gather(*(status(t) for t in task_ids))
    return counts


def test_legitimate_traffic_survives_hostile_callers(deployment: Deployment) -> None:
    dep = deployment
    sync_id = dep.admin_post("/api/v1/sync-apis", {"funcId": "demo__hostile.plus"})["id"]
    async_id = dep.admin_post("/api/v1/async-apis", {"funcId": "demo__hostile.plus"})["id"]
    for n in range(5):  # the admin-only results the thief tries to read
        dep.admin_post("/api/v1/func/demo__hostile.secret",
                       {"kwargs": {"order": n}, "options": {"idempotencyKey": f"order-{n}"}})

    async def scenario() -> tuple[list[Any], list[str], float, Counter[int], list[Any]]:
        stop, statuses, stolen = asyncio.Event(), Counter[int](), list[Any]()
        attackers = [asyncio.create_task(hostile_sender(dep, sync_id, async_id, stop, statuses))
                     for _ in range(4)]
        attackers.append(asyncio.create_task(idempotency_thief(dep, sync_id, stop, stolen)))
        try:
            failures, task_ids, rate = await legitimate_load(dep, sync_id, async_id)
        finally:
            stop.set()
            await asyncio.gather(*attackers)
        return failures, task_ids, rate, statuses, stolen

    quiet = HealthProbe(dep.base + "/healthz")
    quiet.start()
    quiet.stop.wait(QUIET_PROBE_SECONDS)  # documented window: the quiet baseline's length
    quiet.stop.set()
    quiet.join(15)
    quiet_p95 = sorted(quiet.latencies)[int(len(quiet.latencies) * 0.95)]
    probe = HealthProbe(dep.base + "/healthz")
    probe.start()
    try:
        started = time.monotonic()
        failures, task_ids, rate, statuses, stolen = asyncio.run(scenario())
        elapsed = time.monotonic() - started
    finally:
        probe.stop.set()
        probe.join(15)
    worst = max(probe.latencies)
    p95 = sorted(probe.latencies)[int(len(probe.latencies) * 0.95)]
    print(f"\nhostile: {int(RATE * LOAD_SECONDS)} legitimate calls started at {rate:.0f}/s, all "
          f"done in {elapsed:.1f} s, "
          f"hostile answers {dict(statuses)}, /healthz polls {len(probe.latencies)}, "
          f"p95 {p95 * 1000:.0f} ms, worst {worst * 1000:.0f} ms "
          f"(quiet: p95 {quiet_p95 * 1000:.0f} ms, worst {max(quiet.latencies) * 1000:.0f} ms)")
    assert failures == [], failures[:10]
    assert stolen == [], stolen[:10]
    assert rate >= RATE * 0.5, f"the load generator fell far behind ({rate:.0f} calls/s)"
    assert sum(statuses.values()) >= 20 and all(s == 0 or 400 <= s < 500 for s in statuses), statuses
    assert probe.failures == [], probe.failures[:5]
    assert p95 < max(HEALTH_LIMIT, HEALTH_FACTOR * quiet_p95), f"/healthz p95 {p95 * 1000:.0f} ms"
    stall = max(STALL_LIMIT, STALL_FACTOR * max(quiet.latencies))
    assert worst < stall, f"/healthz took {worst * 1000:.0f} ms"
    assert asyncio.run(_final_statuses(dep, task_ids)) == Counter({"success": len(task_ids)})
    letters = dep.admin_get("/api/v1/ops/dead-letters")
    assert [d for d in letters if not d["task"].startswith("task-deep-")] == []  # see below


def test_an_envelope_the_worker_cannot_read_ends_failure(deployment: Deployment) -> None:
    """A task whose envelope the worker cannot decode (220 levels of kwargs: more than the
    Server lets in, from another producer) ends ``failure`` with a clear error on the task
    API instead of staying ``queued``."""
    dep = deployment
    env = TaskEnvelope(id=f"task-deep-{secrets.token_hex(4)}", func_id="demo__hostile.plus",
                       origin=Origin.ASYNC_API, queue="async", trigger_time=time.time())
    deep = "{}"
    for _ in range(220):
        deep = '{"a":' + deep + "}"
    body = env.to_json().replace('"kwargs":{}', f'"kwargs":{deep}')
    with redis.Redis.from_url(dep.redis_url) as r:
        r.xadd(dep.keys.queue("async"), {"task": env.id, "func": env.func_id, "origin": "asyncAPI",
                                         "body": body})
    # the task is unknown (404) until the worker has read the entry and ended it
    deadline = time.monotonic() + 60
    while True:
        resp = requests.get(f"{dep.base}/api/v1/tasks/{env.id}?wait=5", headers=dep.admin, timeout=60)
        ended = resp.status_code == 200 and dep.data(resp)["status"] not in ("queued", "running")
        if ended or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    task = dep.data(resp)
    assert task["status"] == "failure", task
    assert "cannot be read" in json.dumps(task)
