"""A script's timed override and timed pause of a cron job, with a real Beat and a real worker:
``DFF.CRON_JOB.pause(expires=2)`` stops the fires, which come back by themselves;
``DFF.CRON_JOB.set_cron_expr(expr, expires=2)`` fires on the override, then on the configured
expression again — also across a Beat restart (docs/user-guide.md, "Entry points")."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from tests.beat.conftest import WORKER, BeatProcess
from tests.processes import wait_for

from fluxfunc_common.envelope import Origin, TaskStatus
from fluxfunc_common.redisconn import RedisClients
from fluxfunc_common.scripts import analyse
from fluxfunc_common.settings import Settings
from fluxfunc_common.store import Entity, Store
from fluxfunc_common.streams import StreamProtocol
from fluxfunc_common.tasks import build_envelope

LEASE = 5.0
JOB = "cron-live"
CONFIGURED = "*/2 * * * * *"  # even seconds
OVERRIDE = "* * * * * *"  # every second
SCRIPT = '''
@DFF.API("Tick")
def tick(path):
    with open(path, "a") as f:
        f.write(f"{_DFF_TRIGGER_TIME_MS} {_DFF_CRON_EXPR}\\n")


@DFF.API("Pause")
def pause(seconds):
    DFF.CRON_JOB.pause(seconds, "cron-live")


@DFF.API("Override")
def override(expr, seconds):
    DFF.CRON_JOB.set_cron_expr(expr, seconds, entity_id="cron-live")
'''

Fire = tuple[int, str]  # trigger time (ms), the expression it fired on


class Live:
    """A published script, the cron job on it, a worker and a Beat, and the fires so far."""

    def __init__(self, settings: Settings, store: Store, clients: RedisClients, tmp: Path,
                 procs: Callable[..., BeatProcess]) -> None:
        self.settings, self.store, self.tmp, self.procs = settings, store, tmp, procs
        self.streams = StreamProtocol(clients.main, clients.keys, blocking=clients.blocking)
        self.fires_file = tmp / "fires.txt"
        self.beat: BeatProcess | None = None

    async def start(self, cron_expr: str) -> None:
        await self.store.create(Entity.SCRIPT_SET, {"id": "demo", "title": "demo"})
        await self.store.create(Entity.SCRIPT, {"id": "demo__live", "scriptSetId": "demo",
                                                "title": "live", "code": SCRIPT})
        await self.store.publish_script("demo__live", SCRIPT, analyse("demo__live", SCRIPT).funcs)
        await self.store.create(Entity.CRON_JOB, {
            "id": JOB, "funcId": "demo__live.tick", "kwargs": {"path": str(self.fires_file)},
            "cronExpr": cron_expr, "overlapPolicy": "allow", "misfirePolicy": "skip"})
        self.procs(self.settings, "worker", WORKER)
        self.beat = self.procs(self.settings, "beat")

    def fires(self) -> list[Fire]:
        if not self.fires_file.exists():
            return []
        out = []
        for line in self.fires_file.read_text().splitlines():
            at, expr = line.split(" ", 1)
            out.append((int(at), expr))
        return sorted(out)

    async def wait_fires(self, what: str, test: Callable[[list[Fire]], bool]) -> list[Fire]:
        async def done() -> bool:
            return test(self.fires())

        try:
            await wait_for(done, 60, interval=0.1, what=what)
        except AssertionError:
            beat = self.beat.text()[-3000:] if self.beat else ""
            raise AssertionError(f"{what}: fires {self.fires()}\nbeat: {beat}") from None
        return self.fires()

    async def run(self, func: str, kwargs: dict[str, object]) -> None:
        """Run one task of the script through the worker (the script's own DFF call)."""
        func_row = await self.store.get(Entity.FUNC, f"demo__live.{func}")
        env = build_envelope(func_row, kwargs, origin=Origin.DIRECT, now=time.time(),
                             settings=self.settings.tasks)
        await self.streams.enqueue(env, max_len=self.settings.redis.queue_max_len)
        result = await wait_for(lambda: self.streams.get_result(env.id), 60, what=f"{func} ran")
        assert result.status is TaskStatus.SUCCESS, result.exception

    async def job(self) -> dict[str, object]:
        return await self.store.get(Entity.CRON_JOB, JOB)

    async def heard_ms(self, beat: BeatProcess, since: float) -> int:
        """When ``beat`` applied the job's change (its "cron job loaded" line)."""
        async def loaded() -> int | None:
            stamps = [_epoch_ms(line["timestamp"]) for line in beat.lines()
                      if line.get("event") == "cron job loaded" and line.get("cron_id") == JOB]
            late = [s for s in stamps if s >= since * 1000]
            return late[-1] if late else None

        found: int = await wait_for(loaded, 30, what="the Beat applied the change")
        return found


def _epoch_ms(iso: object) -> int:
    return int(datetime.fromisoformat(str(iso).replace("Z", "+00:00")).timestamp() * 1000)


def _settings(make_settings: Callable[..., Settings]) -> Settings:
    return make_settings(beat={"lease_seconds": LEASE},
                         worker={"lease_seconds": 5, "concurrency": 2, "record_batch_seconds": 0.2})


async def test_timed_pause_stops_fires_then_they_resume(
        store: Store, clients: RedisClients, tmp_path: Path,
        make_settings: Callable[..., Settings], beat_procs: Callable[..., BeatProcess]) -> None:
    live = Live(_settings(make_settings), store, clients, tmp_path, beat_procs)
    await live.start(OVERRIDE)
    await live.wait_fires("the job fires", lambda f: len(f) >= 2)
    asked = time.time()
    await live.run("pause", {"seconds": 2})
    job = await live.job()
    paused_until_ms = int(float(str(job["pauseExpireTime"])) * 1000)
    assert not job.get("isDisabled")  # a timed pause is not a disable
    assert live.beat is not None
    heard = await live.heard_ms(live.beat, asked)
    fires = await live.wait_fires("the fires resume after the pause",
                                  lambda f: any(at > paused_until_ms for at, _ in f))
    dropped = [at for at, _ in fires if heard < at <= paused_until_ms]
    assert dropped == [], (heard, paused_until_ms, fires)  # once the Beat knew: nothing until its end
    assert (await live.job())["pauseExpireTime"] is not None  # it ended by itself, nobody cleared it


async def test_timed_override_then_back_on_the_configured_expression(
        store: Store, clients: RedisClients, tmp_path: Path,
        make_settings: Callable[..., Settings], beat_procs: Callable[..., BeatProcess]) -> None:
    live = Live(_settings(make_settings), store, clients, tmp_path, beat_procs)
    await live.start(CONFIGURED)
    await live.wait_fires("the job fires", lambda f: len(f) >= 1)
    asked = time.time()
    await live.run("override", {"expr": OVERRIDE, "seconds": 2})
    job = await live.job()
    assert job["cronExpr"] == CONFIGURED and job["dynamicCronExpr"] == OVERRIDE
    until_ms = int(float(str(job["dynamicCronExprExpireTime"])) * 1000)
    assert live.beat is not None
    heard = await live.heard_ms(live.beat, asked)
    fires = await live.wait_fires("two fires on the configured expression after the override",
                                  lambda f: len([at for at, _ in f if at > until_ms]) >= 2)
    during = [(at, expr) for at, expr in fires if heard < at <= until_ms]
    after = [(at, expr) for at, expr in fires if at > until_ms]
    assert during and all(expr == OVERRIDE for _, expr in during), (heard, until_ms, fires)
    assert all(expr == CONFIGURED and (at // 1000) % 2 == 0 for at, expr in after), fires


async def test_a_timed_override_survives_a_beat_restart(
        store: Store, clients: RedisClients, tmp_path: Path,
        make_settings: Callable[..., Settings], beat_procs: Callable[..., BeatProcess]) -> None:
    """The override is in the store: a Beat started while it holds fires on it, and goes back
    to the configured expression at its expiry without being told."""
    settings = _settings(make_settings)
    live = Live(settings, store, clients, tmp_path, beat_procs)
    await live.start(CONFIGURED)
    await live.wait_fires("the job fires", lambda f: len(f) >= 1)
    assert live.beat is not None and live.beat.stop() == 0
    await live.run("override", {"expr": OVERRIDE, "seconds": 15})  # no Beat hears this
    until_ms = int(float(str((await live.job())["dynamicCronExprExpireTime"])) * 1000)
    started = time.time()
    live.beat = beat_procs(settings, "beat2")
    fires = await live.wait_fires("fires on the override from the new Beat",
                                  lambda f: any(at > started * 1000 and e == OVERRIDE for at, e in f))
    assert all(e == OVERRIDE for at, e in fires if started * 1000 < at <= until_ms)
    await live.wait_fires("back on the configured expression at the expiry",
                          lambda f: len([at for at, _ in f if at > until_ms]) >= 2)
    assert all(e == CONFIGURED for at, e in live.fires() if at > until_ms)
