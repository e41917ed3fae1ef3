"""``print`` during a run: :class:`PrintCapture` stands in for ``sys.stdout`` and keeps the
first lines up to the line and byte limits, masking secrets (password env variables).

Imported by the child process only: standard library.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable

MAX_PRINT_LINES = 1000
MAX_PRINT_BYTES = 64 * 1024
MAX_LINE_CHARS = 3000


class PrintCapture:
    """``sys.stdout`` during a run: keeps the first lines up to the line and byte limits.

    With a ``sink``, every complete line kept is also handed to it as it is printed (masked):
    the worker keeps them, so the output survives a child that dies in the middle of a task."""

    def __init__(self, max_lines: int = MAX_PRINT_LINES, max_bytes: int = MAX_PRINT_BYTES, *,
                 sink: Callable[[str], None] | None = None, masks: set[str] | None = None) -> None:
        self.max_lines = max_lines
        self.max_bytes = max_bytes
        self._parts: list[str] = []
        self._lines = 0
        self._bytes = 0
        self.truncated = False
        self._sink = sink
        self._masks = masks or set()
        self._unsent = 0  # index of the first part not handed to the sink yet
        self._lock = threading.Lock()  # DFF.THREAD: threads print too

    def write(self, text: str) -> int:
        with self._lock:
            return self._write(text)

    def _write(self, text: str) -> int:
        if self.truncated or not text:
            return len(text)
        newlines = text.count("\n")
        size = len(text.encode("utf-8", "replace"))
        full = self._lines >= self.max_lines  # every allowed line is complete: nothing more
        if full or self._lines + newlines > self.max_lines or self._bytes + size > self.max_bytes:
            self._take_part(text)
            self.truncated = True
            return len(text)
        self._parts.append(text)
        self._lines += newlines
        self._bytes += size
        if newlines and self._sink is not None:
            self._send()
        return len(text)

    def _send(self) -> None:
        """Hand the parts since the last send to the sink (print writes a line in two parts)."""
        text = "".join(self._parts[self._unsent:])
        self._unsent = len(self._parts)
        for secret in self._masks:
            text = text.replace(secret, "*****")
        if self._sink is not None:
            with contextlib.suppress(Exception):  # the output stays in the result anyway
                self._sink(text)

    def _take_part(self, text: str) -> None:
        room_lines = self.max_lines - self._lines
        room_bytes = self.max_bytes - self._bytes
        kept = "".join(text.splitlines(True)[:room_lines])
        kept = kept.encode("utf-8", "replace")[: max(room_bytes, 0)].decode("utf-8", "ignore")
        self._parts.append(kept)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    def getvalue(self, masks: set[str] | None = None) -> str | None:
        text = "".join(self._parts)
        if not text and not self.truncated:
            return None
        lines = [ln if len(ln) <= MAX_LINE_CHARS else ln[:MAX_LINE_CHARS] + "…" for ln in text.split("\n")]
        text = "\n".join(lines)
        for secret in masks or ():
            text = text.replace(secret, "*****")
        if self.truncated:
            text += f"\n… print output truncated (limit {self.max_lines} lines / {self.max_bytes} bytes)"
        return text
