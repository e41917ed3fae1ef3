"""Per-process state of a Server, reached from handlers as ``request.app[CTX]``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis
from aiohttp import web

from fluxfunc_common.clock import Clock, SystemClock
from fluxfunc_common.crypto import Cipher
from fluxfunc_common.keys import Keys
from fluxfunc_common.settings import Settings
from fluxfunc_common.store import Store
from fluxfunc_common.streams import StreamProtocol


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
    clock: Clock = field(default_factory=SystemClock)
    # set by app.py: the reply waiter (sync calls) and the metrics registry
    waiter: Any = None
    metrics: Any = None


CTX: web.AppKey[AppContext] = web.AppKey("fluxfunc_ctx", AppContext)
