"""Per-process state of a Server, reached from handlers as ``request.app[CTX]``
(:mod:`fluxfunc_server.appkeys`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

import redis.asyncio as aioredis

from fluxfunc_common.clock import Clock, SystemClock
from fluxfunc_common.crypto import Cipher
from fluxfunc_common.keys import Keys
from fluxfunc_common.settings import Settings
from fluxfunc_common.store import Store
from fluxfunc_common.streams import StreamProtocol
from fluxfunc_server import apiauth_digest
from fluxfunc_server.metrics import Metrics
from fluxfunc_server.principal import Principal
from fluxfunc_server.waiter import ReplyWaiter


@dataclass
class AppContext:
    """Everything a handler needs; built once in ``app.py`` and closed in reverse order."""

    settings: Settings
    redis: aioredis.Redis
    keys: Keys
    streams: StreamProtocol
    store: Store
    cipher: Cipher
    server_id: str
    waiter: ReplyWaiter  # started by app.py after the consumer groups exist
    metrics: Metrics = field(default_factory=Metrics)
    clock: Clock = field(default_factory=SystemClock)
    # bearer tokens recently found valid: token hash → (monotonic expiry, principal)
    token_cache: dict[str, tuple[float, Principal]] = field(default_factory=dict)

    @cached_property
    def nonce_key(self) -> bytes:
        """The HMAC key of httpDigest nonces (derived once: the secret does not change)."""
        return apiauth_digest.nonce_key(self.settings)

