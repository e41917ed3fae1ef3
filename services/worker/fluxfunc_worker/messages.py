"""The messages between the worker and its child processes, typed, and their wire encoding.

Every message is one JSON object with a ``type`` field; :func:`encode` frames it (4-byte
big-endian length + orjson body), :func:`decode` reads one body back. Both sides — the
parent's pool (:mod:`~fluxfunc_worker.pool`, :mod:`~fluxfunc_worker.ipc`) and the child
(:mod:`~fluxfunc_worker.child`, :mod:`~fluxfunc_worker.runtime`) — use these definitions, so
a field is named in one place. The types are ``TypedDict``: the wire stays plain orjson
(no conversion per message), the checker sees the field names.

Parent → child: :class:`RunMessage` (one task), :class:`RpcReply` (answer to a DFF call),
:class:`CancelMessage` (stop one ``async def`` task), :class:`ExitMessage`. Child → parent:
:class:`ReadyMessage`, :class:`PrintMessage` (a line printed, kept if the child dies),
:class:`RpcCall` (a DFF call needing Redis or SQL), :class:`DoneMessage` (the task's report).

This module is imported by the child: standard library and orjson only.
"""

from __future__ import annotations

import struct
from typing import Literal, NotRequired, Required, TypedDict, cast

import orjson

HEADER = struct.Struct("!I")
MAX_FRAME = 256 * 1024 * 1024

JSONObject = dict[str, object]  # user data (call kwargs, an HTTP request, DFF call params)


class ScriptChanges(TypedDict):
    """The scripts published or deleted since generation ``since``, the one the parent last
    sent this child (docs/internals.md, Notifications)."""

    since: int | None
    scripts: list[str]


class RunMessage(TypedDict):
    """Run one task (the fields the script sees as its context)."""

    type: Literal["run"]
    id: str
    func: str
    kwargs: JSONObject
    origin: str
    originId: str | None
    triggerTime: float | None
    cronExpr: str | None
    httpRequest: JSONObject | None
    callChain: list[str]
    traceId: str | None
    queue: str
    attempt: int
    eta: float | None
    gen: NotRequired[int | None]  # the publish generation the parent saw (script cache check)
    changed: NotRequired[ScriptChanges | None]  # what changed since; None: assume everything
    pkgs: NotRequired[str | None]  # folder of the extra package set (sitepath; docs/packages.md)
    timeout: NotRequired[float]  # seconds the task may run (DFF.THREAD refuses results after)
    isAsync: NotRequired[bool]  # run on the child's event loop, beside its other async tasks
    draft: NotRequired[str]  # a draft run: the MD5 of the script draft to run (the child retires after)


class RpcOk(TypedDict):
    type: Literal["ok"]
    seq: int
    value: object


class RpcErr(TypedDict):
    type: Literal["err"]
    seq: int
    message: str
    kind: str  # "func": FuncCallError in the child; anything else: DFFError


RpcReply = RpcOk | RpcErr


class ExitMessage(TypedDict):
    type: Literal["exit"]


class CancelMessage(TypedDict):
    """Cancel the asyncio task of one async run (timeout, cancel, lost lease, shutdown)."""

    type: Literal["cancel"]
    id: str


class ReadyMessage(TypedDict):
    type: Literal["ready"]
    pid: int


class PrintMessage(TypedDict):
    type: Literal["print"]
    text: str
    id: NotRequired[str]  # the async task that printed it (a sync child runs one task)


class RpcCall(TypedDict):
    type: Literal["rpc"]
    seq: int
    method: str
    params: JSONObject
    task: NotRequired[str]  # the async task that made the call (a sync child runs one task)


class RunReport(TypedDict, total=False):
    """What a run produced (:meth:`~fluxfunc_worker.runtime.Runner.run`); the result value
    itself travels as pre-encoded JSON in :class:`DoneMessage`."""

    status: str  # a TaskStatus value: success / failure
    response: JSONObject  # DFF.RESP (an HttpResponse)
    exception: str | None
    traceback: str | None
    printLogs: str | None
    startTime: float
    endTime: float
    memory: bool  # the run hit the memory limit (the child retires)


class DoneMessage(RunReport, total=False):
    """The child's answer to a :class:`RunMessage`."""

    type: Required[Literal["done"]]
    id: Required[str]
    result: object
    retire: str  # why the child exits after this task (e.g. "memory")


ToChild = RunMessage | RpcOk | RpcErr | CancelMessage | ExitMessage
FromChild = ReadyMessage | PrintMessage | RpcCall | DoneMessage

EXIT: ExitMessage = {"type": "exit"}


def encode(message: ToChild | FromChild) -> bytes:
    """One frame: length header + orjson body."""
    body = orjson.dumps(message, option=orjson.OPT_NON_STR_KEYS)
    return HEADER.pack(len(body)) + body


def decode_from_child(body: bytes | memoryview) -> FromChild:
    """A child's message (the parent dispatches on ``type``)."""
    return cast("FromChild", orjson.loads(body))


def decode_to_child(body: bytes | memoryview) -> ToChild:
    """A parent's message (the child dispatches on ``type``)."""
    return cast("ToChild", orjson.loads(body))
