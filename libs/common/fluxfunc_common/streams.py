"""The Redis Streams task protocol.

The only module that converts between :class:`TaskEnvelope`/:class:`TaskResult` and Redis
stream entries / result keys. Every multi-step mutation is one Lua script (``lua/*.lua``),
so ownership checks and writes are atomic; every write that changes a consumer's entry is
owner-checked by (consumer, lease token): taking an entry (``claim``, ``start``, ``read``,
``reclaim``) writes a fresh token into the stream's lease hash (``keys.leases``), and only the
holder of the current token may renew, complete, retry, dead-letter or release it. The delivery
count is not part of the check (Redis raises it on every re-read of one's own pending entries);
it only counts deliveries for ``worker.max_deliveries``.

A stream entry whose body is not a valid envelope never reaches the caller: the consumer
side (``read``, ``read_own_pending``, ``reclaim``) moves it to the dead-letter stream with
reason ``malformed: …`` and acks it, so one bad producer cannot crash or wedge a worker.
"""

from __future__ import annotations

import secrets
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import Any

import orjson
import redis.asyncio as aioredis
from pydantic import ValidationError
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, ResponseError

from fluxfunc_common.envelope import Origin, TaskEnvelope, TaskResult, TaskStatus
from fluxfunc_common.errors import NotFound, QueueFull
from fluxfunc_common.keys import GROUP, Keys
from fluxfunc_common.taskstats import bucket_label

LUA_DIR = Path(__file__).parent / "lua"
SCRIPTS = ("enqueue", "promote", "touch", "complete", "ack", "retry", "reclaim", "dead",
           "release", "delconsumer_if_empty", "safe_trim", "requeue", "claim", "start")
INLINE_LIMIT = 64 * 1024  # results up to this size travel inside the reply note
REPLY_MAXLEN = 10_000
IDEM_TTL_MS = 86_400_000
DEFAULT_RESULT_TTL_S = 3600
ENQUEUE_BATCH = 500  # tasks per enqueue script call (bounds the time Redis spends in one call)

# Sends a batch of commands in one round trip and returns their replies in order, error
# replies in place (as a redis-py pipeline's ``execute(raise_on_error=False)`` does).
CommandRunner = Callable[[Sequence[tuple[Any, ...]]], Awaitable[list[Any]]]


@dataclass(frozen=True, slots=True)
class Delivery:
    """One stream entry handed to this consumer."""

    queue: str
    entry_id: str
    envelope: TaskEnvelope
    count: int = 1  # delivery count (1 on first read; +1 per reclaim or re-read)
    lease: str = ""  # the lease token this consumer holds the entry under


class Start(IntEnum):
    """What a consumer may do with an entry it just got (``claim``/``start``)."""

    RUN = 0  # the running marker is set: run it
    DONE = 1  # the task already has a result (a re-delivery): ack it, never run it twice
    CANCELLED = 2  # the task has a cancel flag: end it ``cancelled`` without running it


@dataclass(frozen=True, slots=True)
class Claimed:
    """A delivery plus its start check."""

    delivery: Delivery
    start: Start


@dataclass(frozen=True, slots=True)
class Enqueued:
    task_id: str
    entry_id: str | None  # None for delayed tasks and duplicates
    duplicate: bool = False  # same idempotency key (or task id) seen before: task_id is the first one
    conflict: bool = False  # the idempotency key was first used (same scope) for another func
    due_ms: int | None = None  # set when the task went to the delayed set


@dataclass(frozen=True, slots=True)
class PreparedEnqueue:
    """One envelope's keys and arguments of the ``enqueue`` script."""

    env: TaskEnvelope
    keys: list[Any]
    args: list[Any]


@dataclass
class Reclaimed:
    cursor: str
    deliveries: list[Delivery] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)  # ids that vanished while pending


@dataclass(frozen=True, slots=True)
class ReplyNote:
    """A notification read from a Server's reply stream."""

    task_id: str
    status: str
    result: TaskResult | None  # inline when small, else None (GET the result key)


def is_entry_id(text: str) -> bool:
    """Whether ``text`` is a complete stream entry id (``<ms>-<seq>``, both below 2^64)."""
    ms, sep, seq = text.partition("-")
    return bool(sep) and all(p.isascii() and p.isdigit() and len(p) <= 20 and int(p) < 2**64
                             for p in (ms, seq))


def new_lease() -> str:
    """A fresh lease token (one per taking call: the hash is keyed by entry id)."""
    return secrets.token_hex(8)


def _str(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _fields(raw: Any) -> dict[str, Any]:
    """Entry fields as a str-keyed dict, from a parsed dict or a flat Lua list."""
    if isinstance(raw, Mapping):
        return {_str(k): v for k, v in raw.items()}
    it = iter(raw or ())
    return {_str(k): v for k, v in zip(it, it, strict=False)}


def _top_level(body: Any) -> dict[str, Any]:
    """The top-level fields of an envelope body that does not validate ({} when it is not
    even a JSON object)."""
    try:
        value = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _header(env: TaskEnvelope) -> bytes:
    """The ``enq`` marker: what the Server reports for a ``queued`` task."""
    return orjson.dumps({"id": env.id, "funcId": env.func_id, "origin": env.origin.value,
                         "originId": env.origin_id, "queue": env.queue,
                         "triggerTime": env.trigger_time, "eta": env.eta})


def _result_ttl_ms(env: TaskEnvelope) -> int:
    return (env.result_ttl or DEFAULT_RESULT_TTL_S) * 1000


class EnvelopeTemplate:
    """Stream bodies for many envelopes that differ from ``env`` only in id, trigger time and
    deadline (a cron job's fires): the envelope JSON and the ``enq`` header JSON, as
    ``enqueue`` writes them, without building and serialising a model per envelope. For a
    script that enqueues by itself (the Beat's ``cron_fire.lua``)."""

    def __init__(self, env: TaskEnvelope) -> None:
        self.envelope = env
        self._body = env.model_dump(by_alias=True, mode="json")
        self._header = orjson.loads(_header(env))
        self.result_ttl_ms = _result_ttl_ms(env)

    def render(self, task_id: str, trigger_time: float, expires: float | None) -> tuple[bytes, bytes]:
        """(envelope JSON, header JSON) of one envelope."""
        body = {**self._body, "id": task_id, "triggerTime": trigger_time, "expires": expires}
        header = {**self._header, "id": task_id, "triggerTime": trigger_time}
        return orjson.dumps(body), orjson.dumps(header)

    def envelope_for(self, task_id: str, trigger_time: float, expires: float | None) -> TaskEnvelope:
        """The same envelope as a model (for the rare fire that needs one)."""
        return self.envelope.model_copy(update={"id": task_id, "trigger_time": trigger_time,
                                                "expires": expires})


class StreamProtocol:
    """Producer and consumer operations on the task streams of one namespace."""

    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        *,
        blocking: aioredis.Redis | None = None,
        group: str = GROUP,
        runner: CommandRunner | None = None,
    ) -> None:
        """``runner``, when given, sends the script calls of the consumer's hot path
        (``claim``, ``complete_many``, …) instead of a redis-py pipeline (the worker's own
        connection); everything else goes through ``redis``."""
        self.redis = redis
        self._runner = runner
        self.blocking = blocking or redis
        self.keys = keys
        self.group = group
        prelude = (LUA_DIR / "_prelude.lua").read_text()
        self._scripts: dict[str, AsyncScript] = {
            name: redis.register_script(prelude + (LUA_DIR / f"{name}.lua").read_text())
            for name in SCRIPTS
        }
        self._clock_offset = 0.0  # Redis TIME − local time, refreshed every minute
        self._clock_checked = float("-inf")

    # --- plumbing ----------------------------------------------------------------------
    async def _eval_many(self, calls: Sequence[tuple[str, list[Any], list[Any]]]) -> list[Any]:
        """EVALSHA each (script, keys, args) in one non-transactional pipeline.

        Not redis-py's Script-in-pipeline, which sends SCRIPT EXISTS before every pipeline:
        scripts missing after a restart/failover (NOSCRIPT, so not run) are loaded and only
        those calls are sent again."""
        if not calls:
            return []
        results: list[Any]
        if self._runner is not None:
            results = await self._runner([("EVALSHA", self._scripts[name].sha, len(keys), *keys, *args)
                                          for name, keys, args in calls])
        else:
            pipe = self.redis.pipeline(transaction=False)
            for name, keys, args in calls:
                pipe.evalsha(self._scripts[name].sha, len(keys), *keys, *args)
            results = await pipe.execute(raise_on_error=False)
        missing = [i for i, r in enumerate(results) if isinstance(r, NoScriptError)]
        if missing:
            for name in {calls[i][0] for i in missing}:
                await self.redis.script_load(self._scripts[name].script)
            again = await self._eval_many([calls[i] for i in missing])
            for i, r in zip(missing, again, strict=True):
                results[i] = r
        for r in results:
            if isinstance(r, Exception):
                raise r
        return results

    async def _eval(self, name: str, keys: list[Any], args: list[Any]) -> Any:
        return await self._scripts[name](keys=keys, args=args)

    async def _server_minute(self) -> int:
        """The current minute by Redis TIME (offset cached for a minute)."""
        now = time.monotonic()
        if now - self._clock_checked > 60:
            self._clock_offset = await self.server_time() - time.time()
            self._clock_checked = now
        return int((time.time() + self._clock_offset) // 60)

    async def load_scripts(self) -> None:
        """SCRIPT LOAD every script (startup; NOSCRIPT later is handled anyway)."""
        async with self.redis.pipeline(transaction=False) as pipe:
            for script in self._scripts.values():
                pipe.script_load(script.script)
            await pipe.execute()

    async def ensure_groups(self, queues: Sequence[str]) -> None:
        """XGROUP CREATE <stream> workers 0 MKSTREAM for each queue, ignoring BUSYGROUP;
        also loads the scripts."""
        await self.load_scripts()
        for queue in queues:
            try:
                await self.redis.xgroup_create(self.keys.queue(queue), self.group, "0", mkstream=True)
            except ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    async def server_time(self) -> float:
        """Redis TIME as epoch seconds."""
        seconds, micros = await self.redis.time()
        return int(seconds) + int(micros) / 1e6

    # --- producing -------------------------------------------------------------------
    def _enqueue_args(self, env: TaskEnvelope, max_len: int, idem_ttl_ms: int) -> tuple[list[Any], list[Any]]:
        """One task's 5 keys and 10 args of the (batch) ``enqueue`` script."""
        k = self.keys
        key, scope = env.idempotency_key, env.idempotency_scope or ""
        idem = k.idem(key, scope) if key else k.enqueued(env.id)
        keys = [k.queue(env.queue), k.enqueued(env.id), k.delayed(env.queue), k.delayed_body(env.queue), idem]
        eta = "" if env.eta is None else int(env.eta * 1000)
        args = [env.id, env.func_id, env.origin.value, env.to_json(), max_len, _header(env), eta,
                _result_ttl_ms(env), idem_ttl_ms, f"{env.id}\x1f{env.func_id}" if key else ""]
        return keys, args

    @staticmethod
    def _enqueued(env: TaskEnvelope, reply: list[Any]) -> Enqueued | None:
        """The script's answer as an :class:`Enqueued`; None when the queue was full."""
        kind = _str(reply[0])
        if kind == "ok":
            return Enqueued(env.id, _str(reply[1]))
        if kind == "delayed":
            return Enqueued(env.id, None, due_ms=int(reply[1]))
        if kind == "dup":  # the first task id, with its func when an idempotency key matched
            first, sep, func_id = _str(reply[1]).partition("\x1f")
            return Enqueued(first, None, duplicate=True, conflict=bool(sep) and func_id != env.func_id)
        return None

    async def enqueue(self, env: TaskEnvelope, *, max_len: int,
                      idem_ttl_ms: int = IDEM_TTL_MS) -> Enqueued:
        """Enqueue now, or into the delayed set when ``env.eta`` is in the future (Redis time).
        Idempotency key → same task id; re-sent task id → no-op; XLEN ≥ max_len → QueueFull.
        Also writes the ``enq`` marker (task header JSON) used for ``status=queued``."""
        return (await self.enqueue_many([env], max_len=max_len, idem_ttl_ms=idem_ttl_ms))[0]

    async def enqueue_many(self, envs: Sequence[TaskEnvelope], *, max_len: int,
                           idem_ttl_ms: int = IDEM_TTL_MS) -> list[Enqueued]:
        """The same for many envelopes in one pipeline (one round trip).

        Each envelope is all-or-nothing; if any hit a full queue, :class:`QueueFull` is raised
        after the others were enqueued, with ``detail = {"accepted": [ids], "rejected": [ids]}``."""
        return await self.enqueue_prepared([self.prepare_enqueue(e, max_len=max_len, idem_ttl_ms=idem_ttl_ms)
                                            for e in envs])

    def prepare_enqueue(self, env: TaskEnvelope, *, max_len: int,
                        idem_ttl_ms: int = IDEM_TTL_MS) -> PreparedEnqueue:
        """Serialise one envelope for :meth:`enqueue_prepared` (a batcher does this in the
        caller's own request, so an envelope that cannot be serialised fails only there)."""
        keys, args = self._enqueue_args(env, max_len, idem_ttl_ms)
        return PreparedEnqueue(env, keys, args)

    async def enqueue_prepared(self, items: Sequence[PreparedEnqueue]) -> list[Enqueued]:
        """:meth:`enqueue_many` of envelopes already serialised."""
        calls = []
        for i in range(0, len(items), ENQUEUE_BATCH):  # one script call per batch: less per-call cost
            part = items[i:i + ENQUEUE_BATCH]
            calls.append(("enqueue", [x for p in part for x in p.keys], [x for p in part for x in p.args]))
        replies = [r for batch in await self._eval_many(calls) for r in batch]
        envs = [p.env for p in items]
        done = [self._enqueued(env, r) for env, r in zip(envs, replies, strict=True)]
        rejected = [env.id for env, d in zip(envs, done, strict=True) if d is None]
        if rejected:
            accepted = [d.task_id for d in done if d is not None]
            raise QueueFull(detail={"accepted": accepted, "rejected": rejected})
        return [d for d in done if d is not None]

    async def idempotency_conflicts(self, envs: Sequence[TaskEnvelope]) -> list[int]:
        """Indexes of the envelopes whose idempotency key was already used (in its scope) for
        another func: a check before a batch is enqueued, so it can be refused whole."""
        keyed = [(i, e) for i, e in enumerate(envs) if e.idempotency_key]
        if not keyed:
            return []
        values = await self.redis.mget([self.keys.idem(e.idempotency_key or "", e.idempotency_scope or "")
                                        for _, e in keyed])
        out = []
        for (i, env), value in zip(keyed, values, strict=True):
            _, sep, func_id = _str(value or b"").partition("\x1f")
            if sep and func_id != env.func_id:
                out.append(i)
        return out

    async def promote(self, queue: str, *, batch: int = 500) -> tuple[int, int | None]:
        """Move due delayed tasks (Redis TIME) onto the stream; return (moved, next due ms)."""
        k = self.keys
        moved, nxt = await self._eval("promote", [k.delayed(queue), k.delayed_body(queue), k.queue(queue)],
                                      [batch])
        return int(moved), None if nxt is None else int(float(nxt))

    async def queued_header(self, task_id: str) -> dict[str, object] | None:
        """The ``enq`` marker of a task (id, funcId, origin, originId, queue, triggerTime, eta)."""
        raw = await self.redis.get(self.keys.enqueued(task_id))
        return None if raw is None else dict(orjson.loads(raw))

    # --- consuming -------------------------------------------------------------------
    async def read(
        self, consumer: str, queues: Sequence[str], count: int, *, block_ms: int = 2000
    ) -> list[Delivery]:
        """Up to ``count`` new entries: non-blocking probe per queue in priority order, then one
        blocking read over all queues (on the blocking client) if nothing came back.
        ``block_ms <= 0`` skips the blocking read. The entries are taken under a new lease."""
        out: list[Delivery] = []
        lease = new_lease()
        for queue in queues:
            if len(out) >= count:
                break
            streams: dict[Any, Any] = {self.keys.queue(queue): ">"}
            reply: Any = await self.redis.xreadgroup(self.group, consumer, streams, count=count - len(out))
            out += await self._deliveries(consumer, reply, lease=lease)
        if not out and block_ms > 0 and count > 0:
            streams = {self.keys.queue(q): ">" for q in queues}
            reply = await self.blocking.xreadgroup(self.group, consumer, streams, count=count, block=block_ms)
            out = await self._deliveries(consumer, reply, lease=lease)
        await self._take_leases(out)
        return out

    async def _take_leases(self, deliveries: Sequence[Delivery]) -> None:
        """Write the lease tokens of entries taken outside a script (``read``)."""
        if not deliveries:
            return
        async with self.redis.pipeline(transaction=False) as pipe:
            for q, ds in self._by_queue(deliveries).items():
                pipe.hset(self.keys.leases(q), mapping={d.entry_id: d.lease for d in ds})
            await pipe.execute()

    async def _deliveries(self, consumer: str, reply: Any, counts: Mapping[str, int] | None = None,
                          *, lease: str) -> list[Delivery]:
        """Parse an XREADGROUP reply; malformed bodies go to the dead letters."""
        if isinstance(reply, Mapping):  # RESP3
            reply = list(reply.items())
        out: list[Delivery] = []
        for stream, entries in reply or ():
            queue = self.keys.queue_name(_str(stream))
            out += await self._parse_entries(consumer, queue, entries, counts, lease)
        return out

    async def _parse_entries(self, consumer: str, queue: str, entries: Iterable[Any],
                             counts: Mapping[str, int] | None,
                             lease: str | Mapping[str, str]) -> list[Delivery]:
        """Deliveries of the valid entries, each under ``lease`` (one token, or one per entry
        id); malformed ones are dead-lettered at once (owner check by consumer only)."""
        out: list[Delivery] = []
        bad: list[tuple[str, int, dict[str, Any], str]] = []
        for entry_id, raw in entries:
            eid = _str(entry_id)
            count = counts.get(eid, 1) if counts else 1
            fields = _fields(raw)
            try:
                env = TaskEnvelope.model_validate_json(fields["body"])
            except (KeyError, ValidationError, ValueError) as exc:
                bad.append((eid, count, fields, f"malformed: {type(exc).__name__}: {exc}"[:500]))
                continue
            token = lease if isinstance(lease, str) else lease.get(eid) or new_lease()
            out.append(Delivery(queue, eid, env, count, token))
        if bad:
            await self._eval_many([self._undecodable_call(consumer, queue, eid, n, f, reason)
                                   for eid, n, f, reason in bad])
        return out

    def _undecodable_call(self, consumer: str, queue: str, entry_id: str, count: int,
                          fields: Mapping[str, Any], reason: str) -> tuple[str, list[Any], list[Any]]:
        """The ``dead`` call of an entry whose envelope cannot be read: it is dead-lettered,
        and its task (when the entry names one) ends ``failure`` with the reason, told to a
        waiting sync caller when the body still names its reply stream."""
        task, func = _str(fields.get("task", b"")), _str(fields.get("func", b""))
        body = fields.get("body", b"")
        if not task:
            return self._dead_call(consumer, queue, entry_id, count, None, reason, 0, task=task,
                                   func=func, body=body)
        known = _top_level(body)
        reply_to = known.get("replyTo")
        if not (isinstance(reply_to, str) and reply_to.startswith(self.keys.reply(""))):
            reply_to = None
        origin = known.get("origin")
        ttl = known.get("resultTtl")
        result = TaskResult(
            id=task, func_id=func, status=TaskStatus.FAILURE, queue=queue,
            origin=Origin(origin) if origin in set(Origin) else Origin.DIRECT,
            origin_id=known.get("originId") if isinstance(known.get("originId"), str) else None,
            end_time=time.time(), exception=f"The task envelope cannot be read: {reason}")
        ttl_s = ttl if isinstance(ttl, int) and ttl > 0 else DEFAULT_RESULT_TTL_S
        return self._dead_call(consumer, queue, entry_id, count, result, reason, ttl_s * 1000,
                               task=task, func=func, body=body, reply_to=reply_to)

    async def read_own_pending(self, consumer: str, queues: Sequence[str]) -> list[Delivery]:
        """Entries already delivered to this consumer (after a lost read reply), under the
        lease token they already hold, or a new one (to be taken by :meth:`start`) when none
        was written. Read with XPENDING + XRANGE, not ``XREADGROUP … 0``: a re-read is no
        delivery, so it changes neither ownership nor the delivery count."""
        out: list[Delivery] = []
        for queue in queues:
            stream = self.keys.queue(queue)
            counts = await self._own_pending(stream, consumer)
            if not counts:
                continue
            async with self.redis.pipeline(transaction=False) as pipe:
                for eid in counts:
                    pipe.xrange(stream, eid, eid)
                pipe.hmget(self.keys.leases(queue), list(counts))
                *ranges, tokens = await pipe.execute()
            gone = [eid for eid, found in zip(counts, ranges, strict=True) if not found]
            if gone:  # deleted while pending
                await self.redis.xack(stream, self.group, *gone)
                await self.redis.hdel(self.keys.leases(queue), *gone)
            held = {eid: _str(v) for eid, v in zip(counts, tokens, strict=True) if v is not None}
            live = [found[0] for found in ranges if found]
            out += await self._parse_entries(consumer, queue, live, counts, held)
        return out

    async def _own_pending(self, stream: str, consumer: str, *, page: int = 500) -> dict[str, int]:
        """Entry id → delivery count of everything pending for ``consumer``, in id order."""
        counts: dict[str, int] = {}
        start = "-"
        while True:
            rows = await self.redis.xpending_range(stream, self.group, start, "+", page,
                                                   consumername=consumer)
            counts.update((_str(r["message_id"]), int(r["times_delivered"])) for r in rows)
            if len(rows) < page:
                return counts
            start = "(" + _str(rows[-1]["message_id"])

    async def claim(
        self,
        consumer: str,
        queues: Sequence[str],
        count: int,
        *,
        marker_ttl_ms: int,
        block_ms: int = 2000,
        completions: Sequence[tuple[Delivery, TaskResult, int]] = (),
    ) -> tuple[list[bool], list[Claimed]]:
        """``read`` and ``start`` in one round trip: up to ``count`` new entries, probing the
        queues in priority order, each with its start check done and running marker set.

        ``completions`` ((delivery, result, result_ttl_ms) each, as for ``complete_many``) go
        in the same pipeline, before the read; their outcomes are the first item returned.
        When nothing was waiting, one blocking read over all queues follows (blocking client;
        ``block_ms <= 0`` skips it) and its entries are started with :meth:`start` — except in
        a call carrying completions, which never blocks (their outcomes are not held up)."""
        k = self.keys
        calls = []
        if completions:
            minute = await self._server_minute()
            calls = [self._complete_call(consumer, d, r, ttl, minute) for d, r, ttl in completions]
        lease = new_lease()
        calls.append(("claim", [*map(k.queue, queues), *map(k.leases, queues)],
                      [self.group, consumer, count, k.result(""), k.cancel(""), k.running(""),
                       marker_ttl_ms, lease]))
        replies = await self._eval_many(calls)
        done = [bool(r) for r in replies[:-1]]
        claimed: list[Claimed] = []
        for index, entries, codes in replies[-1] or ():
            by_id = {_str(e[0]): Start(int(c)) for e, c in zip(entries, codes, strict=True)}
            for d in await self._parse_entries(consumer, queues[int(index) - 1], entries, None, lease):
                claimed.append(Claimed(d, by_id[d.entry_id]))
        if claimed or block_ms <= 0 or count <= 0 or completions:
            return done, claimed
        streams: dict[Any, Any] = {k.queue(q): ">" for q in queues}
        reply: Any = await self.blocking.xreadgroup(self.group, consumer, streams, count=count,
                                                    block=block_ms)
        deliveries = await self._deliveries(consumer, reply, lease=lease)
        starts = await self.start(consumer, deliveries, marker_ttl_ms=marker_ttl_ms)
        return done, [Claimed(d, s) for d, s in zip(deliveries, starts, strict=True)]

    async def start(self, consumer: str, deliveries: Sequence[Delivery], *,
                    marker_ttl_ms: int) -> list[Start]:
        """The start check of entries got otherwise (reclaim, own pending): already
        completed, cancelled, or run (running marker set), in one script call that also takes
        each entry under its delivery's lease token."""
        if not deliveries:
            return []
        k = self.keys
        keys = [x for d in deliveries for x in (k.result(d.envelope.id), k.cancel(d.envelope.id),
                                                 k.running(d.envelope.id), k.leases(d.queue))]
        args = [consumer, marker_ttl_ms,
                *[x for d in deliveries for x in (d.envelope.attempt, d.entry_id, d.lease)]]
        return [Start(int(c)) for c in await self._eval("start", keys, args)]

    @staticmethod
    def _by_queue(deliveries: Iterable[Delivery]) -> dict[str, list[Delivery]]:
        groups: dict[str, list[Delivery]] = defaultdict(list)
        for d in deliveries:
            groups[d.queue].append(d)
        return groups

    async def touch(self, consumer: str, deliveries: Sequence[Delivery]) -> list[str]:
        """Owner-checked lease renewal; returns entry ids this consumer no longer owns."""
        calls = [("touch", [self.keys.queue(q), self.keys.leases(q)],
                  [self.group, consumer, *[x for d in ds for x in (d.entry_id, d.lease)]])
                 for q, ds in self._by_queue(deliveries).items()]
        return [_str(i) for lost in await self._eval_many(calls) for i in lost]

    def _complete_call(self, consumer: str, d: Delivery, result: TaskResult, ttl_ms: int,
                       minute: int) -> tuple[str, list[Any], list[Any]]:
        env, k = d.envelope, self.keys
        blob = result.to_json().encode()
        keys = [k.queue(d.queue), k.result(env.id), k.running(env.id), k.stats(d.queue, minute),
                k.enqueued(env.id), k.task_counts(), k.task_durations(), k.leases(d.queue)]
        if env.reply_to:
            keys.append(env.reply_to)
        ran = result.start_time is not None and result.end_time is not None
        seconds = max(0.0, result.end_time - result.start_time) if ran else 0.0  # type: ignore[operator]
        args = [self.group, consumer, d.entry_id, d.lease, blob, ttl_ms, env.id, result.status.value,
                int(len(blob) <= INLINE_LIMIT), REPLY_MAXLEN, env.func_id,
                bucket_label(seconds) if ran else "", repr(seconds)]
        return "complete", keys, args

    async def complete(self, consumer: str, delivery: Delivery, result: TaskResult, *,
                       result_ttl_ms: int) -> bool:
        """Owner-checked: SET result PX ttl, XADD reply note (if replyTo), XACK+XDEL, all in
        one script. False (nothing written) when the entry is no longer ours.
        ``result_ttl_ms <= 0`` keeps no result (and drops the ``enq`` marker)."""
        return (await self.complete_many(consumer, [(delivery, result, result_ttl_ms)]))[0]

    async def complete_many(self, consumer: str,
                            items: Sequence[tuple[Delivery, TaskResult, int]]) -> list[bool]:
        """Many completions in one pipeline: (delivery, result, result_ttl_ms) each."""
        minute = await self._server_minute()
        calls = [self._complete_call(consumer, d, r, ttl, minute) for d, r, ttl in items]
        return [bool(r) for r in await self._eval_many(calls)]

    async def ack_duplicate(self, consumer: str, delivery: Delivery) -> bool:
        """Owner-checked XACK+XDEL of an entry whose task already has a result."""
        q = delivery.queue
        return bool(await self._eval("ack", [self.keys.queue(q), self.keys.leases(q)],
                                     [self.group, consumer, delivery.entry_id, delivery.lease]))

    async def retry(self, consumer: str, delivery: Delivery, next_env: TaskEnvelope,
                    due_ms: int) -> bool:
        """Owner-checked: put ``next_env`` (attempt+1) in the delayed set due at ``due_ms``
        and XACK+XDEL the entry. False when not ours. Also refreshes the ``enq`` marker and
        drops the running marker, so the task reads as ``queued`` again."""
        k, q = self.keys, delivery.queue
        keys = [k.queue(q), k.delayed(next_env.queue), k.delayed_body(next_env.queue),
                k.running(next_env.id), k.enqueued(next_env.id), k.leases(q)]
        ttl = _result_ttl_ms(next_env) + max(0, int(due_ms - time.time() * 1000))
        args = [self.group, consumer, delivery.entry_id, delivery.lease, next_env.id,
                next_env.to_json(), int(due_ms), _header(next_env), ttl]
        return bool(await self._eval("retry", keys, args))

    async def reclaim(self, consumer: str, queue: str, *, min_idle_ms: int, count: int,
                      cursor: str = "0-0") -> Reclaimed:
        """XAUTOCLAIM entries idle ≥ min_idle_ms, with each one's delivery count, taken under a
        new lease token (the previous holder can no longer write them)."""
        lease = new_lease()
        nxt, entries, counts, deleted = await self._eval(
            "reclaim", [self.keys.queue(queue), self.keys.leases(queue)],
            [self.group, consumer, min_idle_ms, cursor, count, lease])
        ids = [_str(e[0]) for e in entries]
        deliveries = await self._parse_entries(
            consumer, queue, entries, dict(zip(ids, map(int, counts), strict=True)), lease)
        return Reclaimed(_str(nxt), deliveries, [_str(i) for i in deleted])

    def _dead_call(self, consumer: str, queue: str, entry_id: str, count: int,
                   result: TaskResult | None, reason: str, ttl_ms: int, *, task: str, func: str,
                   body: Any, reply_to: str | None = None,
                   lease: str = "") -> tuple[str, list[Any], list[Any]]:
        k = self.keys
        blob = result.to_json().encode() if result else b""
        keys = [k.queue(queue), k.dead(), k.result(task), k.running(task), k.task_counts(), k.leases(queue)]
        if reply_to and result:
            keys.append(reply_to)
        status = result.status.value if result else ""
        args = [self.group, consumer, entry_id, count, blob, ttl_ms, task, status,
                int(len(blob) <= INLINE_LIMIT), REPLY_MAXLEN, reason, queue, func, body, lease]
        return "dead", keys, args

    async def dead(self, consumer: str, delivery: Delivery, result: TaskResult, *,
                   reason: str, result_ttl_ms: int) -> bool:
        """Owner-checked: XADD to the dead stream (reason, queue, entry id, task, count, body),
        SET result (status dead), reply note, XACK+XDEL."""
        env = delivery.envelope
        call = self._dead_call(consumer, delivery.queue, delivery.entry_id, delivery.count, result,
                               reason, result_ttl_ms, task=env.id, func=env.func_id,
                               body=env.to_json(), reply_to=env.reply_to, lease=delivery.lease)
        return bool((await self._eval_many([call]))[0])

    async def release(self, consumer: str, deliveries: Sequence[Delivery], *,
                      lease_ms: int) -> int:
        """Owner-checked XCLAIM … IDLE (10×lease) so any worker reclaims them at once."""
        calls = [("release", [self.keys.queue(q), self.keys.leases(q)],
                  [self.group, consumer, 10 * lease_ms, *[x for d in ds for x in (d.entry_id, d.lease)]])
                 for q, ds in self._by_queue(deliveries).items()]
        return sum(int(n) for n in await self._eval_many(calls))

    async def delete_consumer_if_empty(self, queue: str, consumer: str) -> bool:
        """XGROUP DELCONSUMER only when the consumer has nothing pending (one script)."""
        return bool(await self._eval("delconsumer_if_empty", [self.keys.queue(queue)],
                                     [self.group, consumer]))

    async def safe_trim(self, queue: str, *, exact: bool = False) -> int:
        """XTRIM MINID ~ below both the smallest pending id and last-delivered-id
        (of every group). ``exact`` trims with ``=`` (tests; costlier)."""
        return int(await self._eval("safe_trim", [self.keys.queue(queue)], ["=" if exact else "~"]))

    # --- results and replies --------------------------------------------------------------
    async def get_result(self, task_id: str) -> TaskResult | None:
        """The stored result of a task, None when absent or expired."""
        raw = await self.redis.get(self.keys.result(task_id))
        return None if raw is None else TaskResult.model_validate_json(raw)

    async def open_reply_stream(self, server_id: str, *, ttl_ms: int = 120_000) -> str:
        """Create/refresh this Server's reply stream; returns its key."""
        key = self.keys.reply(server_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xadd(key, {"init": "1"}, maxlen=REPLY_MAXLEN, approximate=True)
            pipe.pexpire(key, ttl_ms)
            await pipe.execute()
        return key

    async def read_replies(self, reply_key: str, last_id: str, *, block_ms: int = 1000,
                           count: int = 500) -> tuple[str, list[ReplyNote]]:
        """XREAD BLOCK on the blocking client; returns (new last id, notes)."""
        reply: Any = await self.blocking.xread({reply_key: last_id}, count=count, block=block_ms)
        if isinstance(reply, Mapping):  # RESP3
            reply = list(reply.items())
        notes: list[ReplyNote] = []
        for _stream, entries in reply or ():
            for entry_id, raw in entries:
                last_id = _str(entry_id)
                f = _fields(raw)
                if "task" not in f:
                    continue  # the init entry
                result = TaskResult.model_validate_json(f["result"]) if f.get("result") else None
                notes.append(ReplyNote(_str(f["task"]), _str(f["status"]), result))
        return last_id, notes

    # --- dead letters ---------------------------------------------------------------------
    async def dead_letters(self, *, count: int = 100, start: str = "-",
                           newest_first: bool = False) -> list[dict[str, str]]:
        """Dead letters as dicts (``id`` plus reason, queue, entry, task, func, count, body,
        time in ms), oldest first from ``start`` or newest first down from ``start`` (``+``)."""
        key = self.keys.dead()
        rows: Any
        if newest_first:
            rows = await self.redis.xrevrange(key, "+" if start == "-" else start, "-", count=count)
        else:
            rows = await self.redis.xrange(key, start, "+", count=count)
        return [{"id": _str(i), **{k: _str(v) for k, v in _fields(f).items()}} for i, f in rows]

    async def requeue_dead(self, entry_id: str, *, max_len: int) -> Enqueued:
        """Put a dead letter's envelope back on its queue (attempt reset) and delete the letter.
        The old result is deleted; eta, expires, replyTo and lastError are cleared."""
        rows = await self.redis.xrange(self.keys.dead(), entry_id, entry_id)
        if not rows:
            raise NotFound(f"no dead letter {entry_id}")
        old = TaskEnvelope.model_validate_json(_fields(rows[0][1])["body"])
        env = old.model_copy(update={"attempt": 1, "eta": None, "expires": None, "reply_to": None,
                                     "last_error": None})
        k = self.keys
        reply = await self._eval(
            "requeue", [k.dead(), k.queue(env.queue), k.enqueued(env.id), k.result(env.id)],
            [entry_id, max_len, env.id, env.func_id, env.origin.value, env.to_json(), _header(env),
             _result_ttl_ms(env)])
        kind = _str(reply[0])
        if kind == "gone":
            raise NotFound(f"no dead letter {entry_id}")
        if kind == "full":
            raise QueueFull(detail={"rejected": [env.id]})
        return Enqueued(env.id, _str(reply[1]))
