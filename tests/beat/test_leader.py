"""Leadership: lease + fencing epoch on a real Redis, time driven by a FakeClock."""

from __future__ import annotations

import redis.asyncio as aioredis

from fluxfunc_beat.leader import Leadership, current_leader
from fluxfunc_common.clock import FakeClock
from fluxfunc_common.keys import Keys


def pair(redis: aioredis.Redis, keys: Keys, clock: FakeClock,
         lease: float = 3.0) -> tuple[Leadership, Leadership]:
    return (Leadership(redis, keys, lease_seconds=lease, clock=clock, token="a"),
            Leadership(redis, keys, lease_seconds=lease, clock=clock, token="b"))


async def test_one_leader_and_a_new_epoch_per_term(redis_client: aioredis.Redis, keys: Keys) -> None:
    clock = FakeClock()
    a, b = pair(redis_client, keys, clock)
    assert await a.try_acquire() and a.epoch == 1 and a.valid()
    assert not await b.try_acquire() and b.epoch is None and not b.valid()
    assert await current_leader(redis_client, keys) == ("a", 1)
    await a.release()  # graceful stop: the standby takes over at once, with a new epoch
    assert not a.valid()
    assert await b.try_acquire() and b.epoch == 2
    assert await current_leader(redis_client, keys) == ("b", 2)


async def test_validity_ends_before_the_lease_can_expire(redis_client: aioredis.Redis, keys: Keys) -> None:
    clock = FakeClock()
    a, _ = pair(redis_client, keys, clock, lease=4.0)
    assert await a.try_acquire()
    assert a.renew_interval < a.lease - a.margin  # a renewal is due well before validity ends
    clock.advance(a.lease - a.margin - 0.01)
    assert a.valid() and a.remaining() > 0
    clock.advance(0.02)
    assert not a.valid() and a.remaining() <= 0  # stop acting: Redis may expire the lease soon
    assert await a.renew()  # the key is still ours in Redis: renewing restores validity
    assert a.valid()
    ttl = await redis_client.pttl(keys.beat_leader())
    assert 3000 < ttl <= 4000


async def test_lost_lease_and_stale_epoch_are_detected(redis_client: aioredis.Redis, keys: Keys) -> None:
    clock = FakeClock()
    a, b = pair(redis_client, keys, clock)
    assert await a.try_acquire()
    await redis_client.delete(keys.beat_leader())  # the lease expired in Redis (a long pause)
    assert await b.try_acquire() and b.epoch == 2
    assert not await a.renew()  # the old leader learns it at its next renewal ...
    assert a.epoch is None and not a.valid()  # ... and stops at once
    assert await b.renew()
    # a leader whose epoch was superseded cannot renew either, even holding the token
    await redis_client.incr(keys.beat_epoch())
    assert not await b.renew() and not b.valid()


async def test_release_is_compare_and_delete(redis_client: aioredis.Redis, keys: Keys) -> None:
    clock = FakeClock()
    a, b = pair(redis_client, keys, clock)
    assert await a.try_acquire()
    await redis_client.delete(keys.beat_leader())
    assert await b.try_acquire()
    await a.release()  # a's stale release must not remove b's lease
    assert await current_leader(redis_client, keys) == ("b", 2)
