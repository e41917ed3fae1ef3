"""The one loader of the Lua scripts in ``lua/``.

Every script is sent with ``lua/_prelude.lua`` in front: the helpers all of them share (the
owner check, the stream entry layout of a task, Redis time, reply notes). A script uses only
the helpers it needs; the unused ones are local functions that cost nothing at run time.
The sources are read once per process.
"""

from __future__ import annotations

from functools import cache
from importlib import resources

import redis.asyncio as aioredis
from redis.commands.core import AsyncScript

PRELUDE = "_prelude"


def _read(name: str) -> str:
    return (resources.files("fluxfunc_common") / "lua" / f"{name}.lua").read_text(encoding="utf-8")


@cache
def source(name: str) -> str:
    """The text sent to Redis for script ``name`` (``lua/<name>.lua``): prelude + script."""
    return _read(PRELUDE) + _read(name)


def register(redis: aioredis.Redis, name: str) -> AsyncScript:
    """Script ``name`` registered on ``redis`` (EVALSHA, loaded again on NOSCRIPT)."""
    return redis.register_script(source(name))
