"""fluxfunc: provisioning of the bench function through the management API, and the client.

Unlike the peers, fluxfunc is driven only through its real Server: the no-op is a published
script, the sync and async calls go to a sync API and an async API, and the throughput
driver queues with ``POST /api/v1/func-many``. Only "is the result there yet" looks at Redis
directly (``{ns}:result:{task}``), as for the peers, so the check costs no HTTP request.
"""

from __future__ import annotations

import os
from typing import Any

import aiohttp
import orjson
import redis.asyncio as aioredis

from common import redis_url
from fluxfunc_common.keys import Keys

SCRIPT_ID = "bench__noop"
FUNC_ID = f"{SCRIPT_ID}.noop"
SYNC_API = "sapi-bench-noop"
ASYNC_API = "aapi-bench-noop"
MANY_BATCH = 1000  # the Server's limit per func-many request

SCRIPT = '''\
@DFF.API("No-op: returns its input")
def noop(x):
    return x
'''


def base_url() -> str:
    return os.environ.get("BENCH_FF_URL", "http://127.0.0.1:8088")


def headers(token: str | None = None) -> dict[str, str]:
    token = token if token is not None else os.environ.get("BENCH_FF_TOKEN", "")
    return {"Authorization": f"Bearer {token}"} if token else {}


async def provision(url: str, token: str) -> dict[str, Any]:
    """Create and publish the no-op script, then its sync API and async API (caller gives x)."""
    async with aiohttp.ClientSession(url, headers=headers(token)) as http:

        async def post(path: str, body: dict[str, Any]) -> dict[str, Any]:
            async with http.post(path, json=body) as resp:
                data = await resp.json(content_type=None)
                if resp.status != 200 or not data.get("ok"):
                    raise RuntimeError(f"POST {path}: HTTP {resp.status} {data}")
                return dict(data)

        await post("/api/v1/scripts", {"id": SCRIPT_ID, "title": "bench", "code": SCRIPT})
        published = await post(f"/api/v1/scripts/{SCRIPT_ID}/publish", {})
        kwargs = {"x": "INPUT_BY_CALLER"}
        await post("/api/v1/sync-apis", {"id": SYNC_API, "funcId": FUNC_ID, "kwargs": kwargs})
        await post("/api/v1/async-apis", {"id": ASYNC_API, "funcId": FUNC_ID, "kwargs": kwargs})
        return published


class Client:
    def __init__(self) -> None:
        self.http: aiohttp.ClientSession | None = None
        self.redis = aioredis.from_url(redis_url(), max_connections=64)
        self.keys = Keys(os.environ.get("BENCH_FF_NS", "fluxfunc"))

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=128)
        self.http = aiohttp.ClientSession(base_url(), headers=headers(), connector=connector)

    async def close(self) -> None:
        if self.http is not None:
            await self.http.close()
        await self.redis.aclose()

    async def _post(self, path: str, body: dict[str, Any]) -> tuple[int, Any]:
        assert self.http is not None
        async with self.http.post(path, data=orjson.dumps(body),
                                  headers={"Content-Type": "application/json"}) as resp:
            raw = await resp.read()
            # A sync call answers the bare return value: a str comes back as text/plain.
            return resp.status, orjson.loads(raw) if resp.content_type == "application/json" else raw.decode()

    async def enqueue(self, x: Any) -> str:
        status, data = await self._post(f"/api/v1/async/{ASYNC_API}", {"kwargs": {"x": x}})
        if status != 200:
            raise RuntimeError(f"async call: HTTP {status} {data}")
        return str(data["data"]["id"])

    async def enqueue_many(self, xs: list[Any]) -> list[str]:
        ids: list[str] = []
        for i in range(0, len(xs), MANY_BATCH):
            calls = [{"funcId": FUNC_ID, "kwargs": {"x": x}} for x in xs[i:i + MANY_BATCH]]
            status, data = await self._post("/api/v1/func-many", {"calls": calls})
            if status != 200:
                raise RuntimeError(f"func-many: HTTP {status} {data}")
            ids += data["data"]["ids"]
        return ids

    async def call(self, x: Any) -> Any:
        status, data = await self._post(f"/api/v1/sync/{SYNC_API}", {"kwargs": {"x": x}})
        if status != 200:
            raise RuntimeError(f"sync call: HTTP {status} {data}")
        return data

    async def missing(self, ids: list[str]) -> list[str]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for task_id in ids:
                pipe.exists(self.keys.result(task_id))
            found = await pipe.execute()
        return [task_id for task_id, hit in zip(ids, found, strict=True) if not hit]
