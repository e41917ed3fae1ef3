"""The minimal HTTP front of a peer: aiohttp on uvloop, one client per process.

    python front.py --system arq|saq|celery --port PORT

- ``POST /sync``  body ``{"x": …}``: queue the no-op, wait for its result, answer it as JSON;
- ``POST /async`` body ``{"x": …}``: queue the no-op, answer ``{"id": task id}``.

Errors answer 500 with the exception's name, so the load generator counts them. It prints
``ready`` once listening, and stops on SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys

import uvloop
from aiohttp import web

from common import load_client


async def serve(system: str, port: int) -> None:
    client = load_client(system)
    await client.start()

    async def sync(request: web.Request) -> web.Response:
        body = await request.json()
        try:
            result = await client.call(body["x"])
        except Exception as exc:
            return web.json_response({"error": type(exc).__name__}, status=500)
        return web.json_response(result)

    async def enqueue(request: web.Request) -> web.Response:
        body = await request.json()
        try:
            task_id = await client.enqueue(body["x"])
        except Exception as exc:
            return web.json_response({"error": type(exc).__name__}, status=500)
        return web.json_response({"id": task_id})

    app = web.Application()
    app.router.add_post("/sync", sync)
    app.router.add_post("/async", enqueue)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, backlog=1024)
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(json.dumps({"ready": True, "port": port}), flush=True)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()
        await client.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--system", required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvloop.run(serve(args.system, args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
