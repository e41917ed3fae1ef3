"""What every part of the stream protocol shares: the clients, the key names, the Lua scripts
and the one way to call them (pipelined EVALSHA, reloaded on NOSCRIPT)."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, ResponseError

from fluxfunc_common import luascripts
from fluxfunc_common.keys import GROUP, Keys
from fluxfunc_common.streams.entries import Delivery, ScriptCall

SCRIPTS = ("enqueue", "promote", "touch", "complete", "ack", "retry", "reclaim", "dead",
           "release", "delconsumer_if_empty", "safe_trim", "requeue", "claim", "start")

# Sends a batch of commands in one round trip and returns their replies in order, error
# replies in place (as a redis-py pipeline's ``execute(raise_on_error=False)`` does).
CommandRunner = Callable[[Sequence[tuple[Any, ...]]], Awaitable[list[Any]]]


def by_queue(deliveries: Iterable[Delivery]) -> dict[str, list[Delivery]]:
    groups: dict[str, list[Delivery]] = defaultdict(list)
    for d in deliveries:
        groups[d.queue].append(d)
    return groups


class ProtocolBase:
    """The shared state and plumbing of :class:`~fluxfunc_common.streams.StreamProtocol`."""

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
        self._scripts: dict[str, AsyncScript] = {name: luascripts.register(redis, name) for name in SCRIPTS}
        self._clock_offset = 0.0  # Redis TIME − local time, refreshed every minute
        self._clock_checked = float("-inf")

    async def _eval_many(self, calls: Sequence[ScriptCall]) -> list[Any]:
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
