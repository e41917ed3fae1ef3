"""The child pool in-process: forked and spawned children, falling back to spawning when the
zygote cannot serve, jobs that wait for a child, and replacement at retirement."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import pytest

from fluxfunc_common.envelope import TaskEnvelope
from fluxfunc_worker import zygote
from fluxfunc_worker.pool import Outcome, Pool, RpcError
from fluxfunc_worker.runs import run_message

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


async def rpc(method: str, params: dict[str, Any], task: dict[str, Any] | None) -> Any:
    if method == "script" and params.get("scriptId") == "demo__pool":
        return [CODE, 1]
    raise RpcError(f"no {method} here")


def message(func: str, **kwargs: Any) -> dict[str, Any]:
    env = TaskEnvelope(id=f"task-{time.monotonic_ns()}", func_id=f"demo__pool.{func}", kwargs=kwargs,
                       trigger_time=time.time())
    return run_message(env)


def pool(size: int = 1, **options: Any) -> Pool:
    return Pool(size, max_tasks=options.pop("max_tasks", 1000), memory_mb=256, rpc=rpc, **options)


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
        stop = False
        second = p.submit(message("pid"), 10, abort=lambda: Outcome("cancelled", {"exception": "x"})
                          if stop else None)
        third = p.submit(message("pid"), 10)
        assert p.queued == 2 and p.is_waiting(second.message["id"])
        stop = True
        assert (await p.wait(second)).status == "cancelled"  # asked when the child freed up
        assert (await p.wait(first)).status == "success"
        assert (await p.wait(third)).status == "success"
        fourth = p.submit(message("nap", seconds=0.3), 10)
        fifth = p.submit(message("pid"), 10)
        assert p.stop_task(fifth.message["id"], "lost")
        assert (await asyncio.wait_for(p.wait(fifth), 0.1)).status == "lost"  # at once, not after the nap
        assert (await p.wait(fourth)).status == "success"


async def test_a_retired_child_is_replaced_without_waiting_for_its_exit() -> None:
    async with pool(1, max_tasks=1) as p:
        pids = [orjson_result(await p.run(message("pid"), 10)) for _ in range(10)]
        assert len(set(pids)) == 10
        assert p.spawned == 0 and p.describe()["forked"] >= 10, "a fork per task, not an interpreter start"


def orjson_result(outcome: Outcome) -> Any:
    return outcome.fields.get("result")
