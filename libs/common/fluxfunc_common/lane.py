"""The hot-path Redis connection: pipelined command batches on one dedicated connection.

Used by the worker (its claim round trips) and by the Beat (the moment's cron fire scripts).
Every task costs the worker a share of one ``claim`` round trip (read, start checks and the
completions of finished tasks, see ``StreamProtocol.claim``). Through redis-py's pooled
client a round trip costs 100–150 µs of the worker's CPU (connection checkout, retry and
timeout wrappers, command packing in Python) — more than everything else a no-op task costs.
The :class:`Lane` sends the same commands on one connection of its own, packed by hiredis
and parsed by a hiredis reader, with the replies of successive batches matched in order
(Redis answers in order), so the fetch loop and the completer can both have a batch on the
wire: about a fifth of the cost.

The connection itself is made by redis-py (``make_connection`` of the main client's pool), so
the URL, TLS, AUTH, database and Sentinel master discovery are handled exactly as for every
other connection; the lane then reads and writes its streams directly. Errors are the same
as redis-py's (``ResponseError`` and its ``NoScriptError``, ``ConnectionError``,
``TimeoutError``), returned in place for replies and raised for connection failures; after a
failure the next batch reconnects, and so does the batch after a ``READONLY`` reply (a
Sentinel failover turned the server into a replica: connecting again finds the new
master). Script replies read the same in RESP2 and RESP3 (arrays,
integers, bulk strings, nulls; this connection never subscribes or tracks, so no push
message can arrive). When the connection is not of a kind the lane understands, it falls
back to redis-py pipelines (:meth:`Lane.usable`).

The seam: the worker and the Beat need only :class:`CommandBatches` (``execute`` a batch,
``pack`` a command ahead, ``close``).
:class:`Pipelines` is the plain variant — one ordinary redis-py pipeline per batch — chosen by
:func:`open_lane` when ``worker.fast_paths`` is off or ``FLUXFUNC_PLAIN_VARIANTS=1``
(docs/internals.md, "Fast paths and their plain variants").

A command can be packed ahead of sending (``pack``): the Beat packs a moment's fire
scripts (megabytes of arguments) before the moment, so at the moment the lane only writes
bytes. A :class:`Packed` command keeps its arguments too, for the plain variant.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import hiredis
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from fluxfunc_common.fastpaths import use_fast
from fluxfunc_common.logs import get_logger

log = get_logger("worker.lane")

READ_SIZE = 256 * 1024
HIGH_WATER = 1024 * 1024  # bytes buffered for writing before a batch waits for the socket


class Packed:
    """One command packed ahead of sending: its arguments and, on the fast path, its RESP bytes."""

    __slots__ = ("args", "wire")

    def __init__(self, args: Sequence[Any], wire: bytes | None) -> None:
        self.args, self.wire = tuple(args), wire


Command = Sequence[Any] | Packed


_pack_command: Callable[[tuple[Any, ...]], bytes] = hiredis.pack_command


def _wire(command: Command) -> bytes:
    if isinstance(command, Packed):
        return command.wire if command.wire is not None else _pack_command(command.args)
    return _pack_command(tuple(command))


class CommandBatches(Protocol):
    """Sends batches of Redis commands; each batch's replies in order, error replies in place
    (``ResponseError``, ``NoScriptError``), connection failures raised."""

    async def execute(self, commands: Sequence[Command]) -> list[Any]: ...

    def pack(self, args: Sequence[Any]) -> Packed:
        """A command packed now, to be sent later by :meth:`execute`."""
        ...

    async def close(self) -> None: ...


class Pipelines:
    """The plain variant: every batch is one redis-py pipeline (no MULTI) on the pooled client."""

    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client

    async def execute(self, commands: Sequence[Command]) -> list[Any]:
        if not commands:
            return []
        async with self._client.pipeline(transaction=False) as pipe:
            for c in commands:
                pipe.execute_command(*(c.args if isinstance(c, Packed) else c))
            return list(await pipe.execute(raise_on_error=False))

    def pack(self, args: Sequence[Any]) -> Packed:
        """The arguments as they are: redis-py packs them when the pipeline sends them."""
        return Packed(args, None)

    async def close(self) -> None:
        """Nothing of its own to close: the connections belong to the client's pool."""


def open_lane(client: aioredis.Redis, *, timeout: float = 10.0, fast: bool = True) -> CommandBatches:
    """Hot-path command batches (the worker's claims, the Beat's moment): the :class:`Lane`,
    or :class:`Pipelines` when the fast paths are off (setting ``fast``, or
    ``FLUXFUNC_PLAIN_VARIANTS=1``)."""
    if use_fast(fast):
        return Lane(client, timeout=timeout)
    return Pipelines(client)


class _Batch:
    __slots__ = ("future", "replies", "size", "timer")

    def __init__(self, future: asyncio.Future[list[Any]], size: int) -> None:
        self.future = future
        self.size = size
        self.replies: list[Any] = []
        self.timer: asyncio.TimerHandle | None = None


def _reply(value: Any) -> Any:
    """A top-level error reply as redis-py's exception class."""
    if isinstance(value, ResponseError) and str(value).startswith("NOSCRIPT"):
        return NoScriptError(str(value))
    return value


def _wrong_server(value: Any) -> bool:
    """An error that means this connection no longer reaches the master (a failover)."""
    return isinstance(value, ResponseError) and str(value).startswith(("READONLY", "MASTERDOWN"))


class Lane:
    """One dedicated connection; :meth:`execute` sends a batch and returns its replies."""

    def __init__(self, client: aioredis.Redis, *, timeout: float = 10.0) -> None:
        self._client = client
        self._plain = Pipelines(client)
        self.timeout = timeout
        self._conn: Any = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._pump: asyncio.Task[None] | None = None
        self._waiting: deque[_Batch] = deque()
        self._connecting: asyncio.Lock = asyncio.Lock()
        self._fallback = False
        self._broken: list[Any] = []
        self._drop = False  # reconnect before the next batch (the last one met a replica)
        self.batches = 0
        self.connects = 0

    @property
    def usable(self) -> bool:
        """False once the lane found a connection it cannot drive (it then uses pipelines)."""
        return not self._fallback

    async def execute(self, commands: Sequence[Command]) -> list[Any]:
        """Send ``commands`` in one write; their replies in order (error replies in place)."""
        if not commands:
            return []
        if self._fallback:
            return await self._plain.execute(commands)
        writer = self._writer
        if self._drop and not self._waiting:  # a failover: find the master again
            self._fail(RedisConnectionError("the connection reached a replica"))
            writer = None
        if writer is None or writer.is_closing():
            writer = await self._connect()
            if writer is None:
                return await self._plain.execute(commands)
        loop = asyncio.get_running_loop()
        batch = _Batch(loop.create_future(), len(commands))
        batch.timer = loop.call_later(self.timeout, self._timed_out, batch)
        self._waiting.append(batch)
        writer.writelines([_wire(c) for c in commands])
        self.batches += 1
        transport = writer.transport
        if transport.get_write_buffer_size() > HIGH_WATER:
            await writer.drain()
        return await batch.future

    def pack(self, args: Sequence[Any]) -> Packed:
        """Packed by hiredis now: sending it later only writes the bytes."""
        return Packed(args, _pack_command(tuple(args)))

    async def _connect(self) -> asyncio.StreamWriter | None:
        async with self._connecting:
            if self._writer is not None and not self._writer.is_closing():
                return self._writer
            await self._disconnect_broken()
            make = getattr(self._client.connection_pool, "make_connection", None)
            if make is None:  # redis-py's pool no longer makes connections on request
                await self._give_up(None)
                return None
            conn = make()
            await conn.connect()
            reader, writer = getattr(conn, "_reader", None), getattr(conn, "_writer", None)
            if (not isinstance(reader, asyncio.StreamReader) or not isinstance(writer, asyncio.StreamWriter)
                    or str(getattr(conn, "protocol", 2) or 2) not in ("2", "3")):
                await self._give_up(conn)
                return None
            self._conn, self._reader, self._writer = conn, reader, writer
            self._drop = False
            self.connects += 1
            self._pump = asyncio.create_task(self._read_replies(reader), name="redis-lane")
            return self._writer

    async def _give_up(self, conn: Any) -> None:
        """The precondition failed (redis-py's internals are not what the lane drives): use
        the plain variant from now on."""
        log.warning("hot-path Redis lane unavailable for this connection; using pipelines")
        self._fallback = True
        if conn is not None:
            await conn.disconnect()

    async def _read_replies(self, reader: asyncio.StreamReader) -> None:
        parser = hiredis.Reader(replyError=ResponseError)
        waiting = self._waiting
        try:
            while True:
                data = await reader.read(READ_SIZE)
                if not data:
                    raise RedisConnectionError("Redis closed the connection")
                parser.feed(data)
                while (value := parser.gets()) is not False:
                    if not waiting:
                        raise RedisConnectionError("reply from Redis without a request")
                    batch = waiting[0]
                    if _wrong_server(value):
                        self._drop = True
                    batch.replies.append(_reply(value))
                    if len(batch.replies) == batch.size:
                        waiting.popleft()
                        if batch.timer is not None:
                            batch.timer.cancel()
                        if not batch.future.done():
                            batch.future.set_result(batch.replies)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._fail(exc if isinstance(exc, RedisConnectionError)
                       else RedisConnectionError(f"Redis connection error: {exc!r}"))

    def _timed_out(self, batch: _Batch) -> None:
        self._fail(RedisTimeoutError(f"no reply from Redis within {self.timeout:g} s"))

    def _fail(self, exc: Exception) -> None:
        """The connection is beyond use: fail every batch on it; the next one reconnects."""
        writer, self._writer, self._reader = self._writer, None, None
        conn, self._conn = self._conn, None
        pump, self._pump = self._pump, None
        if pump is not None and pump is not asyncio.current_task():
            pump.cancel()
        if writer is not None:
            writer.close()
        if conn is not None:
            self._broken.append(conn)  # redis-py's own close, at the next connect or close()
        while self._waiting:
            batch = self._waiting.popleft()
            if batch.timer is not None:
                batch.timer.cancel()
            if not batch.future.done():
                batch.future.set_exception(exc)

    async def _disconnect_broken(self) -> None:
        broken, self._broken = self._broken, []
        for conn in broken:
            with contextlib.suppress(Exception):
                await conn.disconnect(nowait=True)

    async def close(self) -> None:
        """Close the connection (batches still on the wire fail)."""
        self._fail(RedisConnectionError("the lane was closed"))
        await self._disconnect_broken()
