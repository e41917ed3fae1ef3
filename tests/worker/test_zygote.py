"""Children forked by the zygote, with real worker processes: they are the worker's own
children and die with it, a dead zygote is replaced, recycling is cheap and leaks no state
between children. (Crash, timeout and memory reporting of forked children: test_execution,
which runs on forked children too — checked here by ``forked``.)"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from tests.processes import wait_for
from tests.worker.conftest import WORK, WORK_CODE, Bench, WorkerProcess, marks

from fluxfunc_common.envelope import TaskStatus
from fluxfunc_common.fastpaths import plain_forced

# Forked children are the fast variant: not in the pass with FLUXFUNC_PLAIN_VARIANTS=1.
fast_only = pytest.mark.skipif(plain_forced(), reason="FLUXFUNC_PLAIN_VARIANTS=1: no zygote")

STATE = "demo__state"
STATE_CODE = '''
import os
import random
import sys


@DFF.API("Leak")
def leak():
    """What a previous task of this child left in the interpreter, then leave something."""
    seen = getattr(sys, "_fluxfunc_leak", None)
    sys._fluxfunc_leak = os.getpid()
    return {"pid": os.getpid(), "seen": seen, "random": random.random()}
'''


def processes(w: WorkerProcess) -> tuple[psutil.Process | None, list[psutil.Process]]:
    """(the zygote, the task children) of a worker process."""
    kids = psutil.Process(w.pid).children()
    zygote = next((p for p in kids if p.name() == "fluxfunc-zygote"), None)
    return zygote, [p for p in kids if p.name() == "fluxfunc-child"]


def forked(child: psutil.Process) -> bool:
    """Forked by the zygote (its command line is the zygote's), not spawned."""
    return "fluxfunc_worker.zygote" in " ".join(child.cmdline())


def settled_children(w: WorkerProcess, timeout: float = 30.0) -> list[psutil.Process]:
    """The worker's task children once every one of them shows its command line: a child that
    retires after its last task has an empty one while it exits, so wait (with a deadline) for
    the retiring ones to be gone."""
    deadline = time.monotonic() + timeout
    while True:
        _, children = processes(w)
        try:
            if children and all(c.cmdline() for c in children):
                return children
        except psutil.NoSuchProcess:
            pass
        if time.monotonic() > deadline:
            return children
        time.sleep(0.1)


def gone(pids: list[int]) -> bool:
    return not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
                   for p in pids)


@fast_only
async def test_children_are_forked_and_die_with_a_sigkilled_worker(
        bench: Bench, workers: Callable[..., WorkerProcess], tmp_path: Path) -> None:
    await bench.publish(WORK, WORK_CODE)
    out = tmp_path / "e.txt"
    w = workers("w", concurrency=2)
    await w.ready(bench)
    zygote, children = processes(w)
    assert zygote is not None and len(children) == 2
    assert all(forked(c) and c.ppid() == w.pid for c in children), "forked, yet the worker's own"
    task_id = await bench.enqueue(f"{WORK}.sleepy", {"path": str(out), "seconds": 30})
    await wait_for(lambda: _has(out, "start", task_id), 15, what="task started")
    pids = [zygote.pid, *(c.pid for c in children)]
    w.kill()
    deadline = time.monotonic() + 10
    while not gone(pids):
        assert time.monotonic() < deadline, "a child or the zygote outlived its SIGKILLed worker"
        await asyncio.sleep(0.05)


@fast_only
async def test_a_dead_zygote_is_replaced_and_children_are_forked_again(
        bench: Bench, workers: Callable[..., WorkerProcess], tmp_path: Path) -> None:
    await bench.publish(WORK, WORK_CODE)
    w = workers("w", concurrency=1)
    await w.ready(bench)
    zygote, _ = processes(w)
    assert zygote is not None
    zygote.kill()
    zygote.wait(5)
    # the child dies with its task: its replacement needs a fork, from a new zygote
    died = await bench.result(await bench.enqueue(f"{WORK}.die"))
    assert died.status is TaskStatus.FAILURE and "exited with code 1" in (died.exception or "")
    nxt = await bench.result(await bench.enqueue(f"{WORK}.append", {"path": str(tmp_path / "e.txt")}))
    assert nxt.status is TaskStatus.SUCCESS
    again, _ = processes(w)
    assert again is not None and again.pid != zygote.pid
    children = settled_children(w)
    assert children and all(forked(c) for c in children)
    assert "the zygote is gone; starting a new one" in w.text()
    assert w.stop() == 0


@fast_only
async def test_recycled_children_start_clean(bench: Bench, workers: Callable[..., WorkerProcess]) -> None:
    await bench.publish(STATE, STATE_CODE)
    w = workers("w", concurrency=1, max_tasks_per_child=2)
    await w.ready(bench)
    runs = []
    for _ in range(8):
        result = await bench.result(await bench.enqueue(f"{STATE}.leak"))
        assert result.status is TaskStatus.SUCCESS
        runs.append(result.result)
    by_child: dict[int, list[dict[str, object]]] = {}
    for r in runs:
        by_child.setdefault(int(r["pid"]), []).append(r)  # type: ignore[call-overload]
    assert len(by_child) == 4 and all(len(v) == 2 for v in by_child.values()), by_child
    for pid, (first, second) in by_child.items():
        assert first["seen"] is None, "a fresh child inherited another child's state"
        assert second["seen"] == pid  # module state survives between the tasks of one child
    assert len({r["random"] for r in runs}) == len(runs), "each child reseeds random"
    children = settled_children(w)
    assert children and all(forked(c) for c in children)
    assert w.stop() == 0


@fast_only
async def test_forked_children_report_crashes_like_spawned_ones(
        bench: Bench, workers: Callable[..., WorkerProcess], tmp_path: Path) -> None:
    """SIGSEGV / os._exit / timeout of forked children: exact exit statuses from the kernel."""
    await bench.publish(WORK, WORK_CODE)
    w = workers("w", concurrency=1)
    await w.ready(bench)
    crash = await bench.result(await bench.enqueue(f"{WORK}.segfault"))
    assert "killed by signal SIGSEGV (exit code -11)" in (crash.exception or "")
    died = await bench.result(await bench.enqueue(f"{WORK}.die"))
    assert died.exception == "WorkerChildDied: worker child process exited with code 1 while running the task"
    children = settled_children(w)
    assert children and all(forked(c) for c in children)
    assert w.stop() == 0


async def _has(path: Path, what: str, task_id: str) -> bool:
    return any(m == what and t == task_id for m, t, _ in marks(path))


async def test_without_fast_paths_children_are_spawned(
        bench: Bench, workers: Callable[..., WorkerProcess], tmp_path: Path) -> None:
    """``worker.fast_paths: false`` (what FLUXFUNC_PLAIN_VARIANTS=1 forces): no zygote, every
    child a fresh interpreter of the worker's own, and tasks run as usual."""
    await bench.publish(WORK, WORK_CODE)
    w = workers("w", concurrency=2, fast_paths=False)
    await w.ready(bench)
    zygote, children = processes(w)
    assert zygote is None and len(children) == 2
    assert not any(forked(c) for c in children) and all(c.ppid() == w.pid for c in children)
    done = await bench.result(await bench.enqueue(f"{WORK}.append", {"path": str(tmp_path / "e.txt")}))
    assert done.status is TaskStatus.SUCCESS
    assert w.stop() == 0
