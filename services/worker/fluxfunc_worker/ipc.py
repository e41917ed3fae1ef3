"""The wire between the worker and its child processes: length-prefixed orjson frames over a
Unix socketpair.

Each frame is a 4-byte big-endian length followed by one orjson document (a dict with a
``t`` type field). A dedicated socket (not stdin/stdout) keeps user code that writes to
file descriptor 1 from corrupting the stream. This module is imported by the child, so it
depends on the standard library and orjson only.

Messages, parent → child: ``run`` (one task), ``rpc`` replies (``ok``/``err``), ``exit``.
Child → parent: ``ready``, ``done`` (task outcome), ``rpc`` (a DFF call needing Redis/SQL).
"""

from __future__ import annotations

import socket
import struct
from collections.abc import Callable
from typing import Any

import orjson

HEADER = struct.Struct("!I")
MAX_FRAME = 256 * 1024 * 1024


def encode(message: dict[str, Any]) -> bytes:
    """One frame: length header + orjson body."""
    body = orjson.dumps(message, option=orjson.OPT_NON_STR_KEYS)
    return HEADER.pack(len(body)) + body


class FrameReader:
    """Incremental frame parser for the parent's asyncio protocol."""

    def __init__(self, on_message: Callable[[dict[str, Any]], None]) -> None:
        self._buf = bytearray()
        self._on_message = on_message

    def feed(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        start = 0
        size = len(buf)
        while size - start >= 4:
            (length,) = HEADER.unpack_from(buf, start)
            if length > MAX_FRAME:
                raise ValueError(f"frame of {length} bytes exceeds the limit")
            end = start + 4 + length
            if end > size:
                break
            message = orjson.loads(memoryview(buf)[start + 4 : end])
            start = end
            self._on_message(message)
        if start:
            del buf[:start]


class BlockingChannel:
    """The child's side: blocking send/receive of whole frames on its socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._file = sock.makefile("rb", buffering=65536)

    def send(self, message: dict[str, Any]) -> None:
        self.sock.sendall(encode(message))

    def send_raw(self, frame: bytes) -> None:
        self.sock.sendall(frame)

    def receive(self) -> dict[str, Any] | None:
        """The next message, or None when the parent closed the socket."""
        header = self._file.read(4)
        if len(header) < 4:
            return None
        (length,) = HEADER.unpack(header)
        body = self._file.read(length)
        if len(body) < length:
            return None
        message: dict[str, Any] = orjson.loads(body)
        return message
