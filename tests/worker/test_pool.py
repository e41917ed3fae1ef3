"""The child pool in-process: forked and spawned children, falling back to spawning when the
zygote cannot serve, jobs that wait for a child, and replacement at retirement."""

from __future__ import annotations

import os
import time
from typing import Any

import pytest

from fluxfunc_common.envelope import TaskEnvelope
from fluxfunc_common.fastpaths import plain_forced
from fluxfunc_worker import zygote
from fluxfunc_worker.messages import JSONObject, RunMessage
from fluxfunc_worker.outcome import End, Outcome
from fluxfunc_worker.pool import Pool
from fluxfunc_worker.rpc import RpcError
from fluxfunc_worker.run import run_message

CODE = '''
import os
import time


@DFF.API("Pid")
def pid():
    return os.getpid()


@DFF.API("Nap")
def nap(seconds=0.3):
    time.sleep(seconds)
    return os.getpid()


@DFF.API("Fds")
def fds():
    return sorted(int(n) for n in os.listdir("/proc/self/fd"))
'''


async def rpc(method: str, params: JSONObject, task: RunMessage | None) -> object:
    if method == "script" and params.get("scriptId") == "demo__pool":
        return [CODE, 1]
    raise RpcError(f"no {method} here")


def message(func: str, **kwargs: Any) -> RunMessage:
    env = TaskEnvelope(id=f"task-{time.monotonic_ns()}", func_id=f"demo__pool.{func}", kwargs=kwargs,
                       trigger_time=time.time())
    return run_message(env)


def pool(size: int = 1, **options: Any) -> Pool:
    return Pool(size, max_tasks=options.pop("max_tasks", 1000), memory_mb=256, rpc=rpc, **options)


@pytest.mark.skipif(plain_forced(), reason="FLUXFUNC_PLAIN_VARIANTS=1: no zygote")
async def test_forked_children_run_tasks_and_hold_no_worker_descriptor() -> None:
    async with pool(2) as p:
        assert p.describe()["forked"] == 2 and p.spawned == 0
        outcome = await p.run(message("fds"), 10)
        assert outcome.status == "success", outcome
        assert len(orjson_result(outcome)) <= 6, "stdio, its socket and little else"
        pids = {orjson_result(await p.run(message("pid"), 10)) for _ in range(4)}
        assert pids <= set(p.pids()) and os.getpid() not in pids


async def test_the_pool_spawns_when_the_zygote_cannot_start(monkeypatch: pytest.MonkeyPatch) -> None:
    async def broken(self: zygote.Zygote) -> None:
        raise RuntimeError("no zygote today")

    monkeypatch.setattr(zygote.Zygote, "start", broken)
    async with pool(2) as p:
        assert p.spawned == 2 and p.describe()["zygote"] is None
        assert (await p.run(message("pid"), 10)).status == "success"


async def test_the_pool_spawns_once_the_zygote_keeps_failing(monkeypatch: pytest.MonkeyPatch) -> None:
    async def refuse(self: zygote.Zygote, sock: object) -> None:
        raise OSError(1, "the zygote could not fork: Operation not permitted")

    monkeypatch.setattr(zygote.Zygote, "fork", refuse)
    async with pool(1, max_tasks=1) as p:
        for _ in range(4):  # every task retires its child: one replacement each
            assert (await p.run(message("pid"), 10)).status == "success"
        assert p.spawned >= 4
        assert p.describe()["zygote"] is None, "given up after repeated failures"


async def test_a_job_waiting_for_a_child_can_end_before_it_starts() -> None:
    async with pool(1) as p:
        first = p.submit(message("nap", seconds=0.3), 10)
        second = p.submit(message("pid"), 10)
        third = p.submit(message("pid"), 10)
        assert p.queued == 2 and first.running and not second.running
        second.stop(End.CANCELLED)
        assert second.future.done() and p.queued == 1, "ended at once, not when the child frees up"
        cancelled = await p.wait(second)
        assert (cancelled.end, cancelled.status) == (End.CANCELLED, "cancelled")
        assert (await p.wait(first)).status == "success"
        assert (await p.wait(third)).status == "success"
        fourth = p.submit(message("nap", seconds=0.3), 10)
        fifth = p.submit(message("pid"), 10)
        fifth.stop(End.LOST)
        assert fifth.future.done() and not fourth.future.done(), "at once, not after the nap"
        assert (await p.wait(fifth)).end is End.LOST
        assert (await p.wait(fourth)).status == "success"


async def test_a_job_that_expires_while_it_waits_never_starts() -> None:
    async with pool(1) as p:
        busy = p.submit(message("nap", seconds=0.2), 10)
        late = p.submit(message("pid"), 10, expires=time.time() - 1)
        expired = await p.wait(late)
        assert (expired.end, expired.status, expired.report) == (End.EXPIRED, "expired", None)
        assert (await p.wait(busy)).status == "success"
        assert (await p.run(message("pid"), 10)).status == "success", "the child is free again"


@pytest.mark.skipif(plain_forced(), reason="FLUXFUNC_PLAIN_VARIANTS=1: counts forks")
async def test_a_retired_child_is_replaced_without_waiting_for_its_exit() -> None:
    async with pool(1, max_tasks=1) as p:
        pids = [orjson_result(await p.run(message("pid"), 10)) for _ in range(10)]
        assert len(set(pids)) == 10
        assert p.spawned == 0 and p.describe()["forked"] >= 10, "a fork per task, not an interpreter start"


def orjson_result(outcome: Outcome) -> Any:
    assert outcome.report is not None, outcome
    return outcome.report.get("result")
