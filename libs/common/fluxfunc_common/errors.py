"""The one exception tree of fluxfunc, split by what the caller does next.

``ClientError``: the caller sent something wrong (4xx). ``TaskError``: the function ran and
did not succeed (599.x). ``RetryableError``: a dependency is unavailable, try later (503).
``FatalError``: the process cannot go on (bad config, cannot start). The Server turns any of
them into the DataFlux Func envelope in exactly one middleware.
"""

from __future__ import annotations

from typing import Any


class FluxfuncError(Exception):
    """Root of every error fluxfunc raises on purpose."""

    status: int = 500
    code: int | float = 500
    reason: str = "ESys"

    def __init__(self, message: str = "", detail: dict[str, Any] | None = None) -> None:
        super().__init__(message or self.__class__.__doc__ or self.reason)
        self.message = message or (self.__class__.__doc__ or self.reason).strip()
        self.detail = detail or {}


class ClientError(FluxfuncError):
    """The request is not valid."""

    status = code = 400
    reason = "EClientBadRequest"


class BadRequest(ClientError):
    """The request is not valid."""


class PayloadTooLarge(ClientError):
    """The request body is too large."""

    status = code = 413


class NotFound(ClientError):
    """No such entity or route."""

    status = code = 404
    reason = "EClientNotFound"


class Conflict(ClientError):
    """The entity already exists."""

    status = code = 409
    reason = "EClientDuplicated"


class BizCondition(ClientError):
    """The entry point is disabled or expired, or refuses this kind of request."""

    status = code = 403
    reason = "EBizCondition"


class APIAuthError(ClientError):
    """API authentication failed."""

    status = code = 401
    reason = "EAPIAuth"


class UserAuthError(ClientError):
    """Admin authentication is missing or invalid."""

    status = code = 401
    reason = "EUserAuth"


class Forbidden(ClientError):
    """The caller is authenticated but its role may not do this."""

    status = code = 403
    reason = "EForbidden"


class Locked(ClientError):
    """Another user holds the editing lock of this script."""

    status = code = 409
    reason = "EClientLocked"


class RateLimited(ClientError):
    """Too many calls: throttled."""

    status = code = 429
    reason = "EClientRateLimit"


class QueueFull(ClientError):
    """The queue is full; try again later."""

    status = code = 429
    reason = "EQueueFull"


class TaskError(FluxfuncError):
    """The function did not succeed."""

    status = 599
    code: int | float = 599
    reason = "EFunc"


class FuncFailed(TaskError):
    """The function raised an exception."""

    code = 599.1
    reason = "EFuncFailed"


class FuncTimeout(TaskError):
    """The function ran past its timeout and was stopped."""

    code = 599.2
    reason = "EFuncTimeout"


class FuncDead(TaskError):
    """The task kept crashing workers and was dead-lettered."""

    code = 599.3
    reason = "EFuncDead"


class FuncExpired(TaskError):
    """The task expired before it started."""

    code = 599.4
    reason = "EFuncExpired"


class FuncCancelled(TaskError):
    """The task was cancelled."""

    code = 599.5
    reason = "EFuncCancelled"


class RetryableError(FluxfuncError):
    """A dependency is unavailable; the same call may succeed later."""

    status = code = 503
    reason = "ESysUnavailable"


class Unavailable(RetryableError):
    """Redis or the database is unreachable."""


class NoConsumer(RetryableError):
    """No live worker reads the queue of a sync call, which would only wait; the call may
    succeed once a worker reads it (a call with ``maxWait`` waits anyway)."""

    reason = "EQueueNoConsumer"


class FatalError(FluxfuncError):
    """The process cannot continue."""

    reason = "ESysFatal"


class ConfigError(FatalError):
    """The configuration is invalid."""


class ScriptError(ClientError):
    """The script does not compile or does not export what was asked."""

    reason = "EScriptInvalid"
