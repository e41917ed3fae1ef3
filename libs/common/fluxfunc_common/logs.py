"""Logging: structlog configured once per process, JSON off a TTY, console on a TTY.

The JSON lines are rendered with orjson and time-stamped from a per-second cache: a worker
writes one line per task, so the cost of a line is on its hot path.
"""

from __future__ import annotations

import json
import logging
import sys
import time
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


def configure_logging(settings: LogSettings, *, stream: Any = None) -> None:
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
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        IsoTimeStamper(),
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


def get_logger(name: str) -> Any:
    """A structlog logger bound to a component name."""
    return structlog.get_logger(component=name)
