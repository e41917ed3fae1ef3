"""``DFF.THREAD``, ``DFF.FUNC``'s DataFlux Func forms (positional queue, timeout/expires,
short function ids) and ``DFF.RESP``'s ``allow_304``/``download``, in a real worker child
(docs/user-guide.md, "The script API")."""

from __future__ import annotations

from collections.abc import Callable

from tests.worker.conftest import Bench, WorkerProcess

from fluxfunc_common.envelope import TaskStatus

THREADS = '''
import threading
import time


def square(x):
    time.sleep(0.01 * (x % 3))
    return x * x


def boom():
    raise ValueError("bad thread")


@DFF.API("Threads")
def threads():
    T = DFF.THREAD
    T.set_pool_size(3)
    keys = [T.submit(square, i) for i in range(6)]
    bad = T.submit(boom)
    T.set_pool_size(10)                        # ignored once the pool exists
    T.wait_all_finished()
    one = T.get_result(keys[2])
    results = T.get_all_results()
    err = T.get_result(bad)
    popped = []
    while True:
        r = T.pop_result()
        if r is None:
            break
        popped.append(r.key)
    return {"keysUnique": len(set(keys)) == 6, "one": [one.key == keys[2], one.value, one.error],
            "values": [r.value for r in results if r.error is None],
            "error": repr(err.error), "popped": sorted(popped) == sorted(keys + [bad]),
            "allFinished": T.is_all_finished, "size": T.pool_size, "unknown": T.get_result("nope"),
            "empty": T.pop_result(), "printed": True}


@DFF.API("Pool per task")
def fresh():
    return {"size": DFF.THREAD.pool_size, "all": DFF.THREAD.get_all_results(),
            "names": sorted({t.name.split("_")[0] for t in threading.enumerate()})}


@DFF.API("Prints from threads")
def chatter():
    DFF.THREAD.submit(print, "from a thread")
    DFF.THREAD.wait_all_finished()
    return "ok"


def worker(n):
    for i in range(20):
        DFF.CACHE.incr("hits")
        print("thread", n, "step", i)
    return n


@DFF.API("Threads using the DFF RPC and print at once")
def busy():
    DFF.THREAD.set_pool_size(8)
    for n in range(8):
        DFF.THREAD.submit(worker, n)
    DFF.THREAD.wait_all_finished()
    return {"hits": DFF.CACHE.get("hits"), "ok": [r.error for r in DFF.THREAD.get_all_results()]}


@DFF.API("Thread past the deadline", timeout=2)
def overdue():
    key = DFF.THREAD.submit(time.sleep, 60)
    return repr(DFF.THREAD.get_result(key).error)


@DFF.API("Same script")
def target(x=0):
    return {"x": x, "queue": _DFF_QUEUE}


@DFF.API("Forms", timeout=20)
def forms():
    return {
        "short": DFF.FUNC("target", {"x": 1}, wait=10),
        "set": DFF.FUNC("thr.target", {"x": 2}, None, 5, 60, wait=10),
        "relative": DFF.FUNC("__thr.target", {"x": 3}, wait=10),
        "queued": DFF.FUNC("target", {"x": 4}, "default", wait=10),
    }


@DFF.API("Bad timeout")
def bad_timeout():
    return DFF.FUNC("target", {}, None, 999999)


@DFF.API("Cached response")
def cached():
    return DFF.RESP({"a": 1}, allow_304=True, download="report.json")
'''


async def test_thread_pool(bench: Bench, workers: Callable[..., WorkerProcess]) -> None:
    await bench.publish("demo__thr", THREADS)
    w = workers("w")
    result = await bench.result(await bench.enqueue("demo__thr.threads"))
    assert result.status is TaskStatus.SUCCESS, result.exception
    value = result.result
    assert value["keysUnique"] and value["one"] == [True, 4, None]
    assert value["values"] == [0, 1, 4, 9, 16, 25]
    assert value["error"] == "ValueError('bad thread')"
    assert value["popped"] and value["allFinished"] and value["size"] == 3
    assert value["unknown"] is None and value["empty"] is None
    overdue = await bench.result(await bench.enqueue("demo__thr.overdue"), within=30)
    if overdue.status is TaskStatus.SUCCESS:  # the child answered before the worker stopped it
        assert overdue.result == "TimeoutError(\"DFF.THREAD: no result before the task's deadline\")"
    else:
        assert overdue.status is TaskStatus.TIMEOUT
    fresh = await bench.result(await bench.enqueue("demo__thr.fresh"))
    assert fresh.result["size"] is None and fresh.result["all"] == []
    assert "dff-thread" not in fresh.result["names"]  # the last task's threads are gone
    chatter = await bench.result(await bench.enqueue("demo__thr.chatter"))
    assert chatter.print_logs == "from a thread\n"
    busy = await bench.result(await bench.enqueue("demo__thr.busy"))
    assert busy.result == {"hits": "160", "ok": [None] * 8}
    assert len((busy.print_logs or "").splitlines()) == 160
    assert w.stop() == 0


async def test_func_forms_and_response_options(bench: Bench,
                                               workers: Callable[..., WorkerProcess]) -> None:
    await bench.publish("demo__thr", THREADS)
    w = workers("w", concurrency=2)
    forms = await bench.result(await bench.enqueue("demo__thr.forms"))
    assert forms.status is TaskStatus.SUCCESS, forms.exception
    assert [forms.result[k]["x"] for k in ("short", "set", "relative", "queued")] == [1, 2, 3, 4]
    bad = await bench.result(await bench.enqueue("demo__thr.bad_timeout"))
    assert bad.status is TaskStatus.FAILURE and "timeout must be 1 to" in (bad.exception or "")
    resp = await bench.result(await bench.enqueue("demo__thr.cached"))
    assert resp.response is not None
    assert (resp.response.allow_304, resp.response.download) == (True, "report.json")
    assert w.stop() == 0
