"""Where async tasks go (:class:`~fluxfunc_worker.asyncroom.AsyncRoom`) and how the fetch
loop's capacity follows (:meth:`~fluxfunc_worker.slots.Slots.resize`), without processes."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from fluxfunc_worker.asyncroom import AsyncRoom
from fluxfunc_worker.childproc import Child, Job
from fluxfunc_worker.outcome import End, Outcome
from fluxfunc_worker.slots import Slots


class FakeChild:
    def __init__(self, name: str) -> None:
        self.name = name
        self.pid = hash(name) & 0xFFFF
        self.async_jobs: dict[str, Job] = {}
        self.accepting = False
        self.alive = True
        self.sent: list[dict[str, Any]] = []
        self.halted = False
        self.stopping = False

    def send(self, message: dict[str, Any]) -> None:
        self.sent.append(dict(message))

    send_soon = send

    def halt(self) -> None:
        self.halted = True


def job(task_id: str, timeout: float = 30.0, expires: float | None = None) -> Job:
    message: Any = {"type": "run", "id": task_id}
    return Job(cast(Any, None), message, timeout, expires, asyncio.get_running_loop().create_future(),
               is_async=True)


def room(limit: int = 3, size: int = 2) -> tuple[AsyncRoom, list[int], list[tuple[Job, Outcome]]]:
    capacity: list[int] = []
    resolved: list[tuple[Job, Outcome]] = []

    def resolve(j: Job, outcome: Outcome) -> None:
        resolved.append((j, outcome))
        j.future.set_result(outcome)

    r = AsyncRoom(size, limit, stamp=lambda c, j: None, resolve=resolve, on_capacity=capacity.append)
    return r, capacity, resolved


def as_child(c: FakeChild) -> Child:
    return cast(Child, c)


async def test_async_tasks_fill_one_child_before_the_next() -> None:
    r, capacity, _ = room(limit=3, size=2)
    idle = [FakeChild("a"), FakeChild("b")]

    def pop_idle() -> Child | None:
        return as_child(idle.pop(0)) if idle else None

    jobs = [job(f"t{i}") for i in range(7)]
    for j in jobs:
        r.place(j, pop_idle, lambda c: None, holding=False)
    a, b = (cast(FakeChild, j.child) for j in (jobs[0], jobs[3]))
    assert [j.child for j in jobs[:3]] == [as_child(a)] * 3, "the first child fills up first"
    assert [j.child for j in jobs[3:6]] == [as_child(b)] * 3
    assert jobs[6].child is None and list(r.waiting) == [jobs[6]], "no room: it waits"
    assert capacity == [2 + 2, 2 + 4], "each child accepting async tasks is `limit` places"
    assert all(m["isAsync"] for m in a.sent + b.sent)


async def test_a_waiting_sync_task_makes_the_emptiest_async_child_drain() -> None:
    r, capacity, _ = room(limit=5, size=2)
    a, b = FakeChild("a"), FakeChild("b")
    for c, n in ((a, 3), (b, 1)):
        r.enter(as_child(c))
        for i in range(n):
            assert r.start(as_child(c), job(f"{c.name}{i}"))
    r.drain_one()
    assert not b.accepting and a.accepting, "the child with the fewest tasks drains"
    r.drain_one()
    assert a.accepting, "one draining child at a time"
    assert r.pick() is as_child(a)
    assert capacity[-1] == 2 + 4


async def test_a_cancelled_async_task_is_asked_to_stop_then_its_child_is_halted(monkeypatch: Any) -> None:
    monkeypatch.setattr("fluxfunc_worker.asyncroom.STOP_GRACE", 0.05)
    r, _, _ = room()
    c = FakeChild("a")
    r.enter(as_child(c))
    j = job("t1")
    assert r.start(as_child(c), j)
    r.stop(as_child(c), j, End.CANCELLED)
    r.stop(as_child(c), j, End.TIMEOUT)  # once stopped, a second reason changes nothing
    assert j.stopped is End.CANCELLED
    assert c.sent[-1] == {"type": "cancel", "id": "t1"}
    await asyncio.sleep(0.2)
    assert c.halted and not c.accepting, "no answer within the grace: the child is stopped"


async def test_a_task_past_its_expiry_never_starts() -> None:
    r, _, resolved = room()
    c = FakeChild("a")
    r.enter(as_child(c))
    j = job("old", expires=1.0)
    assert not r.start(as_child(c), j)
    assert resolved[0][1].end is End.EXPIRED and not c.sent


async def test_slots_follow_the_pool_capacity() -> None:
    slots = Slots(2, batch_max=3)
    with await slots.acquire() as batch:
        assert len(batch) == 2
        slots.resize(10)
        assert slots.free == 8
        more = await slots.acquire()
        assert len(more) == 3, "one read takes at most batch_max slots"
        more.close()
    slots.resize(1)
    assert slots.free == 1
