"""``DFF.ENV`` read at module level follows a changed env variable: the worker drops its
cached value on ``envVariableChanged`` and the child rebuilds the modules that read it
(docs/user-guide.md, "The script API")."""

from __future__ import annotations

import time
from collections.abc import Callable

import orjson
from tests.worker.conftest import Bench, WorkerProcess

from fluxfunc_common.store import Entity

SCRIPT = '''
import demo__cfg

GREETING = DFF.ENV("GREETING")


@DFF.API("Read at import")
def hello():
    return {"here": GREETING, "imported": demo__cfg.LIMIT, "now": DFF.ENV("GREETING")}
'''

CFG = '''
LIMIT = DFF.ENV("LIMIT", 1)
'''


async def _change(bench: Bench, name: str, value: object) -> None:
    """What the Server does on PATCH /env-variables/{id}: update, then announce it."""
    await bench.store.update(Entity.ENV_VARIABLE, name, {"value": value})
    await bench.redis.publish(bench.keys.events(), orjson.dumps(
        {"type": "envVariableChanged", "id": name, "op": "update"}))


async def test_module_level_env_follows_changes(bench: Bench,
                                                workers: Callable[..., WorkerProcess]) -> None:
    await bench.store.create(Entity.ENV_VARIABLE, {"id": "GREETING", "valueType": "string", "value": "hi"})
    await bench.store.create(Entity.ENV_VARIABLE, {"id": "LIMIT", "valueType": "integer", "value": 5})
    await bench.publish("demo__cfg", CFG)
    await bench.publish("demo__env", SCRIPT)
    w = workers("w")
    first = await bench.result(await bench.enqueue("demo__env.hello"))
    assert first.result == {"here": "hi", "imported": 5, "now": "hi"}
    for name, value, want in (("GREETING", "hello", {"here": "hello", "imported": 5, "now": "hello"}),
                              ("LIMIT", 9, {"here": "hello", "imported": 9, "now": "hello"})):
        await _change(bench, name, value)
        # the event races the next claim; the documented bound is the one-second cache
        deadline = time.monotonic() + 20
        while (got := (await bench.result(await bench.enqueue("demo__env.hello"))).result) != want:
            assert time.monotonic() < deadline, f"{name} change not seen: {got}"
        for _ in range(2):
            assert (await bench.result(await bench.enqueue("demo__env.hello"))).result == want
    assert w.stop() == 0
