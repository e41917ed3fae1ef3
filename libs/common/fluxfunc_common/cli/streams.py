"""`fluxfunc streams`: look at the task streams the way an operator needs to.

``fluxfunc streams [--watch] [--json]`` prints one row per queue (length, pending, lag,
consumers and their idle time, oldest pending, delayed, dead letters);
``fluxfunc streams pending QUEUE`` lists the delivered-but-unacknowledged entries;
``fluxfunc streams dead [--requeue ID]`` lists dead letters or puts one back on its queue.
Rich tables on a terminal (fitted to its width: long consumer names are shortened, never
wrapped), plain aligned text otherwise, JSON with ``--json``. A queue no live worker reads is
flagged "no consumer". The instance is found as every command finds it
(:mod:`fluxfunc_common.cli.instance`); the first line on stderr names it (stdout is the data).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from fluxfunc_common import packages
from fluxfunc_common.cli.instance import CONFIG_HELP, announce, load_instance
from fluxfunc_common.errors import FluxfuncError
from fluxfunc_common.lifecycle import fail
from fluxfunc_common.queuestats import PendingEntry, QueueRow, discover_queues, pending_entries, queue_stats
from fluxfunc_common.redisconn import RedisClients, open_redis
from fluxfunc_common.settings import Settings
from fluxfunc_common.streams import StreamProtocol

WATCH_SECONDS = 2.0


def add_parser(sub: Any) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS, help=CONFIG_HELP)
    common.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                        help="print JSON instead of a table")
    parser = sub.add_parser("streams", parents=[common], help="inspect the task streams",
                            description=__doc__.splitlines()[0])
    parser.add_argument("--watch", action="store_true", help="refresh until Ctrl-C (with --json: "
                        "one JSON line per refresh)")
    parser.add_argument("--interval", type=float, default=WATCH_SECONDS, metavar="SECONDS",
                        help=f"seconds between refreshes with --watch (default {WATCH_SECONDS:g})")
    # not set_defaults(config=...): the parents' actions are shared with the subcommands, and
    # a default set here would overwrite `streams --config X pending Q`'s X (run() fills them)
    parser.set_defaults(func=run)
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    pending = actions.add_parser("pending", parents=[common], help="pending entries of one queue")
    pending.add_argument("queue")
    pending.add_argument("--count", type=int, default=100, help="at most this many entries")
    dead = actions.add_parser("dead", parents=[common], help="list dead letters, or requeue one")
    dead.add_argument("--requeue", metavar="ID", help="put this dead letter back on its queue")
    dead.add_argument("--count", type=int, default=100, help="at most this many letters (newest first)")


def run(args: argparse.Namespace) -> int:
    args.config = getattr(args, "config", None)  # given before or after ACTION, or not at all
    args.json = getattr(args, "json", False)
    try:
        settings, instance = load_instance(args.config)
        announce(settings, instance, machine_readable=True)  # stdout is the tables / JSON
        return asyncio.run(_main(args, settings))
    except FluxfuncError as exc:
        return fail(exc.message)
    except KeyboardInterrupt:
        return 0


async def _main(args: argparse.Namespace, settings: Settings) -> int:
    async with open_redis(settings.redis) as clients:
        if args.action == "pending":
            known = await discover_queues(clients.main, clients.keys, settings.worker.queues)
            if args.queue not in known:
                return fail(f"no queue {args.queue!r} (queues: {', '.join(known) or 'none'})", 1)
            rows = await pending_entries(clients.main, clients.keys, args.queue, count=args.count)
            _emit(args, rows, _pending_table(args.queue, rows))
            return 0
        if args.action == "dead":
            return await _dead(args, settings, clients)
        if args.watch:
            await _watch(args, settings, clients)
            return 0
        stats = await _stats(settings, clients)
        _emit(args, stats, _overview_table(stats), _overview_tables(stats))
        workers = await packages.live_worker_states(clients.main, clients.keys)
        if workers and not args.json:  # each worker's extra packages (docs/packages.md)
            _emit(args, None, ("python packages", ["worker", "set"], packages.status_rows(workers)))
        return 0


async def _stats(settings: Settings, clients: RedisClients) -> list[QueueRow]:
    queues = await discover_queues(clients.main, clients.keys, settings.worker.queues)
    return await queue_stats(clients.main, clients.keys, queues)


async def _watch(args: argparse.Namespace, settings: Settings, clients: RedisClients) -> None:
    """Redraw in place on a terminal (rich Live); print a fresh table each round otherwise."""
    if _tty() and not args.json:
        from rich.live import Live

        with Live(auto_refresh=False) as live:
            while True:
                tables = _overview_tables(await _stats(settings, clients))
                live.update(_rich(tables, live.console.width), refresh=True)
                await asyncio.sleep(args.interval)
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


def _consumers(row: QueueRow) -> str:
    parts = [f"{c['name']} ({c['pending']} pending, idle {age(c['idleMs'])})" for c in row["consumers"]]
    return ", ".join(parts) or "-"


def _queue(row: QueueRow, sep: str = " ") -> str:
    """The queue name and its flags: no stream yet, no live worker reading it."""
    flags = [] if row["exists"] else ["(no stream)"]
    if row["noConsumer"]:
        flags.append("(no consumer)")
    return sep.join([row["queue"], *flags])


FIGURES = ["length", "pending", "lag", "oldest", "delayed", "dead", "done/m"]


def _figures(row: QueueRow) -> list[str]:
    return [str(row["length"]), str(row["pending"]), str(row["lag"]), age(row["oldestPendingAgeMs"]),
            str(row["delayed"]), str(row["dead"]), str(row["throughputLastMinute"])]


def _overview_table(stats: Sequence[QueueRow]) -> Table:
    """One line per queue, consumers last (plain text: pipes, logs)."""
    rows = [[_queue(s), *_figures(s), _consumers(s)] for s in stats]
    return "queues", ["queue", *FIGURES, "consumers"], rows


def _overview_tables(stats: Sequence[QueueRow]) -> list[Table]:
    """On a terminal: the figures per queue, then one line per consumer, so that both fit a
    narrow window (a consumer name is never folded over several lines)."""
    queues = [[_queue(s, "\n"), *_figures(s)] for s in stats]
    consumers = [[s["queue"], c["name"], str(c["pending"]), age(c["idleMs"])]
                 for s in stats for c in s["consumers"]]
    return [("queues", ["queue", *FIGURES], queues),
            ("consumers", ["queue", "consumer", "pending", "idle"], consumers)]


def _pending_table(queue: str, rows: Sequence[PendingEntry]) -> Table:
    headers = ["entry", "consumer", "idle", "deliveries", "task"]
    body = [[r["entry"], r["consumer"], age(r["idleMs"]), str(r["deliveries"]), r["task"] or "-"]
            for r in rows]
    return f"pending entries of queue {queue}", headers, body


def _dead_table(letters: Sequence[Mapping[str, str]]) -> Table:
    headers = ["id", "queue", "task", "func", "deliveries", "reason"]
    rows = [[d["id"], d.get("queue", "-"), d.get("task", "-"), d.get("func", "-"), d.get("count", "-"),
             d.get("reason", "-")] for d in letters]
    return "dead letters (newest first)", headers, rows


def _tty() -> bool:
    return sys.stdout.isatty()


def fit(floors: Sequence[int], widths: Sequence[int], room: int) -> list[int]:
    """Column widths within ``room``: the column with the most text beyond its floor (its
    header's width) gives way first, one character at a time; no column goes below its floor."""
    out = list(widths)
    while sum(out) > room:
        slack = [w - f for w, f in zip(out, floors, strict=True)]
        widest = max(range(len(out)), key=slack.__getitem__)
        if slack[widest] <= 0:
            break
        out[widest] -= 1
    return out


def _rich(tables: Sequence[Table], width: int) -> Any:
    """Rich tables that fit ``width`` columns: headers and figures never wrap; the widest
    column (a consumer name, a dead letter's reason) gets what is left, each of its lines cut
    with an ellipsis rather than folded; an empty table says "(none)"."""
    from rich import box
    from rich.console import Group
    from rich.table import Table as RichTable

    out = []
    for title, headers, rows in tables:
        table = RichTable(title=title, box=box.SIMPLE_HEAD, show_edge=False,
                          caption=None if rows else "(none)")
        widths = fit([len(h) for h in headers],
                     [max([len(h), *(len(line) for r in rows for line in r[i].splitlines())])
                      for i, h in enumerate(headers)],
                     width - 3 * (len(headers) - 1) - 2)  # padding, separators, edges
        for h, w in zip(headers, widths, strict=True):
            table.add_column(h, no_wrap=True, overflow="ellipsis", min_width=len(h), max_width=w)
        for r in rows:
            table.add_row(*r)
        out.append(table)
    return Group(*out)


def plain(table: Table) -> str:
    """Aligned plain text (pipes, logs, tests)."""
    title, headers, rows = table
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    lines = [title, "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    if not rows:
        lines.append("(none)")
    return "\n".join(lines)


def _emit(args: argparse.Namespace, data: Any, table: Table,
          on_terminal: Sequence[Table] | None = None) -> None:
    """JSON, rich tables (``on_terminal``, else ``table``) on a terminal, or plain text."""
    if args.json:
        print(json.dumps(data, indent=2))
    elif _tty():
        from rich.console import Console

        console = Console()
        console.print(_rich(on_terminal or [table], console.width))
    else:
        print(plain(table))
