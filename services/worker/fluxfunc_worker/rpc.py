"""The parent's side of the children's DFF calls: the handler interface and the reply.

A child sends an :class:`~fluxfunc_worker.messages.RpcCall`; the pool hands it, with the
:class:`~fluxfunc_worker.messages.RunMessage` of the task that made it, to the worker's
handler (:class:`~fluxfunc_worker.dffcalls.DffCalls`) and sends back the
:class:`~fluxfunc_worker.messages.RpcReply` built by :func:`answer`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fluxfunc_common.logs import get_logger
from fluxfunc_worker.messages import JSONObject, RpcCall, RpcReply, RunMessage

log = get_logger("worker.pool")

# (method, params, the calling task's run message or None) -> a JSON value
RpcHandler = Callable[[str, JSONObject, RunMessage | None], Awaitable[object]]


class RpcError(Exception):
    """A DFF call the worker refused or could not serve; ``kind`` tells the child which error."""

    def __init__(self, message: str, kind: str = "dff") -> None:
        super().__init__(message)
        self.kind = kind


async def answer(handler: RpcHandler, call: RpcCall, run: RunMessage | None) -> RpcReply:
    """Serve one call: its value, or the error the child raises."""
    seq = call["seq"]
    try:
        value = await handler(call["method"], call["params"] or {}, run)
    except RpcError as exc:
        return {"type": "err", "seq": seq, "message": str(exc), "kind": exc.kind}
    except Exception as exc:
        log.warning("DFF call failed", method=call["method"], error=repr(exc))
        return {"type": "err", "seq": seq, "message": f"{type(exc).__name__}: {exc}", "kind": "dff"}
    return {"type": "ok", "seq": seq, "value": value}
