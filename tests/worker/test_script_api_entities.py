"""``DFF.SYNC_API``, ``DFF.ASYNC_API`` and ``DFF.CRON_JOB`` in a real worker child: get,
query, call (with the Server's checks), and a cron job's expression and pause
(docs/user-guide.md, "The script API")."""

from __future__ import annotations

import time
from collections.abc import Callable

from tests.worker.conftest import Bench, WorkerProcess

from fluxfunc_common.envelope import Origin, TaskStatus
from fluxfunc_common.store import Entity

SCRIPT = '''
@DFF.API("Target")
def target(x, y=0):
    return {"x": x, "y": y, "origin": _DFF_ORIGIN, "originId": _DFF_ORIGIN_ID}


@DFF.API("Read")
def read():
    api = DFF.SYNC_API.get("sapi-1")
    return {
        "api": [api["id"], api["funcId"], api["kwargs"], "apiAuth" in api],
        "missing": DFF.SYNC_API.get("nope"),
        "none": DFF.SYNC_API.get(),
        "query": [r["id"] for r in DFF.ASYNC_API.query()],
        "fields": DFF.CRON_JOB.query(["id", "crontab"], {"id": {"eq": "cron-1"}}),
        "filtered": DFF.SYNC_API.query("id", {"isDisabled": {"eq": True}}),
        "aliases": DFF.AUTH_LINK is DFF.SYNC_API and DFF.crontab_config is DFF.CRON_JOB,
    }


@DFF.API("Call")
def call():
    return {"sync": DFF.SYNC_API.call("sapi-1", {"x": 2}),
            "async": DFF.ASYNC_API("aapi-1", {"x": 3}, None, None, 30, 60)}


@DFF.API("Refused")
def refused(which):
    if which == "fixed":
        return DFF.SYNC_API.call("sapi-1", {"y": 9})
    if which == "disabled":
        return DFF.SYNC_API.call("sapi-off", {"x": 1})
    if which == "timed":
        return DFF.CRON_JOB.pause("soon", "cron-1")
    return DFF.CRON_JOB.set_cron_expr("not a cron", entity_id="cron-1")


@DFF.API("Cron")
def cron():
    C = DFF.CRON_JOB
    out = {"before": C.get_cron_expr("cron-1"), "mine": C.get_cron_expr()}
    C.set_cron_expr("*/7 * * * *", entity_id="cron-1")
    out["set"] = [C.get_cron_expr("cron-1"), C.get_all_cron_expr()]
    C.clear_cron_expr("cron-1")
    out["cleared"] = [C.get_cron_expr("cron-1"), C.get_all_cron_expr()]
    C.pause(entity_id="cron-1")
    out["paused"] = C.get("cron-1")["isDisabled"]
    C.resume("cron-1")
    out["resumed"] = C.get("cron-1")["isDisabled"]
    C.set_cron_expr("*/9 * * * *", 3600, "cron-1")
    C.pause(3600, "cron-1")
    job = C.get("cron-1")
    out["timed"] = [C.get_cron_expr("cron-1"), job["cronExpr"], job["dynamicCronExpr"],
                    [job["dynamicCronExprExpireTime"], job["pauseExpireTime"]], job["isDisabled"]]
    C.resume("cron-1")
    C.clear_cron_expr("cron-1")
    out["ended"] = [C.get("cron-1")["pauseExpireTime"], C.get_cron_expr("cron-1")]
    return out
'''


async def _entries(bench: Bench) -> None:
    await bench.store.create(Entity.SYNC_API, {"id": "sapi-1", "funcId": "demo__ent.target",
                                               "kwargs": {"y": 1, "x": "INPUT_BY_CALLER"},
                                               "apiAuth": {"type": "fixedField"}})
    await bench.store.create(Entity.SYNC_API, {"id": "sapi-off", "funcId": "demo__ent.target",
                                               "isDisabled": True})
    await bench.store.create(Entity.ASYNC_API, {"id": "aapi-1", "funcId": "demo__ent.target"})
    await bench.store.create(Entity.CRON_JOB, {"id": "cron-1", "funcId": "demo__ent.target",
                                               "kwargs": {"x": 0}, "cronExpr": "*/5 * * * *"})


async def test_get_query_and_call(bench: Bench, workers: Callable[..., WorkerProcess]) -> None:
    await bench.publish("demo__ent", SCRIPT)
    await _entries(bench)
    w = workers("w")
    read = await bench.result(await bench.enqueue("demo__ent.read"))
    assert read.status is TaskStatus.SUCCESS, read.exception
    assert read.result["api"] == ["sapi-1", "demo__ent.target", {"y": 1, "x": "INPUT_BY_CALLER"}, False]
    assert read.result["missing"] is None and read.result["none"] is None
    assert read.result["query"] == ["aapi-1"]
    assert read.result["fields"] == [{"id": "cron-1", "cronExpr": "*/5 * * * *"}]
    assert read.result["filtered"] == [{"id": "sapi-off"}] and read.result["aliases"]
    own = await bench.result(await bench.enqueue("demo__ent.read", origin=Origin.SYNC_API,
                                                 origin_id="sapi-1"))
    assert own.result["none"]["id"] == "sapi-1"  # no id: the entry the task came from
    called = await bench.result(await bench.enqueue("demo__ent.call"))
    assert called.status is TaskStatus.SUCCESS, called.exception
    sync = await bench.result(called.result["sync"])
    assert sync.result == {"x": 2, "y": 1, "origin": "syncAPI", "originId": "sapi-1"}
    assert sync.origin is Origin.SYNC_API
    asyn = await bench.result(called.result["async"])
    assert asyn.result == {"x": 3, "y": 0, "origin": "asyncAPI", "originId": "aapi-1"}
    for which, message in (("fixed", "cannot specify a fixed kwargs field: y"),
                           ("disabled", "sapi-off is disabled"),
                           ("timed", "expires must be a number of seconds, not 'soon'"),
                           ("bad", "has 3 fields; use 5")):
        bad = await bench.result(await bench.enqueue("demo__ent.refused", {"which": which}))
        assert bad.status is TaskStatus.FAILURE and message in (bad.exception or ""), bad.exception
    assert w.stop() == 0


async def test_cron_expression_and_pause(bench: Bench, workers: Callable[..., WorkerProcess]) -> None:
    await bench.publish("demo__ent", SCRIPT)
    await _entries(bench)
    w = workers("w")
    started = time.time()
    cron = await bench.result(await bench.enqueue("demo__ent.cron", origin=Origin.CRON_JOB,
                                                  origin_id="cron-1"))
    ended = time.time()
    assert cron.status is TaskStatus.SUCCESS, cron.exception
    assert cron.result == {"before": "*/5 * * * *", "mine": "*/5 * * * *",
                           "set": ["*/7 * * * *", {"cron-1": "*/7 * * * *"}],
                           "cleared": ["*/5 * * * *", {}], "paused": True, "resumed": False,
                           "timed": ["*/9 * * * *", "*/5 * * * *", "*/9 * * * *", cron.result["timed"][3],
                                     False],
                           "ended": [None, "*/5 * * * *"]}
    assert all(started + 3600 <= t <= ended + 3600 for t in cron.result["timed"][3])  # an hour on
    changes = await bench.redis.xrange(bench.keys.cron_changed())
    assert [c[1][b"id"] for c in changes] == [b"cron-1"] * 8  # the Beat hears every change
    assert (await bench.store.get(Entity.CRON_JOB, "cron-1"))["cronExpr"] == "*/5 * * * *"
    assert w.stop() == 0
