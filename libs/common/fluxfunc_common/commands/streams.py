"""`fluxfunc streams`: look at the task streams the way an operator needs to (SPEC §8).

``fluxfunc streams [--watch] [--json]`` prints one row per queue (length, pending, lag,
consumers and their idle time, oldest pending, delayed, dead letters);
``fluxfunc streams pending QUEUE`` lists the delivered-but-unacknowledged entries;
``fluxfunc streams dead [--requeue ID]`` lists dead letters or puts one back on its queue.
Rich tables on a terminal, plain aligned text otherwise, JSON with ``--json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Sequence
from typing import Any

from fluxfunc_common.errors import FluxfuncError
from fluxfunc_common.inspect import discover_queues, pending_entries, queue_stats
from fluxfunc_common.lifecycle import fail
from fluxfunc_common.redisconn import RedisClients, open_redis
from fluxfunc_common.settings import Settings, load_settings
from fluxfunc_common.streams import StreamProtocol

WATCH_SECONDS = 2.0


def add_parser(sub: Any) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", default=argparse.SUPPRESS, help="config file (default: see SPEC §9)")
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="print JSON instead of a table")
    parser = sub.add_parser("streams", parents=[common], help="inspect the task streams",
                            description=__doc__.splitlines()[0])
    parser.add_argument("--watch", action="store_true", help="refresh until Ctrl-C (with --json: "
                        "one JSON line per refresh)")
    parser.add_argument("--interval", type=float, default=WATCH_SECONDS, metavar="SECONDS",
                        help=f"seconds between refreshes with --watch (default {WATCH_SECONDS:g})")
    parser.set_defaults(func=run, config=None, json=False)
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    pending = actions.add_parser("pending", parents=[common], help="pending entries of one queue")
    pending.add_argument("queue")
    pending.add_argument("--count", type=int, default=100, help="at most this many entries")
    dead = actions.add_parser("dead", parents=[common], help="list dead letters, or requeue one")
    dead.add_argument("--requeue", metavar="ID", help="put this dead letter back on its queue")
    dead.add_argument("--count", type=int, default=100, help="at most this many letters (newest first)")


def run(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args.config)
        return asyncio.run(_main(args, settings))
    except FluxfuncError as exc:
        return fail(exc.message)
    except KeyboardInterrupt:
        return 0


async def _main(args: argparse.Namespace, settings: Settings) -> int:
    async with open_redis(settings.redis) as clients:
        if args.action == "pending":
            rows = await pending_entries(clients.main, clients.keys, args.queue, count=args.count)
            _emit(args, rows, _pending_table(args.queue, rows))
            return 0
        if args.action == "dead":
            return await _dead(args, settings, clients)
        if args.watch:
            await _watch(args, settings, clients)
            return 0
        stats = await _stats(settings, clients)
        _emit(args, stats, _overview_table(stats))
        return 0


async def _stats(settings: Settings, clients: RedisClients) -> list[dict[str, Any]]:
    queues = await discover_queues(clients.main, clients.keys, settings.worker.queues)
    return await queue_stats(clients.main, clients.keys, queues)


async def _watch(args: argparse.Namespace, settings: Settings, clients: RedisClients) -> None:
    """Redraw in place on a terminal (rich Live); print a fresh table each round otherwise."""
    if _tty() and not args.json:
        from rich.live import Live

        with Live(_rich(_overview_table(await _stats(settings, clients))), auto_refresh=False) as live:
            while True:
                await asyncio.sleep(args.interval)
                live.update(_rich(_overview_table(await _stats(settings, clients))), refresh=True)
    while True:
        stats = await _stats(settings, clients)
        if args.json:
            print(json.dumps(stats, separators=(",", ":")))
        else:
            print(plain(_overview_table(stats)) + "\n")
        sys.stdout.flush()
        await asyncio.sleep(args.interval)


async def _dead(args: argparse.Namespace, settings: Settings, clients: RedisClients) -> int:
    protocol = StreamProtocol(clients.main, clients.keys, blocking=clients.blocking)
    if args.requeue:
        done = await protocol.requeue_dead(args.requeue, max_len=settings.redis.queue_max_len)
        if args.json:
            print(json.dumps({"task": done.task_id, "entry": done.entry_id}))
        else:
            print(f"requeued dead letter {args.requeue}: task {done.task_id} is entry {done.entry_id}")
        return 0
    letters = await protocol.dead_letters(count=args.count, newest_first=True)
    for letter in letters:
        letter.pop("body", None)  # the envelope is for requeue, not for the table
    _emit(args, letters, _dead_table(letters))
    return 0


# --- rendering ----------------------------------------------------------------------------
Table = tuple[str, list[str], list[list[str]]]  # title, headers, rows


def age(ms: int | None) -> str:
    """``1234`` → ``1.2s``; ``200000`` → ``3m20s``; None → ``-``."""
    if ms is None:
        return "-"
    seconds = ms / 1000
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _consumers(row: dict[str, Any]) -> str:
    parts = [f"{c['name']} ({c['pending']} pending, idle {age(c['idleMs'])})" for c in row["consumers"]]
    return ", ".join(parts) or "-"


def _overview_table(stats: Sequence[dict[str, Any]]) -> Table:
    headers = ["queue", "length", "pending", "lag", "oldest pending", "delayed", "dead",
               "done/min", "consumers"]
    rows = [[s["queue"] + ("" if s["exists"] else " (no stream)"), str(s["length"]), str(s["pending"]),
             str(s["lag"]), age(s["oldestPendingAgeMs"]), str(s["delayed"]), str(s["dead"]),
             str(s["throughputLastMinute"]), _consumers(s)] for s in stats]
    return "queues", headers, rows


def _pending_table(queue: str, rows: Sequence[dict[str, Any]]) -> Table:
    headers = ["entry", "consumer", "idle", "deliveries", "task"]
    body = [[r["entry"], r["consumer"], age(r["idleMs"]), str(r["deliveries"]), r["task"] or "-"]
            for r in rows]
    return f"pending entries of queue {queue}", headers, body


def _dead_table(letters: Sequence[dict[str, Any]]) -> Table:
    headers = ["id", "queue", "task", "func", "deliveries", "reason"]
    rows = [[d["id"], d.get("queue", "-"), d.get("task", "-"), d.get("func", "-"), d.get("count", "-"),
             d.get("reason", "-")] for d in letters]
    return "dead letters (newest first)", headers, rows


def _tty() -> bool:
    return sys.stdout.isatty()


def _rich(table: Table) -> Any:
    from rich.table import Table as RichTable

    title, headers, rows = table
    out = RichTable(title=title)
    for h in headers:
        out.add_column(h, overflow="fold")
    for r in rows:
        out.add_row(*r)
    return out


def plain(table: Table) -> str:
    """Aligned plain text (pipes, logs, tests)."""
    title, headers, rows = table
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = [title, "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    if not rows:
        lines.append("(none)")
    return "\n".join(lines)


def _emit(args: argparse.Namespace, data: Any, table: Table) -> None:
    if args.json:
        print(json.dumps(data, indent=2))
    elif _tty():
        from rich.console import Console

        Console().print(_rich(table))
    else:
        print(plain(table))
