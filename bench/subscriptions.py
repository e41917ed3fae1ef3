"""Benchmark of subscriptions: messages/s from MQTT publish to completed task, ONE worker.

A private redis-server, a private Mosquitto (no per-client queue cap) and a SQLite store; the
script is published straight into the store and an MQTT connector with one topic handler is
created there. A real ``fluxfunc-beat`` (the leader, running the subscription) and a real
``fluxfunc-worker`` process run. N QoS 1 messages ``"<seq> <publish time>"`` are published as
fast as the broker takes them; the handler appends ``"<seq> <publish time> <run time>"`` to a
file. Reported: messages/s (N over first publish → last handler run), the added latency
publish → handler run (p50/p99) and how many messages ran more than once.

Run it twice: as a burst (messages/s is the capacity; the latency then includes the wait in
the queue) and with ``--rate`` below the capacity (the latency is what the subscription adds).
Target: ≥ 2,000 messages/s. The machine's load matters (2 cores shared by Redis, Mosquitto,
the Beat, the worker, its children and the publisher): the load average is reported.

    .venv/bin/python bench/subscriptions.py [--messages 20000] [--concurrency 2] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

# the repository root first (the test helpers: the private Mosquitto)
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.beat.brokers import private_mosquitto

from fluxfunc_common.connectors.types import ConnectorType, StoredConnector
from fluxfunc_common.proc.localredis import private_redis
from fluxfunc_common.redisconn import open_redis
from fluxfunc_common.scripts import analyse
from fluxfunc_common.settings import Settings
from fluxfunc_common.store import Entity, open_store

BENCH_SECRET = "bench-secret-0123456789abcdef0123456789"
BIN = Path(sys.executable).parent
SCRIPT_ID = "demo__subbench"
CODE = '''
import time

@DFF.API("Handle")
def handle(topic, message):
    with open({path!r}, "a") as f:
        f.write(f"{{message}} {{time.time():.6f}}\\n")
'''


def publish(port: int, topic: str, payloads: list[bytes] | None = None, *, count: int = 0,
            rate: float | None = None) -> None:
    """Publish ``payloads``, or ``count`` messages ``"<seq> <publish time>"`` at most ``rate``
    a second (as fast as the broker takes them without)."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-pub-{secrets.token_hex(4)}")
    client.max_inflight_messages_set(1000)
    client.connect("127.0.0.1", port, 60)
    client.loop_start()
    try:
        infos = [client.publish(topic, p, qos=1) for p in payloads or []]
        started = time.monotonic()
        for i in range(count):
            infos.append(client.publish(topic, f"{i} {time.time():.6f}".encode(), qos=1))
            if rate and (ahead := (i + 1) / rate - (time.monotonic() - started)) > 0:
                time.sleep(ahead)
        for info in infos:
            info.wait_for_publish(timeout=120)
    finally:
        client.loop_stop()
        client.disconnect()


async def prepare(settings: Settings, port: int, topic: str, seen: Path) -> None:
    code = CODE.format(path=str(seen))
    async with open_redis(settings.redis) as clients, open_store(settings.store) as store:
        await store.create(Entity.SCRIPT_SET, {"id": "demo", "title": "demo"})
        await store.create(Entity.SCRIPT, {"id": SCRIPT_ID, "scriptSetId": "demo", "code": code})
        await store.publish_script(SCRIPT_ID, code, analyse(SCRIPT_ID, code).funcs)
        await clients.main.incr(clients.keys.scripts_version())
        await store.create_connector(StoredConnector(
            id="bench_mqtt", type=ConnectorType.MQTT,
            config={"host": "127.0.0.1", "port": port,
                    "topicHandlers": [{"topic": topic, "funcId": f"{SCRIPT_ID}.handle"}]}))
        await clients.main.incr(clients.keys.connectors_version())


def lines(path: Path) -> list[list[str]]:
    if not path.exists():
        return []
    return [ln.split() for ln in path.read_text().split("\n")[:-1] if len(ln.split()) == 3]


def enqueue_span(db: Path, started: float) -> float:
    """Seconds from the first publish to the last subscription task's trigger (enqueue) time."""
    with sqlite3.connect(db, timeout=10) as conn:
        (last,) = conn.execute("SELECT MAX(trigger_time) FROM task_records "
                               "WHERE origin = 'subscription'").fetchone()
    return float(last or started) - started


def start(program: str, config: Path, workdir: Path, *extra: str) -> subprocess.Popen[bytes]:
    log = (workdir / f"{program}.log").open("wb")
    env = {**os.environ, "FLUXFUNC_STATE_DIR": str(workdir / program)}
    (workdir / program).mkdir(exist_ok=True)
    return subprocess.Popen([str(BIN / program), "--config", str(config), *extra], stdout=log,
                            stderr=subprocess.STDOUT, env=env)


def wait_live(port: int, topic: str, seen: Path) -> None:
    """Publish probes until one ran (the Beat leads, the subscription and the worker are up)."""
    deadline = time.monotonic() + 90
    while not any(parts[0] == "probe" for parts in lines(seen)):
        if time.monotonic() > deadline:
            raise SystemExit("the subscription did not come up (see the logs)")
        publish(port, topic, [f"probe {time.time():.6f}".encode()])
        time.sleep(0.5)


def run(redis_url: str, messages: int, concurrency: int, rate: float | None) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="fluxfunc-bench-subs-"))
    seen = workdir / "seen.txt"
    topic = f"bench/{secrets.token_hex(6)}"
    settings = Settings.model_validate({
        "secret": BENCH_SECRET, "redis": {"url": redis_url, "namespace": "bench" + secrets.token_hex(4)},
        "store": {"url": f"sqlite:///{workdir / 'store.db'}"}, "log": {"level": "WARNING", "format": "json"},
        "worker": {"queues": ["default"], "concurrency": concurrency},
    })
    config = workdir / "config.yaml"
    data = settings.model_dump(mode="json")
    data["secret"] = BENCH_SECRET
    config.write_text(yaml.safe_dump(data))
    procs: list[subprocess.Popen[bytes]] = []
    with private_mosquitto() as port:
        asyncio.run(prepare(settings, port, topic, seen))
        try:
            procs.append(start("fluxfunc-worker", config, workdir, "--concurrency", str(concurrency)))
            procs.append(start("fluxfunc-beat", config, workdir))
            wait_live(port, topic, seen)
            started = time.time()
            publish(port, topic, count=messages, rate=rate)
            published = time.time()
            deadline = time.monotonic() + 60 + messages / 100
            while len({p[0] for p in lines(seen)} - {"probe"}) < messages:
                if time.monotonic() > deadline:
                    raise SystemExit(f"only part of the messages ran (see {workdir})")
                time.sleep(0.2)
        finally:
            for proc in procs:
                proc.send_signal(signal.SIGTERM)
            for proc in procs:
                proc.wait(30)
    enqueued = enqueue_span(workdir / "store.db", started)
    runs = [p for p in lines(seen) if p[0] != "probe"]
    latencies = sorted(float(p[2]) - float(p[1]) for p in runs)
    last = max(float(p[2]) for p in runs)
    shutil.rmtree(workdir, ignore_errors=True)
    return {"messages": messages, "concurrency": concurrency, "rate": rate,
            "publish_seconds": round(published - started, 3),
            "seconds": round(last - started, 3),
            "messages_per_second": round(messages / (last - started), 1),
            "latency_p50_ms": round(latencies[len(latencies) // 2] * 1000, 1),
            "latency_p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 1),
            "duplicates": len(runs) - messages,
            # the subscription alone: first publish → last task enqueued (task records)
            "enqueue_seconds": round(enqueued, 3),
            "enqueued_per_second": round(messages / enqueued, 1) if enqueued else None,
            "load_average": [round(x, 2) for x in os.getloadavg()]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--rate", type=float, help="publish at most this many messages/s "
                        "(below the worker's capacity: the latency is the added latency alone; "
                        "without: a burst, messages/s is the capacity)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with private_redis(prefix="fluxfunc-bench-redis-") as server:
        result = run(server.url, args.messages, args.concurrency, args.rate)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    r = result
    print(f"mqtt → task, 1 worker (concurrency {r['concurrency']}, rate {r['rate'] or 'burst'}): "
          f"{r['messages']} messages in "
          f"{r['seconds']} s = {r['messages_per_second']:,.0f} messages/s (published in "
          f"{r['publish_seconds']} s); publish → run p50 {r['latency_p50_ms']} ms, p99 "
          f"{r['latency_p99_ms']} ms; {r['duplicates']} duplicates; "
          f"the subscription alone (publish → enqueued): {r['enqueued_per_second']} messages/s "
          f"(load average {r['load_average']})")


if __name__ == "__main__":
    main()
