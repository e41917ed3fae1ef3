"""``DFF.FUNC``'s queue in a real worker child, as in DataFlux Func: the queue asked for, else
the called function's own ``queue`` option, else the queue of the calling task
(docs/user-guide.md, "Calling other functions")."""

from __future__ import annotations

from collections.abc import Callable

from tests.worker.conftest import Bench, WorkerProcess

from fluxfunc_common.envelope import TaskStatus

SCRIPT = '''
@DFF.API("Where")
def where():
    return _DFF_QUEUE


@DFF.API("Own queue", queue="own")
def own():
    return _DFF_QUEUE


@DFF.API("Caller")
def caller():
    return {"inherited": DFF.FUNC("where", wait=30), "funcs": DFF.FUNC("own", wait=30),
            "asked": DFF.FUNC("where", queue="asked", wait=30),
            "askedOverOwn": DFF.FUNC("own", {}, "asked", wait=30)}
'''


async def test_child_queue_defaults_to_the_callers(bench: Bench,
                                                   workers: Callable[..., WorkerProcess]) -> None:
    await bench.publish("demo__fq", SCRIPT)
    w = workers("w", queues=["default", "side", "own", "asked"], concurrency=2)
    for queue in ("default", "side"):
        done = await bench.result(await bench.enqueue("demo__fq.caller", queue=queue))
        assert done.status is TaskStatus.SUCCESS, done.exception
        assert done.result == {"inherited": queue, "funcs": "own", "asked": "asked",
                               "askedOverOwn": "asked"}
    assert w.stop() == 0
