"""``DFF.CONN`` of ``redis`` and ``memcached`` connectors against the real servers of this
machine (only keys of the test's own, deleted at the end): DataFlux Func's helper methods."""

from __future__ import annotations

from collections.abc import Callable

import redis
from pymemcache.client.base import Client as MemcacheClient
from tests.connector_servers import require
from tests.worker.conftest import Bench, WorkerProcess
from tests.worker.dffconn_support import add_connector, unique

from fluxfunc_common.envelope import TaskStatus

SCRIPT = '''
@DFF.API("Redis")
def kv(prefix):
    db = DFF.SRC("{redis}")
    db.set(prefix + ":s", "v1", expires=60)
    db.hmset(prefix + ":h", {{"a": "1", "b": "2"}})
    db.lpush(prefix + ":l", ["x", "y"])
    return {{"get": db.get(prefix + ":s"), "mget": db.mget([prefix + ":s", prefix + ":none"]),
            "hmget": db.hmget(prefix + ":h", ["a", "b"]), "hgetall": db.hgetall(prefix + ":h"),
            "incr": db.incrby(prefix + ":n", 5), "llen": db.llen(prefix + ":l"),
            "query": db.query("GET", prefix + ":s"), "exists": db.exists(prefix + ":s"),
            "keys": sorted(db.keys(prefix + ":*")), "type": db.type(prefix + ":none")}}


@DFF.API("Memcached")
def mc(key):
    db = DFF.CONN("{memcached}")
    db.set(key, "hello")
    got = db.get(key)
    db.set(key + "n", 10)
    n = db.incr(key + "n", 5)
    deleted = db.delete(key)
    return {{"got": got, "n": n, "deleted": deleted, "after": db.get(key)}}
'''


async def test_redis_and_memcached(bench: Bench, workers: Callable[..., WorkerProcess]) -> None:
    require("redis", "memcached")
    rid, mid, prefix = unique("redis"), unique("mc"), unique("h11conn")
    await add_connector(bench, rid, "redis", host="127.0.0.1", port=6379, database=0)
    await add_connector(bench, mid, "memcached", servers="127.0.0.1:11211")
    await bench.publish("demo__kv", SCRIPT.format(redis=rid, memcached=mid))
    w = workers("w")
    shared = redis.Redis(host="127.0.0.1", port=6379, decode_responses=True)
    memcache = MemcacheClient(("127.0.0.1", 11211))
    try:
        result = await bench.result(await bench.enqueue("demo__kv.kv", {"prefix": prefix}))
        assert result.status is TaskStatus.SUCCESS, result.exception
        assert result.result == {
            "get": "v1", "mget": {f"{prefix}:s": "v1", f"{prefix}:none": None},
            "hmget": {"a": "1", "b": "2"}, "hgetall": {"a": "1", "b": "2"}, "incr": 5, "llen": 2,
            "query": "v1", "exists": True, "type": None,
            "keys": sorted(f"{prefix}:{k}" for k in ("s", "h", "l", "n"))}
        assert shared.get(f"{prefix}:s") == "v1"
        result = await bench.result(await bench.enqueue("demo__kv.mc", {"key": prefix}))
        assert result.status is TaskStatus.SUCCESS, result.exception
        assert result.result == {"got": "hello", "n": 15, "deleted": True, "after": None}
    finally:
        shared.delete(*(f"{prefix}:{k}" for k in ("s", "h", "l", "n")))
        shared.close()
        memcache.delete(prefix + "n")
        memcache.close()
    assert w.stop() == 0
