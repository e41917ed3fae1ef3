"""Logging: structlog configured once per process, JSON off a TTY, console on a TTY.

The JSON lines are rendered with orjson and time-stamped from a per-second cache: a worker
writes one line per task, so the cost of a line is on its hot path. A service with many
lines per second can also pass a :class:`CoalescingStream`: the lines written during one
turn of its event loop leave in one ``write``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson
import structlog

from fluxfunc_common.settings import LogSettings


def _fallback(obj: Any) -> Any:
    """What orjson cannot serialise: ``__structlog__()`` when defined, else ``repr``."""
    try:
        return obj.__structlog__()
    except AttributeError:
        return repr(obj)


def render_json(_logger: Any, _name: str, event_dict: Any) -> str:
    """The event as one compact JSON object (orjson; the stdlib for what orjson refuses,
    such as integers beyond 64 bits)."""
    try:
        return orjson.dumps(event_dict, default=_fallback, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        return json.dumps(event_dict, default=_fallback, ensure_ascii=False)


class IsoTimeStamper:
    """``timestamp``: ISO 8601 UTC with microseconds (``2026-01-31T12:00:00.123456Z``), the
    date-time part formatted once per second."""

    def __init__(self) -> None:
        self._cached: tuple[int, str] = (-1, "")  # one attribute: safe across threads

    def __call__(self, _logger: Any, _name: str, event_dict: Any) -> Any:
        now = time.time()
        second = int(now)
        cached_second, prefix = self._cached
        if second != cached_second:
            prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
            self._cached = (second, prefix)
        event_dict["timestamp"] = f"{prefix}.{int((now - second) * 1_000_000):06d}Z"
        return event_dict


class CoalescingStream:
    """A text stream for log lines: lines written on a running event loop are collected and
    written together once the loop has finished its current turn (one system call instead of
    one per line, microseconds later); anywhere else (another thread, no loop) a line is
    written at once. :meth:`drain` writes what is collected (call it before exiting)."""

    def __init__(self, out: Any) -> None:
        self.out = out
        self._parts: list[str] = []
        self._scheduled = False

    def write(self, text: str) -> int:
        loop = asyncio._get_running_loop()
        if loop is None:
            self.out.write(text)
            self.out.flush()
            return len(text)
        self._parts.append(text)
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self.drain)
        return len(text)

    def flush(self) -> None:
        """Nothing to do: lines written on the loop leave at the end of its turn, the others
        have left already."""

    def drain(self) -> None:
        """Write the collected lines now (the loop's callback, and at exit)."""
        self._scheduled = False
        if self._parts:
            text, self._parts = "".join(self._parts), []
            self.out.write(text)
            self.out.flush()

    def isatty(self) -> bool:
        return bool(getattr(self.out, "isatty", lambda: False)())


class LineLogger:
    """A structlog logger that hands each rendered line to its stream in one ``write``
    (structlog's PrintLogger goes through ``print`` with a lock and a flush per line)."""

    def __init__(self, out: Any) -> None:
        self._write = out.write
        self._flush = out.flush

    def msg(self, message: str) -> None:
        self._write(message + "\n")
        self._flush()

    log = debug = info = warn = warning = msg
    fatal = failure = err = error = critical = exception = msg


@dataclass(frozen=True)
class LogOutput:
    """Where and how this process logs, as :func:`configure_logging` set it up."""

    stream: Any
    json: bool
    level: int
    stamper: IsoTimeStamper

    def info_line(self, component: str) -> Callable[..., None]:
        """``line(event, **fields)``: exactly the line ``get_logger(component).info(event,
        **fields)`` writes, for one hot event (the worker's task line). JSON lines are
        rendered here directly, at a fraction of structlog's cost; the console format goes
        through structlog as usual."""
        if not self.json:
            logger = get_logger(component)
            return lambda event, **fields: logger.info(event, **fields)
        if self.level > logging.INFO:
            return lambda event, **fields: None
        write, flush, stamp = self.stream.write, self.stream.flush, self.stamper
        bound_vars = structlog.contextvars.get_contextvars

        def line(event: str, **fields: Any) -> None:
            event_dict = {"component": component, **fields, "event": event}
            for key, value in bound_vars().items():  # as merge_contextvars does
                event_dict.setdefault(key, value)
            event_dict["level"] = "info"
            stamp(None, "info", event_dict)
            write(render_json(None, "info", event_dict) + "\n")
            flush()

        return line


def configure_logging(settings: LogSettings, *, stream: Any = None) -> LogOutput:
    """Configure structlog and the stdlib root logger (libraries log through it too)."""
    out = stream or sys.stderr
    fmt = settings.format
    if fmt == "auto":
        fmt = "console" if getattr(out, "isatty", lambda: False)() else "json"
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=True)
        if fmt == "console"
        else render_json
    )
    level = logging.getLevelName(settings.level)
    stamper = IsoTimeStamper()
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        stamper,
    ]
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        logger_factory=lambda *_args: LineLogger(out),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=shared,
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(level, logging.INFO) if level < logging.INFO else level)
    for noisy in ("aiohttp.access", "aiosqlite", "asyncio"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return LogOutput(out, fmt != "console", level, stamper)


def get_logger(name: str) -> Any:
    """A structlog logger bound to a component name."""
    return structlog.get_logger(component=name)
