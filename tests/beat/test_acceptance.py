"""Acceptance with real `fluxfunc-beat` processes: two Beats and a SIGKILL, two deployments
sharing one database, `--check`, and startup failures."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
import yaml
from tests.beat.conftest import BEAT, WORKER, BeatProcess, seed
from tests.processes import wait_for

from fluxfunc_beat.leader import current_leader
from fluxfunc_common.keys import Keys
from fluxfunc_common.redisconn import RedisClients
from fluxfunc_common.scripts import analyse
from fluxfunc_common.settings import Settings, StoreSettings
from fluxfunc_common.store import Entity, Store, TaskRecordQuery, open_store

LEASE = 5.0


async def fires(redis: aioredis.Redis, keys: Keys) -> list[tuple[str, int, int]]:
    """(cron id, scheduled ms, enqueue ms from the entry id) of every fire on the cron stream."""
    out = []
    for entry_id, fields in await redis.xrange(keys.queue("cron")):
        body = json.loads(fields[b"body"])
        out.append((body["originId"], round(body["triggerTime"] * 1000), int(entry_id.split(b"-")[0])))
    return out


def check_every_second_once(rows: list[tuple[str, int, int]], ids: list[str], first_by: int,
                            last_from: int) -> None:
    counts = Counter((c, m) for c, m, _ in rows)
    dups = [k for k, n in counts.items() if n > 1]
    assert not dups, f"{len(dups)} (job, second) fired more than once, e.g. {dups[:3]}"
    for cron_id in ids:
        ms = sorted(m for c, m in counts if c == cron_id)
        assert ms, f"{cron_id} never fired"
        assert ms == list(range(ms[0], ms[-1] + 1000, 1000)), f"{cron_id}: a second is missing"
        assert ms[0] <= first_by and ms[-1] >= last_from, (cron_id, ms[0], ms[-1])


async def leader_pid(redis: aioredis.Redis, keys: Keys) -> int | None:
    """The pid of the Beat whose heartbeat says it leads."""
    async for key in redis.scan_iter(match=keys.svc_pattern("beat")):
        raw = await redis.get(key)
        if raw and json.loads(raw).get("leader"):
            return int(json.loads(raw)["pid"])
    return None


async def claims(store: Store) -> int:
    async with store.db.session() as s:  # type: ignore[attr-defined]
        rows = await s.fetchall("SELECT COUNT(*) FROM cron_fires")
    return int(rows[0][0])


async def fired_through(redis: aioredis.Redis, keys: list[Keys], ids: list[str], ms: int) -> bool:
    """Every job has fired the second ``ms`` (scheduled time) or a later one."""
    latest: dict[str, int] = {}
    for k in keys:
        for cron_id, scheduled, _ in await fires(redis, k):
            latest[cron_id] = max(latest.get(cron_id, 0), scheduled)
    return all(latest.get(cron_id, 0) >= ms for cron_id in ids)


def whole_second(ms: int) -> int:
    return ms - ms % 1000


@pytest.mark.slow
async def test_two_beats_200_jobs_every_second_and_a_sigkill(
        clients: RedisClients, store: Store, make_settings: Callable[..., Settings],
        beat_procs: Callable[[Settings, str], BeatProcess]) -> None:
    """The leader of two Beats is SIGKILLed: the standby takes over once the lease expires and
    every (job, second) is fired exactly once, before, across and after the takeover. (How
    late fires are, and how long a takeover takes, are figures: ``bench/beat.py`` measures
    them; this test only waits for them with generous deadlines.)"""
    settings = make_settings(beat={"lease_seconds": LEASE})
    redis, keys = clients.main, clients.keys
    ids = await seed(store, 200)
    procs = {"a": beat_procs(settings, "a")}
    await wait_for(lambda: leader_pid(redis, keys), 30, what="a Beat leads")
    leading_ms = int(time.time() * 1000)
    procs["b"] = beat_procs(settings, "b")
    await wait_for(lambda: _beat_alive(redis, keys, procs["b"].pid), 30, what="the standby's heartbeat")
    pid = await leader_pid(redis, keys)
    [victim] = [p for p in procs.values() if p.proc.pid == pid]
    survivor = next(p for p in procs.values() if p is not victim)
    steady_ms = whole_second(int(time.time() * 1000)) + 2000
    await wait_for(lambda: fired_through(redis, [keys], ids, steady_ms), 30, interval=0.2,
                   what="two more seconds fired by the first leader")
    token_before, epoch_before = await current_leader(redis, keys)
    victim.kill()
    killed_ms = int(time.time() * 1000)
    await wait_for(lambda: _new_epoch(redis, keys, epoch_before), LEASE + 30, what="the standby took over")
    took_over_ms = int(time.time() * 1000)
    resumed_ms = whole_second(took_over_ms) + 2000
    await wait_for(lambda: fired_through(redis, [keys], ids, resumed_ms), 30, interval=0.2,
                   what="fires after the takeover")
    assert survivor.stop() == 0

    rows = await fires(redis, keys)
    check_every_second_once(rows, ids, first_by=leading_ms + 5000, last_from=resumed_ms)
    assert len(rows) == await claims(store)  # each fire claimed once in the store
    assert token_before is not None
    print(f"\n{len(rows)} fires; takeover {took_over_ms - killed_ms} ms after SIGKILL")


async def _beat_alive(redis: aioredis.Redis, keys: Keys, pid: int) -> bool:
    async for key in redis.scan_iter(match=keys.svc_pattern("beat")):
        raw = await redis.get(key)
        if raw and json.loads(raw).get("pid") == pid:
            return True
    return False


async def _new_epoch(redis: aioredis.Redis, keys: Keys, before: int) -> bool:
    token, epoch = await current_leader(redis, keys)
    return token is not None and epoch > before


async def test_two_deployments_sharing_only_the_database(
        mysql_url: str, make_settings: Callable[..., Settings], redis_server: Any,
        beat_procs: Callable[[Settings, str], BeatProcess]) -> None:
    base = make_settings(beat={"lease_seconds": LEASE}, store={"url": mysql_url})
    async with open_store(StoreSettings(url=mysql_url)) as store:
        ids = await seed(store, 50)
        deployments = []
        for name in ("primary", "backup"):
            settings = base.with_overrides(redis={"namespace": f"{base.redis.namespace}-{name}"})
            deployments.append((settings, beat_procs(settings, name)))
        redis = aioredis.Redis.from_url(redis_server.url)
        try:
            for settings, _ in deployments:
                await wait_for(lambda s=settings: current_leader(redis, Keys(s.redis.namespace)), 30)
            both_lead_ms = int(time.time() * 1000)
            spaces = [Keys(s.redis.namespace) for s, _ in deployments]
            through_ms = whole_second(both_lead_ms) + 4000
            await wait_for(lambda: fired_through(redis, spaces, ids, through_ms), 30, interval=0.2,
                           what="four seconds fired while both deployments lead")
            for _, proc in deployments:
                assert proc.stop() == 0
            per = {s.redis.namespace: await fires(redis, Keys(s.redis.namespace)) for s, _ in deployments}
            rows = [r for part in per.values() for r in part]
            won = {ns: len(part) for ns, part in per.items()}
        finally:
            await redis.aclose()
        check_every_second_once(rows, ids, first_by=both_lead_ms + 5000, last_from=through_ms)
        assert len(rows) == await claims(store)
        print(f"\nfires won per deployment: {won}")


def _run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BEAT, *args], env=env, capture_output=True, text=True, timeout=60)


async def test_check_is_healthy_only_while_fresh(
        tmp_path: Path, make_settings: Callable[..., Settings],
        beat_procs: Callable[[Settings, str], BeatProcess], clients: RedisClients) -> None:
    settings = make_settings(beat={"lease_seconds": LEASE})
    proc = beat_procs(settings, "solo")
    config = str(tmp_path / "solo.yaml")
    env = {**os.environ, "FLUXFUNC_STATE_DIR": str(tmp_path)}
    await wait_for(lambda: clients.main.exists(clients.keys.svc("beat", _instance(tmp_path, settings, proc))),
                   20)
    ok = _run(["--config", config, "--check"], env)
    assert ok.returncode == 0, ok.stderr
    assert proc.stop() == 0
    gone = _run(["--config", config, "--check"], env)
    assert gone.returncode == 1 and gone.stderr.count("\n") == 1 and "unhealthy" in gone.stderr


def _instance(tmp_path: Path, settings: Settings, proc: BeatProcess) -> str:
    path = tmp_path / f"fluxfunc-{settings.redis.namespace}-beat-{proc.pid}.instance"
    return path.read_text().strip() if path.exists() else "-"


@pytest.mark.parametrize("broken", ["redis", "store"])
def test_unreachable_redis_or_store_is_one_clear_line(
        broken: str, tmp_path: Path, make_settings: Callable[..., Settings]) -> None:
    settings = make_settings()
    data = settings.model_dump(mode="json")
    data["secret"] = "test-secret-for-fluxfunc-tests-only-0123"
    if broken == "redis":
        data["redis"]["url"] = "redis://127.0.0.1:1/0"
    else:
        data["store"]["url"] = "mysql://root@127.0.0.1:1/nowhere"
    config = tmp_path / "broken.yaml"
    config.write_text(yaml.safe_dump(data))
    env = {**os.environ, "FLUXFUNC_STATE_DIR": str(tmp_path)}
    run = _run(["--config", str(config)], env)  # it gives up within the run's deadline: no endless retry
    assert run.returncode != 0
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and "unreachable" in lines[0] and ":1" in lines[0], run.stderr
    assert "Traceback" not in run.stderr + run.stdout
    if broken == "redis":
        # a live process's state file (this test's own pid), so --check has to ask Redis
        (tmp_path / f"fluxfunc-{settings.redis.namespace}-beat-{os.getpid()}.instance").write_text("some-i")
        check = _run(["--config", str(config), "--check"], env)
        assert check.returncode not in (0, 1) and check.stderr.count("\n") == 1
        assert "Redis unreachable at redis://127.0.0.1:1/0" in check.stderr


SLOW_SCRIPT = '''
import time

@DFF.API("Slow tick")
def slow():
    time.sleep(2.5)
    return "done"
'''


async def test_a_run_outlasting_its_interval_is_skipped_with_a_real_worker(
        store: Store, make_settings: Callable[..., Settings],
        beat_procs: Callable[..., BeatProcess]) -> None:
    """`overlapPolicy: skip`, a 2.5 s function on `* * * * * *`: between two runs the fires are
    skipped and recorded as `skipped`; runs never overlap."""

    settings = make_settings(beat={"lease_seconds": LEASE},
                             worker={"lease_seconds": 5, "concurrency": 2, "record_batch_seconds": 0.2})
    await store.create(Entity.SCRIPT_SET, {"id": "demo", "title": "demo"})
    await store.create(Entity.SCRIPT, {"id": "demo__slow", "scriptSetId": "demo", "title": "slow",
                                       "code": SLOW_SCRIPT})
    await store.publish_script("demo__slow", SLOW_SCRIPT, analyse("demo__slow", SLOW_SCRIPT).funcs)
    worker = beat_procs(settings, "worker", WORKER)
    await store.create(Entity.CRON_JOB, {"id": "cron-slow", "funcId": "demo__slow.slow", "kwargs": {},
                                         "cronExpr": "* * * * * *", "overlapPolicy": "skip"})
    beat = beat_procs(settings, "beat")

    async def records() -> list[dict[str, Any]]:
        query = TaskRecordQuery(filters={"originId": "cron-slow"}, limit=500)
        return (await store.list_task_records(query)).items

    async def enough() -> bool:
        return len([r for r in await records() if r["status"] == "success"]) >= 2

    try:
        await wait_for(enough, 30, interval=0.2)
    except AssertionError:
        raise AssertionError(f"records: {await records()}\nworker: {worker.log.read_text()[-3000:]}\n"
                             f"beat: {beat.log.read_text()[-3000:]}") from None
    assert beat.stop() == 0
    worker.stop()
    rows = await records()
    ran = sorted((r["startTime"], r["endTime"]) for r in rows if r["status"] == "success")
    skipped = [r for r in rows if r["status"] == "skipped"]
    assert len(skipped) >= 2, worker.log.read_text()[-2000:]
    assert all("overlapPolicy skip" in (r.get("exception") or "") for r in skipped)
    assert all(b[0] >= a[1] for a, b in itertools.pairwise(ran)), "two runs overlapped"
    fired = Counter(round(r["triggerTime"]) for r in rows)
    assert max(fired.values()) == 1  # each second is either run or skipped, once
