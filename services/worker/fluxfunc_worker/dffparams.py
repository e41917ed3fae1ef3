"""The parameters and answers of the DFF calls a child makes to its worker (one place for
both sides: the child's :mod:`~fluxfunc_worker.dffcache`, :mod:`~fluxfunc_worker.dffstore`
and :mod:`~fluxfunc_worker.sdk` build them, the parent's :mod:`~fluxfunc_worker.cachecalls`
and :mod:`~fluxfunc_worker.dffcalls` read them).

A call travels as an :class:`~fluxfunc_worker.messages.RpcCall`: a method name and a JSON
object of parameters. The parent reads the object as the method family's TypedDict (it came
from our own child code; a value of the wrong shape is refused as bad arguments). Values a
script stores (``DFF.STORE``) and kwargs of ``DFF.FUNC`` are the user's own JSON.

Imported by the child: standard library (and :mod:`~fluxfunc_worker.messages`) only.
"""

from __future__ import annotations

from typing import Literal, NotRequired, Required, TypedDict

from fluxfunc_worker.messages import JSONObject

UserJSON = object  # a value of the user's own JSON, no schema of ours (a DFF.STORE value)

CacheCommand = Literal[
    "type", "keys", "exists", "expire", "expireat", "ttl", "pttl", "delete",
    "set", "mset", "get", "mget", "getset", "incrby",
    "hset", "hsetnx", "hmset", "hget", "hmget", "hgetall", "hincrby", "hdel",
    "lpush", "rpush", "lpop", "rpop", "pop_first", "rpoplpush", "llen", "lrange",
    "ltrim", "sadd", "srem", "scard", "smembers", "sismember",
    "zadd", "zrem", "zcard", "zrange", "publish", "get_pattern", "delete_pattern",
]
StoreMethod = Literal["store.get", "store.set", "store.mset", "store.mget", "store.getall",
                      "store.keys", "store.delete"]
Side = Literal["left", "right"]


class CacheArgs(TypedDict, total=False):
    """The arguments of a ``cache.<command>`` call besides its scope; each command takes the
    few it needs (``DFF.CACHE`` in :mod:`~fluxfunc_worker.dffcache` sends them)."""

    key: str
    keys: list[str]
    pattern: str
    value: str
    expires: float | None  # set: seconds (a float); expire: whole seconds
    timestamp: int
    not_exists: bool
    exists: bool
    pairs: dict[str, str]
    step: int
    field: str
    fields: list[str]
    mapping: dict[str, str]
    amount: int
    values: list[str]
    side: Side
    dest_key: str
    dest_scope: str
    start: int
    stop: int
    member: str
    members: list[str]
    scores: dict[str, float]
    reverse: bool
    with_scores: bool
    topic: str
    message: str


class CacheParams(CacheArgs, total=False):
    """What the parent receives for ``cache.<command>``: the arguments and the scope."""

    scope: Required[str]


class StoreArgs(TypedDict, total=False):
    """The arguments of a ``store.*`` call besides its scope."""

    key: str
    keys: list[str]
    value: UserJSON
    values: JSONObject
    pattern: str
    expires: float | None
    not_exists: bool


class StoreParams(StoreArgs, total=False):
    scope: Required[str]


class ScriptParams(TypedDict):
    """``script``: the published code of a script (its ``import``)."""

    scriptId: str


class DraftParams(TypedDict):
    """``script.draft``: the draft code of the script a draft run runs, if its MD5 is still
    ``md5`` (docs/worker.md, Draft runs)."""

    scriptId: str
    md5: str


class EnvParams(TypedDict):
    """``env``: one env variable."""

    name: str


class EnvManyParams(TypedDict):
    """``env.many``: several env variables (the ones scripts read at import)."""

    names: list[str]


class FuncParams(TypedDict):
    """``func``: ``DFF.FUNC``, a child task."""

    func_id: str
    kwargs: JSONObject
    wait: float | None
    call_chain: list[str]
    queue: NotRequired[str | None]  # DataFlux Func's queue number, or a queue name
    timeout: NotRequired[float | None]  # seconds the child task may run
    expires: NotRequired[float | None]  # seconds it may wait in its queue


EntityKind = Literal["syncAPI", "asyncAPI", "cronJob"]


class EntityParams(TypedDict, total=False):
    """``entity.*`` and ``cron.*``: ``DFF.SYNC_API``/``ASYNC_API``/``CRON_JOB``
    (:mod:`~fluxfunc_worker.dffentities`, :mod:`~fluxfunc_worker.entitycalls`)."""

    kind: Required[EntityKind]
    id: str
    fields: list[str] | None  # query: the fields of each row (all without)
    filters: JSONObject | None  # query: {field: {op: value}}
    kwargs: JSONObject  # call: the caller's kwargs
    queue: str | None
    timeout: float | None
    expires: float | None
    cron_expr: str  # cron.set


class EnvAnswer(TypedDict):
    """The answer to ``env``: the value, and whether print output must mask it (passwords)."""

    value: UserJSON
    mask: bool


class ResourceInfo(TypedDict):
    """The answer to ``resources``: the resource directory and the large-data lifetime."""

    root: str
    largeDataSeconds: int
