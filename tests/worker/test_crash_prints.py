"""A task whose child dies (or is stopped) in the middle keeps the print output it had
produced: each printed line reaches the worker as it is printed, masked like the rest."""

from __future__ import annotations

import time

from fluxfunc_common.envelope import TaskEnvelope
from fluxfunc_worker.messages import JSONObject, RunMessage
from fluxfunc_worker.outcome import End
from fluxfunc_worker.pool import Pool
from fluxfunc_worker.rpc import RpcError
from fluxfunc_worker.run import run_message

CODE = '''
import os
import time


@DFF.API("Crash")
def crash():
    print("step 1")
    print("step", 2, "of 3")
    os._exit(7)


@DFF.API("Hang")
def hang():
    print("started")
    time.sleep(60)


@DFF.API("Fine")
def fine():
    print("all good")
    return 1
'''


async def rpc(method: str, params: JSONObject, task: RunMessage | None) -> object:
    if method == "script" and params.get("scriptId") == "demo__prints":
        return [CODE, 1]
    raise RpcError(f"no {method} here")


def message(func: str) -> RunMessage:
    env = TaskEnvelope(id=f"task-{time.monotonic_ns()}", func_id=f"demo__prints.{func}", kwargs={},
                       trigger_time=time.time())
    return run_message(env)


async def test_a_crashed_child_keeps_what_it_printed() -> None:
    async with Pool(1, max_tasks=1000, memory_mb=256, rpc=rpc) as pool:
        outcome = await pool.run(message("crash"), 30)
        assert (outcome.end, outcome.status) == (End.DIED, "failure")
        assert "WorkerChildDied" in (outcome.exception or "")
        assert outcome.print_logs == "step 1\nstep 2 of 3\n"

        stopped = await pool.run(message("hang"), 0.5)  # stopped at its timeout
        assert (stopped.end, stopped.status, stopped.print_logs) == (End.TIMEOUT, "timeout", "started\n")

        fine = await pool.run(message("fine"), 30)  # a normal end: the child's own capture
        assert fine.status == "success" and fine.report is not None
        assert fine.report.get("printLogs") == "all good\n" and fine.print_logs is None
