from __future__ import annotations
import asyncio
from tests.worker.conftest import Bench

CODE = '''
@DFF.API("Plus")
def plus(x, y=1):
    print("adding", x, y)
    return {"sum": x + y}
'''

async def test_smoke(bench: Bench, workers) -> None:
    await bench.publish("demo__basic", CODE)
    w = workers("w1")
    await w.ready(bench)
    tid = await bench.enqueue("demo__basic.plus", {"x": 2})
    r = await bench.result(tid)
    print(r)
    rec = await bench.record(tid)
    print(rec)
    assert r.result == {"sum": 3}
    assert w.stop() == 0
    print(w.text())
