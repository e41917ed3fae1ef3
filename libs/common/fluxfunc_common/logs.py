"""Logging: structlog configured once per process, JSON off a TTY, console on a TTY.

The JSON lines are rendered with orjson and time-stamped from a per-second cache: a worker
writes one line per task, so the cost of a line is on its hot path (:meth:`LogOutput.info_line`
renders such a line without structlog's processor chain).

The seam: the worker writes its task line through an :class:`EventLine`. The fast variant is
that hand-rolled JSON line; the plain one is an ordinary structlog ``logger.info`` — used for
the console format, when ``worker.fast_paths`` is off and with ``FLUXFUNC_PLAIN_VARIANTS=1``
(docs/internals.md, "Fast paths and their plain variants"). Both write the same JSON line.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from dataclasses import dataclass
from typing import Any, Protocol

import orjson
import structlog

from fluxfunc_common.fastpaths import use_fast
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


class EventLine(Protocol):
    """Writes one info line for one event: ``line(event, **fields)``."""

    def __call__(self, event: str, /, **fields: Any) -> None: ...


@dataclass(frozen=True)
class LogOutput:
    """Where and how this process logs, as :func:`configure_logging` set it up."""

    stream: Any
    json: bool
    level: int
    stamper: IsoTimeStamper

    def info_line(self, component: str, *, fast: bool = True) -> EventLine:
        """``line(event, **fields)``: exactly the line ``get_logger(component).info(event,
        **fields)`` writes, for one hot event (the worker's task line). Why the fast variant
        exists: a worker writes one such line per task, so structlog's per-call machinery
        (bound-logger wrapping, the processor chain) is on its hot path; JSON lines are
        rendered here directly, at a fraction of that cost. The console format, and ``fast=False`` (or
        ``FLUXFUNC_PLAIN_VARIANTS=1``), go through structlog as usual."""
        if not self.json or not use_fast(fast):
            return _StructlogLine(get_logger(component))
        if self.level > logging.INFO:
            return _silent
        printer = structlog.PrintLogger(self.stream)  # the same per-stream lock as structlog's
        emit, stamp, bound_vars = printer.msg, self.stamper, structlog.contextvars.get_contextvars

        def line(event: str, /, **fields: Any) -> None:
            event_dict = {"component": component, **fields, "event": event}
            for key, value in bound_vars().items():  # as merge_contextvars does
                event_dict.setdefault(key, value)
            event_dict["level"] = "info"
            stamp(None, "info", event_dict)
            emit(render_json(None, "info", event_dict))

        return line


def _silent(event: str, /, **fields: Any) -> None:
    """The task line below the configured level."""


class _StructlogLine:
    """The plain :class:`EventLine`: structlog's ``info`` with its full processor chain."""

    def __init__(self, logger: Any) -> None:
        self._logger = logger

    def __call__(self, event: str, /, **fields: Any) -> None:
        self._logger.info(event, **fields)


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
        logger_factory=structlog.PrintLoggerFactory(out),
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
