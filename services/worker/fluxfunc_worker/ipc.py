"""The wire between the worker and its child processes: length-prefixed orjson frames over a
Unix socketpair.

Each frame is a 4-byte big-endian length followed by one orjson document, one of the typed
messages of :mod:`~fluxfunc_worker.messages` (which also encodes them). A dedicated socket
(not stdin/stdout) keeps user code that writes to file descriptor 1 from corrupting the
stream. This module is imported by the child, so it depends on the standard library and
orjson only.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable

from fluxfunc_worker.messages import (
    HEADER,
    MAX_FRAME,
    FromChild,
    ToChild,
    decode_from_child,
    decode_to_child,
    encode,
)


class FrameReader:
    """Incremental frame parser for the parent's asyncio protocol."""

    def __init__(self, on_message: Callable[[FromChild], None]) -> None:
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
            message = decode_from_child(memoryview(buf)[start + 4 : end])
            start = end
            self._on_message(message)
        if start:
            del buf[:start]


class BlockingChannel:
    """The child's side: blocking send/receive of whole frames on its socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self._file = sock.makefile("rb", buffering=65536)
        self._send_lock = threading.Lock()  # DFF.THREAD: frames from several threads never interleave

    def send(self, message: FromChild) -> None:
        frame = encode(message)
        with self._send_lock:
            self.sock.sendall(frame)

    def send_many(self, messages: list[FromChild]) -> None:
        """Several frames in one write."""
        frames = b"".join([encode(m) for m in messages])
        with self._send_lock:
            self.sock.sendall(frames)

    def receive(self) -> ToChild | None:
        """The next message, or None when the parent closed the socket."""
        header = self._file.read(4)
        if len(header) < 4:
            return None
        (length,) = HEADER.unpack(header)
        body = self._file.read(length)
        if len(body) < length:
            return None
        return decode_to_child(body)
