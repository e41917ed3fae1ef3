"""DataFlux Func parity of the script API, run in a real worker child: every ``DFF.CACHE`` and
``DFF.STORE`` member with DataFlux Func's argument names, positional order, return shapes and
``scope``; ``DFF.ENV`` with ``keys()`` and ``commaArray``; the ``_DFF_*`` globals and the
lower-case member aliases (docs/user-guide.md, "DataFlux Func compatibility")."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from tests.worker.conftest import Bench, WorkerProcess

from fluxfunc_common.envelope import Origin, TaskStatus
from fluxfunc_common.store import Entity

CACHE = '''
import time


@DFF.API("Strings and generic commands, positional as DataFlux Func scripts call them")
def strings():
    C = DFF.CACHE
    out = {}
    out["set"] = C.set("s", "v1", None, 60)                 # set(key, value, scope, expires)
    out["set_nx"] = C.set("s", "v2", not_exists=True)       # not written: None
    out["set_expire_kw"] = C.set("e", 5, expire=60)         # the script market's form
    out["get"] = C.get("s")
    out["call"] = C("s")
    out["number_back_as_text"] = C.get("e")
    out["ttl"] = C.ttl("s")
    out["pttl"] = C.pttl("s")
    out["expire"] = C.expire("s", 100)                      # expire(key, expires)
    out["ttl_after"] = C.ttl("s")
    out["expireat"] = C.expireat("s", int(time.time()) + 500)
    out["ttl_at"] = C.ttl("s")
    out["type"] = C.type("s")
    out["type_missing"] = C.type("nope")
    out["exists"] = [C.exists("s"), C.exists("nope")]
    out["incr"] = [C.incr("n"), C.incr("n", 5), C.incrby("n", 10)]  # incr(key, step)
    out["mset"] = C.mset({"m1": "a", "m2": 2})
    out["mget"] = C.mget(["m1", "m2", "m3"])
    out["getset"] = [C.getset("m1", "b"), C.get("m1")]
    out["keys"] = sorted(C.keys())
    out["keys_pattern"] = sorted(C.keys("m*"))
    out["delete"] = [C.delete("m1"), C.delete(["m2", "n", "nope"])]
    # scope: another scope is another namespace; naming it reads it
    C.set("shared", "mine")
    C.set("shared", "theirs", "other__script")
    out["scoped"] = [C.get("shared"), C.get("shared", "other__script"), C.get("shared", scope="nobody")]
    return out


@DFF.API("Hashes")
def hashes():
    C = DFF.CACHE
    out = {}
    out["hset"] = [C.hset("h", "a", 1), C.hset("h", "a", 2), C.hset("h", "b", "x", None, True)]
    out["hsetnx"] = [C.hsetnx("h", "a", 9), C.hsetnx("h", "c", 3)]
    out["hset_not_exists"] = C.hset("h", "a", 10, not_exists=True)
    out["hget"] = C.hget("h", "a")
    out["hget_whole"] = C.hget("h")
    out["hgetall"] = C.hgetall("h")
    out["hmset"] = C.hmset("h", {"d": 4, "e": "five"})
    out["hmget"] = C.hmget("h", ["a", "d", "zz"])
    out["hkeys"] = sorted(C.hkeys("h"))
    out["hkeys_pattern"] = C.hkeys("h", "[de]", None, True)
    out["hincr"] = [C.hincr("h", "n"), C.hincrby("h", "n", 10)]
    out["hdel"] = [C.hdel("h", "a"), C.hdel("h", ["d", "e", "zz"])]
    out["after"] = C.hgetall("h")
    return out


@DFF.API("Lists")
def lists():
    C = DFF.CACHE
    out = {}
    out["lpush"] = [C.lpush("l", "a"), C.lpush("l", ["b", "c"])]
    out["rpush"] = C.rpush("l", 1)
    out["lrange"] = C.lrange("l")
    out["llen"] = C.llen("l")
    out["lpop"] = C.lpop("l")
    out["rpop"] = C.rpop("l")
    out["push_pop"] = [C.push("q", "x"), C.push("q", "y"), C.pop("q")]
    out["rpoplpush"] = [C.rpoplpush("q", "q2"), C.lrange("q2"), C.rpoplpush("q2")]
    out["rpoplpush_scope"] = [C.rpush("src", "z"), C.rpoplpush("src", "dst", None, "other__script"),
                              C.lrange("dst", scope="other__script")]
    C.rpush("t", [1, 2, 3, 4])
    out["ltrim"] = [C.ltrim("t", 1, 2), C.lrange("t", 0, -1)]
    out["blpop"] = C.blpop("t", 1)
    out["brpop"] = C.brpop(["empty", "t"], 1)
    started = time.monotonic()
    out["bpop_timeout"] = C.bpop("empty", 1)
    out["bpop_waited"] = time.monotonic() - started >= 0.9
    return out


@DFF.API("Wait on a list", timeout=3)
def wait_pop():
    return DFF.CACHE.brpop("inbox", 0)


@DFF.API("Feed the list")
def feed(value):
    return DFF.CACHE.lpush("inbox", value)


@DFF.API("Sets, sorted sets, publish and patterns")
def sets():
    C = DFF.CACHE
    out = {}
    out["sadd"] = [C.sadd("set", "a"), C.sadd("set", ["b", "c", "a"])]
    out["srem"] = C.srem("set", ["c", "zz"])
    out["scard"] = C.scard("set")
    out["smembers"] = sorted(C.smembers("set"))
    out["sismember"] = [C.sismember("set", "a"), C.sismember("set", "zz")]
    out["zadd"] = C.zadd("z", {"low": 1, "mid": 2.5, "high": 10})
    out["zcard"] = C.zcard("z")
    out["zrange"] = C.zrange("z")
    out["zrange_rev_scores"] = C.zrange("z", 0, 1, True, True)
    out["zrem"] = C.zrem("z", ["mid", "zz"])
    out["publish"] = C.publish("topic", "hello")
    C.set("pat:1", "one")
    C.set("pat:2", "two")
    C.set("pat*odd", "glob chars in a key")
    out["get_pattern"] = C.get_pattern("pat:*")
    out["get_pattern_none"] = C.get_pattern("nothing*")
    out["delete_pattern"] = [C.delete_pattern("pat:*"), C.delete_pattern("pat:*")]
    out["left"] = sorted(C.keys("pat*"))
    return out
'''

STORE = '''
@DFF.API("Store")
def store():
    S = DFF.STORE
    out = {}
    out["set"] = S.set("doc", {"n": 1, "l": [1, "ü"]})
    out["get"] = S.get("doc")
    out["call"] = S("doc")
    out["missing"] = S.get("nope")
    S.set("doc", "kept", None, None, True)                  # set(key, value, scope, expires, not_exists)
    out["not_exists"] = S.get("doc")
    S.set("short", 1, expires=1)
    S.set("short2", 2, expire=1)
    S.set("other", "theirs", "other__script")
    out["scoped"] = [S.get("other"), S.get("other", "other__script"), S.get("other", scope="other__script")]
    S.mset({"a:1": 1, "a:2": [2], "b:1": None})
    out["mget"] = S.mget(["a:1", "a:2", "zz"])
    out["mget_empty"] = S.mget([])
    out["keys"] = sorted(S.keys())
    out["keys_pattern"] = sorted(S.keys("a:*"))
    out["get_pattern"] = S.get_pattern("a:?")
    out["getall_other"] = S.getall("other__script")
    S.delete("a:1")
    out["after_delete"] = S.get("a:1")
    return out


@DFF.API("Store after expiry")
def expired():
    return {"short": DFF.STORE.get("short"), "short2": DFF.STORE.get("short2"),
            "keys": sorted(DFF.STORE.keys()), "all": sorted(DFF.STORE.getall())}


@DFF.API("Long key")
def long_key():
    DFF.STORE.set("k" * 300, 1)


@DFF.API("fluxfunc's own scope")
def reserved():
    DFF.STORE.set("packages", ["evil==1.0"], scope="__fluxfunc__")
'''

ENV_AND_GLOBALS = '''
AT_IMPORT = DFF.env("LIST")


@DFF.api("Env")
def env():
    return {"call": DFF.ENV("LIST"), "get": DFF.ENV.get("PLAIN"), "missing": DFF.ENV("NOPE"),
            "default": DFF.ENV("NOPE", "dflt"), "keys": DFF.ENV.keys(), "lower": DFF.env("PLAIN"),
            "at_import": AT_IMPORT}


@DFF.API("Globals")
def globals_(**kwargs):
    return {name: value for name, value in globals().items() if name.startswith("_DFF_")}


@DFF.API("Aliases")
def aliases():
    DFF.log("via DFF.log")
    return {"cache": DFF.cache is DFF.CACHE, "store": DFF.store is DFF.STORE, "env": DFF.env is DFF.ENV,
            "resp": DFF.resp is DFF.RESP, "func": DFF.func.__name__, "api": DFF.api.__name__,
            "missing": hasattr(DFF, "no_such_member")}


@DFF.API("Child")
def child():
    return DFF.FUNC("parity__env.globals_", {}, wait=10)
'''


async def _run(bench: Bench, func_id: str, kwargs: dict[str, Any] | None = None, **options: Any) -> Any:
    result = await bench.result(await bench.enqueue(func_id, kwargs, **options))
    assert result.status is TaskStatus.SUCCESS, result.exception
    return result.result


async def test_cache_strings_keys_expiry_and_scope(bench: Bench,
                                                   workers: Callable[..., WorkerProcess]) -> None:
    await bench.publish("parity__cache", CACHE)
    w = workers("w")
    out = await _run(bench, "parity__cache.strings")
    assert (out["set"], out["set_nx"], out["set_expire_kw"]) == (True, None, True)
    assert (out["get"], out["call"], out["number_back_as_text"]) == ("v1", "v1", "5")
    assert 0 < out["ttl"] <= 60 and 0 < out["pttl"] <= 60_000
    assert out["expire"] is True and 60 < out["ttl_after"] <= 100
    assert out["expireat"] is True and 100 < out["ttl_at"] <= 500
    assert (out["type"], out["type_missing"], out["exists"]) == ("string", None, [True, False])
    assert out["incr"] == [1, 6, 16]
    assert out["mset"] is True and out["mget"] == {"m1": "a", "m2": "2", "m3": None}
    assert out["getset"] == ["a", "b"]
    assert out["keys"] == ["e", "m1", "m2", "n", "s"] and out["keys_pattern"] == ["m1", "m2"]
    assert out["delete"] == [1, 2]
    assert out["scoped"] == ["mine", "theirs", None]
    # the default scope is the script id: the key is where another script naming it finds it
    assert await bench.redis.get(bench.keys.cache("parity__cache", "shared")) == b"mine"
    assert await bench.redis.get(bench.keys.cache("other__script", "shared")) == b"theirs"
    assert w.stop() == 0


async def test_cache_hashes(bench: Bench, workers: Callable[..., WorkerProcess]) -> None:
    await bench.publish("parity__cache", CACHE)
    w = workers("w")
    out = await _run(bench, "parity__cache.hashes")
    assert out["hset"] == [1, 0, 1] and out["hsetnx"] == [0, 1] and out["hset_not_exists"] == 0
    assert out["hget"] == "2"
    assert out["hget_whole"] == out["hgetall"] == {"a": "2", "b": "x", "c": "3"}
    assert out["hmset"] is True and out["hmget"] == {"a": "2", "d": "4", "zz": None}
    assert out["hkeys"] == ["a", "b", "c", "d", "e"] and out["hkeys_pattern"] == {"d": "4", "e": "five"}
    assert out["hincr"] == [1, 11]
    assert out["hdel"] == [1, 2] and out["after"] == {"b": "x", "c": "3", "n": "11"}
    assert w.stop() == 0


async def test_cache_lists_and_rpoplpush(bench: Bench, workers: Callable[..., WorkerProcess]) -> None:
    await bench.publish("parity__cache", CACHE)
    w = workers("w", concurrency=2)
    out = await _run(bench, "parity__cache.lists")
    assert out["lpush"] == [1, 3] and out["rpush"] == 4 and out["lrange"] == ["c", "b", "a", "1"]
    assert (out["llen"], out["lpop"], out["rpop"]) == (4, "c", "1")
    assert out["push_pop"] == [1, 2, "x"]  # push = lpush, pop = rpop
    assert out["rpoplpush"] == ["y", ["y"], "y"]  # without dest_key: rotates the same list
    assert out["rpoplpush_scope"] == [1, "z", ["z"]]
    assert out["ltrim"] == [True, ["2", "3"]]
    assert out["blpop"] == ["t", "2"] and out["brpop"] == ["t", "3"]
    assert out["bpop_timeout"] is None and out["bpop_waited"] is True
    # timeout=0 waits as long as the task may run: for a value another task pushes …
    waiting = await bench.enqueue("parity__cache.wait_pop")
    await bench.enqueue("parity__cache.feed", {"value": "hello"})
    assert (await bench.result(waiting)).result == ["inbox", "hello"]
    # … and a waiter killed at its timeout pops nothing afterwards (the child polls, not Redis)
    gone = await bench.result(await bench.enqueue("parity__cache.wait_pop"))
    assert gone.status is TaskStatus.TIMEOUT
    inbox = bench.keys.cache("parity__cache", "inbox")
    await bench.redis.lpush(inbox, "late")
    await asyncio.sleep(1)
    assert await bench.redis.lrange(inbox, 0, -1) == [b"late"]
    assert w.stop() == 0


async def test_cache_sets_sorted_sets_publish_patterns(bench: Bench,
                                                        workers: Callable[..., WorkerProcess]) -> None:
    await bench.publish("parity__cache", CACHE)
    w = workers("w")
    out = await _run(bench, "parity__cache.sets")
    assert out["sadd"] == [1, 2] and out["srem"] == 1 and out["scard"] == 2
    assert out["smembers"] == ["a", "b"] and out["sismember"] == [True, False]
    assert out["zadd"] == 3 and out["zcard"] == 3 and out["zrange"] == ["low", "mid", "high"]
    assert out["zrange_rev_scores"] == [["high", 10.0], ["mid", 2.5]] and out["zrem"] == 1
    assert out["publish"] == 0  # nobody listens
    assert out["get_pattern"] == {"pat:1": "one", "pat:2": "two"} and out["get_pattern_none"] is None
    assert out["delete_pattern"] == [2, None] and out["left"] == ["pat*odd"]
    assert w.stop() == 0


async def test_store_members_scope_expiry_and_janitor_purge(bench: Bench,
                                                            workers: Callable[..., WorkerProcess]) -> None:
    await bench.publish("parity__store", STORE)
    w = workers("w")
    out = await _run(bench, "parity__store.store")
    assert out["set"] is None and out["get"] == out["call"] == {"n": 1, "l": [1, "ü"]}
    assert out["missing"] is None and out["not_exists"] == {"n": 1, "l": [1, "ü"]}
    assert out["scoped"] == [None, "theirs", "theirs"]
    assert out["mget"] == {"a:1": 1, "a:2": [2], "zz": None} and out["mget_empty"] == {}
    assert out["keys"] == ["a:1", "a:2", "b:1", "doc", "short", "short2"]
    assert out["keys_pattern"] == ["a:1", "a:2"]
    assert out["get_pattern"] == {"a:1": 1, "a:2": [2]} and out["getall_other"] == {"other": "theirs"}
    assert out["after_delete"] is None
    await asyncio.sleep(1.2)  # the expiry is a second of store time: wait it out
    gone = await _run(bench, "parity__store.expired")
    live = ["a:2", "b:1", "doc"]
    assert gone == {"short": None, "short2": None, "keys": live, "all": live}
    long = await bench.result(await bench.enqueue("parity__store.long_key"))
    assert long.status is TaskStatus.FAILURE and "too long" in (long.exception or "")
    reserved = await bench.result(await bench.enqueue("parity__store.reserved"))
    assert reserved.status is TaskStatus.FAILURE and "reserved" in (reserved.exception or "")
    assert w.stop() == 0


async def test_env_keys_comma_array_globals_and_aliases(bench: Bench,
                                                        workers: Callable[..., WorkerProcess]) -> None:
    await bench.store.create(Entity.ENV_VARIABLE, {"id": "LIST", "valueType": "commaArray",
                                                   "value": ["a", "b", "c"]})
    await bench.store.create(Entity.ENV_VARIABLE, {"id": "PLAIN", "valueType": "string", "value": "plain"})
    await bench.publish("parity__env", ENV_AND_GLOBALS)
    w = workers("w", concurrency=2)
    out = await _run(bench, "parity__env.env")
    assert out == {"call": ["a", "b", "c"], "get": "plain", "missing": None, "default": "dflt",
                   "keys": ["LIST", "PLAIN"], "lower": "plain", "at_import": ["a", "b", "c"]}
    before = time.time()
    task_id = await bench.enqueue("parity__env.globals_", origin=Origin.CRON_JOB, origin_id="cron-1",
                                  cron_expr="* * * * *")
    g = (await bench.result(task_id)).result
    assert g["_DFF_TASK_ID"] == task_id and g["_DFF_ROOT_TASK_ID"] == "ROOT" and g["_DFF_DEBUG"] is False
    assert int(before) - 1 <= g["_DFF_START_TIME"] <= time.time() + 1
    assert g["_DFF_START_TIME_MS"] // 1000 == g["_DFF_START_TIME"]
    assert (g["_DFF_ETA"], g["_DFF_DELAY"], g["_DFF_CRON_JOB_DELAY"]) == (None, 0, 0)
    assert g["_DFF_CRON_JOB_EXEC_MODE"] == g["_DFF_CRONTAB_EXEC_MODE"] == "cronJob"
    assert g["_DFF_CRON_EXPR"] == g["_DFF_CRONTAB"] == "* * * * *" and g["_DFF_CRONTAB_DELAY"] == 0
    parent_id = await bench.enqueue("parity__env.child")
    child = (await bench.result(parent_id)).result
    assert child["_DFF_ROOT_TASK_ID"] == parent_id and child["_DFF_CRON_JOB_EXEC_MODE"] is None
    aliases = await bench.result(await bench.enqueue("parity__env.aliases"))
    assert aliases.result == {"cache": True, "store": True, "env": True, "resp": True, "func": "FUNC",
                              "api": "API", "missing": False}
    assert aliases.print_logs == "via DFF.log\n"
    assert w.stop() == 0
