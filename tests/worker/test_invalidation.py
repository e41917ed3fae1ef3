"""A publish drops only what changed, in real worker children: the changed script and the
scripts that import it, transitively (docs/internals.md, Notifications).

Every script appends its id to a file when its module code runs, so the file counts builds.
``demo__a`` imports ``demo__b``; ``demo__d`` imports from ``demo__a``; ``demo__c`` stands alone.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import orjson
from tests.worker.conftest import Bench, WorkerProcess

from fluxfunc_common import scriptchanges
from fluxfunc_common.envelope import TaskStatus
from fluxfunc_common.keys import Keys
from fluxfunc_common.scripts import analyse
from fluxfunc_common.store import Entity
from fluxfunc_worker.modcache import ScriptCache
from fluxfunc_worker.published import CodeStore, PublishedScripts

MARK = '''
with open({path!r}, "a") as _f:
    _f.write("{sid}\\n")
'''
B = MARK + 'VALUE = {v}\n\n\n@DFF.API("B")\ndef value():\n    return VALUE\n'
A = 'import demo__b\n' + MARK + '\n\n@DFF.API("A")\ndef value():\n    return demo__b.VALUE\n'
C = MARK + '\n\n@DFF.API("C")\ndef value():\n    return {v}\n'
D = ('from demo__a import value as a_value\n' + MARK
     + '\n\n@DFF.API("D")\ndef value():\n    return a_value()\n')


def builds(path: Path) -> Counter[str]:
    return Counter(path.read_text().split()) if path.exists() else Counter()


async def call(bench: Bench, script: str) -> object:
    done = await bench.result(await bench.enqueue(f"{script}.value"))
    assert done.status is TaskStatus.SUCCESS, done.exception
    return done.result


async def until(bench: Bench, script: str, want: object) -> None:
    """Call until the worker serves the new code (a publish is live within the poll period)."""
    deadline = time.monotonic() + 20
    while await call(bench, script) != want:
        assert time.monotonic() < deadline, f"{script} never returned {want!r}"


async def setup(bench: Bench, workers: Callable[..., WorkerProcess], path: Path) -> WorkerProcess:
    await bench.publish("demo__b", B.format(path=str(path), sid="demo__b", v=1))
    await bench.publish("demo__a", A.format(path=str(path), sid="demo__a"))
    await bench.publish("demo__c", C.format(path=str(path), sid="demo__c", v=1))
    await bench.publish("demo__d", D.format(path=str(path), sid="demo__d"))
    w = workers("w", concurrency=1)  # one child: every call sees the same modules
    for script in ("demo__a", "demo__b", "demo__c", "demo__d"):
        assert await call(bench, script) == 1
    assert builds(path) == {"demo__a": 1, "demo__b": 1, "demo__c": 1, "demo__d": 1}
    return w


async def test_publish_rebuilds_the_script_and_its_importers_only(
        bench: Bench, workers: Callable[..., WorkerProcess]) -> None:
    path = bench.tmp / "builds.txt"
    w = await setup(bench, workers, path)

    await bench.publish("demo__b", B.format(path=str(path), sid="demo__b", v=2))
    await until(bench, "demo__a", 2)  # A sees the new B: it was rebuilt
    assert await call(bench, "demo__d") == 2 and await call(bench, "demo__c") == 1
    assert builds(path) == {"demo__a": 2, "demo__b": 2, "demo__c": 1, "demo__d": 2}

    await bench.publish("demo__c", C.format(path=str(path), sid="demo__c", v=2))
    await until(bench, "demo__c", 2)
    for script in ("demo__a", "demo__b", "demo__d"):
        assert await call(bench, script) == 2
    assert builds(path) == {"demo__a": 2, "demo__b": 2, "demo__c": 2, "demo__d": 2}
    assert w.stop() == 0


async def test_a_missed_step_drops_every_module(bench: Bench, workers: Callable[..., WorkerProcess]) -> None:
    """A version step with no change-log entry (a publish that only bumped the counter, as a
    worker that missed steps sees it) rebuilds everything, as before per-script invalidation."""
    path = bench.tmp / "builds.txt"
    w = await setup(bench, workers, path)
    code = C.format(path=str(path), sid="demo__c", v=2)
    await bench.store.publish_script("demo__c", code, analyse("demo__c", code).funcs)
    await bench.redis.incr(bench.keys.scripts_version())
    await until(bench, "demo__c", 2)
    for script in ("demo__a", "demo__b", "demo__d"):
        assert await call(bench, script) == 1
    assert builds(path) == {"demo__a": 2, "demo__b": 2, "demo__c": 2, "demo__d": 2}
    assert w.stop() == 0


async def test_deleting_a_script_drops_it_and_its_importers(
        bench: Bench, workers: Callable[..., WorkerProcess]) -> None:
    path = bench.tmp / "builds.txt"
    w = await setup(bench, workers, path)
    for func in (await bench.store.list(Entity.FUNC, filters={"scriptId": "demo__b"})).items:
        await bench.store.delete(Entity.FUNC, str(func["id"]))
    await bench.store.delete(Entity.SCRIPT, "demo__b")
    await scriptchanges.announce(bench.redis, bench.keys, "demo__b")
    deleted = {"type": "scriptDeleted", "scriptId": "demo__b"}
    await bench.redis.publish(bench.keys.events(), orjson.dumps(deleted))

    deadline = time.monotonic() + 20
    while (done := await bench.result(await bench.enqueue("demo__d.value"))).status is TaskStatus.SUCCESS:
        assert time.monotonic() < deadline, "demo__d still runs on the deleted demo__b"
    assert "demo__b" in (done.exception or "")
    failed = await bench.result(await bench.enqueue("demo__a.value"))
    assert failed.status is TaskStatus.FAILURE and "demo__b" in (failed.exception or "")
    assert await call(bench, "demo__c") == 1
    assert builds(path)["demo__c"] == 1
    assert w.stop() == 0


LIB_TASK = ('@DFF.API("Own")\ndef own():\n    return _DFF_TASK_ID\n\n\n'
            'def task_id():\n    return _DFF_TASK_ID\n')
USES = '''
import demo__g


@DFF.API("Top")
def top():
    return demo__g.task_id()


@DFF.API("Late")
def late():
    import demo__h
    return demo__h.task_id()
'''


async def test_imported_scripts_see_the_globals_of_the_run(
        bench: Bench, workers: Callable[..., WorkerProcess]) -> None:
    """The ``_DFF_*`` globals are refreshed in the called script and the scripts it imports
    (the import graph), also in a built script first imported inside a running function."""
    for sid in ("demo__g", "demo__h"):
        await bench.publish(sid, LIB_TASK)
    await bench.publish("demo__u", USES)
    w = workers("w", concurrency=1)
    for func in ("demo__h.own", "demo__u.top", "demo__u.late", "demo__u.top", "demo__u.late"):
        task_id = await bench.enqueue(func)
        done = await bench.result(task_id)
        assert done.status is TaskStatus.SUCCESS, done.exception
        assert done.result == task_id, func
    assert w.stop() == 0


# --- the parts, in this process -----------------------------------------------------------------

class CountingStore:
    """Published code of any script (version 1), counting the reads."""

    def __init__(self) -> None:
        self.reads: Counter[str] = Counter()

    async def published_code(self, script_id: str) -> tuple[str, int]:
        self.reads[script_id] += 1
        return "", 1


async def test_the_worker_cache_drops_per_script_and_stamps_children() -> None:
    store = CountingStore()
    published = PublishedScripts(cast(CodeStore, store), cast(Any, None), Keys("t"))  # no Redis read
    assert published.stamp(11) == (0, None)  # a child never stamped: drop all (it has nothing)
    for sid in ("t__a", "t__b"):
        await published.code(sid)
    published.moved(1, frozenset({"t__a"}))
    published.moved(2, frozenset({"t__c"}))
    for sid in ("t__a", "t__b"):
        await published.code(sid)
    assert store.reads == {"t__a": 2, "t__b": 1}
    assert published.stamp(11) == (2, {"since": 0, "scripts": ["t__a", "t__c"]})
    assert published.stamp(11) == (2, {"since": 2, "scripts": []})
    published.moved(3, None)  # a step the change log did not cover
    assert published.stamp(11) == (3, None)
    await published.code("t__b")
    assert store.reads["t__b"] == 2
    published.moved(4, frozenset({"t__b"}))
    assert published.stamp(11) == (4, {"since": 3, "scripts": ["t__b"]})
    assert published.stamp(12) == (4, None)


def test_a_child_drops_a_script_and_its_importers_transitively() -> None:
    cache = ScriptCache(lambda sid: ("X = 1\n", 1))
    names = ("t__a", "t__b", "t__c", "t__d")
    try:
        cache.set_gen(1)
        for sid in names:
            cache.module(sid)
        cache.note_import("t__a", "t__b")
        cache.note_import("t__d", "t__a")
        assert cache.affected(["t__b"]) == {"t__a", "t__b", "t__d"}
        cache.set_gen(2, {"since": 1, "scripts": ["t__b"]})
        assert set(cache.modules) == {"t__c"}
        for sid in names:
            cache.module(sid)
        cache.set_gen(3, {"since": 2, "scripts": ["t__c"]})
        assert set(cache.modules) == {"t__a", "t__b", "t__d"} and cache.imports("t__a") == set()
        cache.set_gen(4, {"since": 99, "scripts": []})  # not the generation this child had
        assert cache.modules == {}
    finally:
        for sid in names:
            sys.modules.pop(sid, None)
