"""Burst of simultaneous callers: N clients, each with its own connection, send one POST at
the same instant; the figure is the time until every one of them has its answer.

    python burst.py URL --callers 5000 --body '{"x": 1}' [--connect-batch 500]

The connections are opened first (``--connect-batch`` at a time, so the server's accept queue
never overflows into SYN retries, which would add whole seconds that measure the kernel, not
the server), then every caller writes its request at once and reads its answer. Raw asyncio
streams on uvloop and a hand-written HTTP/1.1 request keep the client's own CPU small: it
shares the machine with what it measures. Prints one JSON line: ``connect_s`` (opening every
connection), ``all_answered_s`` (first write to last answer), answer-time percentiles, the
count of 2xx answers and of errors.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from urllib.parse import urlsplit

Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


def request_bytes(url: str, body: bytes) -> bytes:
    parts = urlsplit(url)
    head = (f"POST {parts.path or '/'} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode() + body


async def read_answer(reader: asyncio.StreamReader) -> int:
    """The status of one HTTP/1.1 answer, its body read (Content-Length framing)."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    length = next((int(line.split(":", 1)[1]) for line in lines[1:]
                   if line.lower().startswith("content-length:")), 0)
    if length:
        await reader.readexactly(length)
    return status


async def connect_all(host: str, port: int, callers: int, batch: int) -> list[Conn]:
    conns: list[Conn] = []
    for start in range(0, callers, batch):
        size = min(batch, callers - start)
        conns += await asyncio.gather(*(asyncio.open_connection(host, port) for _ in range(size)))
    return conns


async def run(url: str, callers: int, body: bytes, batch: int, answer_s: float) -> dict[str, object]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    payload = request_bytes(url, body)
    t0 = time.perf_counter()
    conns = await connect_all(host, port, callers, batch)
    connect_s = time.perf_counter() - t0
    answered: list[float] = []
    statuses: dict[int, int] = {}
    errors = 0
    go = asyncio.Event()

    async def caller(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal errors
        await go.wait()
        writer.write(payload)
        try:
            status = await asyncio.wait_for(read_answer(reader), answer_s)
        except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError):
            errors += 1
            return
        answered.append(time.perf_counter() - began)
        statuses[status] = statuses.get(status, 0) + 1

    tasks = [asyncio.ensure_future(caller(r, w)) for r, w in conns]
    await asyncio.sleep(0.2)  # every caller waits on the event
    began = time.perf_counter()
    go.set()
    await asyncio.gather(*tasks)
    for _, writer in conns:
        writer.close()
    answered.sort()

    def pct(p: float) -> float:
        return round(answered[min(len(answered) - 1, int(p / 100 * len(answered)))], 3) if answered else 0.0

    ok = sum(n for s, n in statuses.items() if 200 <= s < 300)
    return {"callers": callers, "connect_s": round(connect_s, 3),
            "all_answered_s": pct(100), "p50_s": pct(50), "p90_s": pct(90), "p99_s": pct(99),
            "ok": ok, "statuses": {str(k): v for k, v in statuses.items()}, "errors": errors}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("url")
    parser.add_argument("--callers", type=int, default=5000)
    parser.add_argument("--body", default="{}")
    parser.add_argument("--connect-batch", type=int, default=500)
    parser.add_argument("--timeout", type=float, default=30.0, help="per answer (s)")
    args = parser.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    out = asyncio.run(run(args.url, args.callers, args.body.encode(), args.connect_batch, args.timeout))
    print(json.dumps(out), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
