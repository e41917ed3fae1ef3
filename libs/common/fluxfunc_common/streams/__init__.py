"""The Redis Streams task protocol (described in docs/redis-protocol.md).

The only package that converts between :class:`TaskEnvelope`/:class:`TaskResult` and Redis
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

:class:`StreamProtocol` is one object over the parts, one module each: ``enqueue``
(producer), ``claim`` (taking entries), ``settle`` (writes on held entries), ``replies``
(results and reply notes), ``deadletters``; ``base`` holds the clients and the script calls,
``entries`` the value types, ``template`` the bodies of a cron job's fires.
"""

from __future__ import annotations

from fluxfunc_common.streams.base import SCRIPTS, CommandRunner
from fluxfunc_common.streams.claim import Claiming
from fluxfunc_common.streams.deadletters import DeadLetters
from fluxfunc_common.streams.enqueue import ENQUEUE_BATCH, Producing
from fluxfunc_common.streams.entries import (
    DEFAULT_RESULT_TTL_S,
    IDEM_TTL_MS,
    INLINE_LIMIT,
    REPLY_MAXLEN,
    Claimed,
    Delivery,
    Enqueued,
    PreparedEnqueue,
    Reclaimed,
    ReplyNote,
    Start,
    is_entry_id,
    new_lease,
)
from fluxfunc_common.streams.replies import Replies
from fluxfunc_common.streams.settle import Settling
from fluxfunc_common.streams.template import EnvelopeTemplate

__all__ = [
    "DEFAULT_RESULT_TTL_S", "ENQUEUE_BATCH", "IDEM_TTL_MS", "INLINE_LIMIT", "REPLY_MAXLEN", "SCRIPTS",
    "Claimed", "CommandRunner", "Delivery", "Enqueued", "EnvelopeTemplate", "PreparedEnqueue",
    "Reclaimed", "ReplyNote", "Start", "StreamProtocol", "is_entry_id", "new_lease",
]


class StreamProtocol(Producing, Claiming, Settling, Replies, DeadLetters):
    """Producer and consumer operations on the task streams of one namespace.

    ``StreamProtocol(redis, keys, *, blocking=None, group=GROUP, runner=None)``: see
    :class:`~fluxfunc_common.streams.base.ProtocolBase`."""
