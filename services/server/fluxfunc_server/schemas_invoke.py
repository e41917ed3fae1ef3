"""Request models of the invocation routes: the caller-option allow-lists and the
bodies of ``/api/v1/func`` and ``/api/v1/func-many``.

They validate the requests (:mod:`fluxfunc_server.invocation`) and describe them in
``/api/openapi.json``. ``kwargs`` are free-form here; they are checked against the func's
signature once the func is known.
"""

from __future__ import annotations

import functools
from typing import Annotated, Literal

from pydantic import Field

from fluxfunc_common.models import JSONObject
from fluxfunc_server.schemas import Body, FuncId, Timestamp

QUEUE_NAME = r"^[A-Za-z0-9_.-]{1,64}$"
MAX_MANY = 1000
MAX_DELAY = 366 * 86_400  # seconds: the furthest a task may be scheduled (delay or eta)

MaxWait = Annotated[float, Field(ge=0, le=MAX_DELAY, allow_inf_nan=False,
                                 description="seconds to wait before answering 202 with the task id")]
IdempotencyKey = Annotated[str, Field(min_length=1, max_length=200,
                                      description="the same key gives the same task id (24 h)")]
ReturnType = Annotated[Literal["raw", "jsonDumps"],
                       Field(description="raw (default), or jsonDumps: a str result as JSON")]
Unbox = Annotated[bool, Field(description="true: the bare value; false: data.result in the envelope")]
Delay = Annotated[float, Field(ge=0, le=MAX_DELAY, allow_inf_nan=False,
                               description="run not before now + delay seconds (at most 366 days)")]
Queue = Annotated[str, Field(pattern=QUEUE_NAME, description="run on this queue")]
Kwargs = Annotated[JSONObject | None, Field(description="keyword arguments of the func")]


class SyncCallOptions(Body):
    """Caller options of a sync API call."""

    max_wait: MaxWait | None = None
    idempotency_key: IdempotencyKey | None = None
    return_type: ReturnType | None = None
    unbox: Unbox | None = None


class AsyncCallOptions(Body):
    """Caller options of an async API call."""

    idempotency_key: IdempotencyKey | None = None


class DirectCallOptions(SyncCallOptions):
    """Options of ``POST /api/v1/func/{func_id}``."""

    run_async: bool | None = Field(default=None, alias="async",
                                   description="enqueue and answer data.id")
    eta: Timestamp | None = Field(default=None, description="run not before (ISO 8601; naive = UTC)")
    delay: Delay | None = None
    queue: Queue | None = None


class ManyCallOptions(Body):
    """Options of one call of ``POST /api/v1/func-many`` (always asynchronous)."""

    eta: Timestamp | None = Field(default=None, description="run not before (ISO 8601; naive = UTC)")
    delay: Delay | None = None
    idempotency_key: IdempotencyKey | None = None
    queue: Queue | None = None


class SyncCallBody(Body):
    """A sync API call, ``normal`` format (``simplified``: the whole body is the kwargs)."""

    kwargs: Kwargs = None
    options: SyncCallOptions | None = None


class AsyncCallBody(Body):
    """An async API call, ``normal`` format (``simplified``: the whole body is the kwargs)."""

    kwargs: Kwargs = None
    options: AsyncCallOptions | None = None


class FuncCallBody(Body):
    """``POST /api/v1/func/{func_id}``."""

    kwargs: Kwargs = None
    options: DirectCallOptions | None = None


class ManyCall(Body):
    func_id: FuncId
    kwargs: Kwargs = None
    options: ManyCallOptions | None = None


class FuncManyBody(Body):
    """``POST /api/v1/func-many``: every call is checked, then all are enqueued in one pipeline."""

    calls: Annotated[list[ManyCall], Field(min_length=1, max_length=MAX_MANY)]


OptionsModel = (type[SyncCallOptions] | type[AsyncCallOptions] | type[DirectCallOptions]
                | type[ManyCallOptions])


def option_names(model: OptionsModel) -> list[str]:
    """The JSON names a caller may use with ``model``."""
    return list(_option_names(model))


@functools.cache  # a model's fields never change: sorted once per model
def _option_names(model: OptionsModel) -> tuple[str, ...]:
    return tuple(sorted(field.alias or name for name, field in model.model_fields.items()))
