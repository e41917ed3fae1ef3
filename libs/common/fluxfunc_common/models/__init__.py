"""Typed domain models, parsed once where rows leave the store and used by Server, Worker and
Beat: a published :class:`Func` with its :class:`FuncOptions` (and the rules that follow from
them: queue, queue wait, timeout, retries, result cache, the kwargs check), its entry points
:class:`SyncApi`, :class:`AsyncApi` and :class:`CronJob`, and :class:`EnvVariable`.
The row shapes are documented in docs/internals.md and docs/http-api.md."""

from fluxfunc_common.models.base import Row
from fluxfunc_common.models.entries import (
    FIXED_CRON_PREFIX,
    ApiEntry,
    AsyncApi,
    CronJob,
    EntryPoint,
    EnvVariable,
    SyncApi,
)
from fluxfunc_common.models.func import (
    DEFAULT_QUEUE,
    DEFAULT_QUEUES,
    MIN_SYNC_QUEUE_WAIT,
    PLACEHOLDERS,
    Func,
    FuncOptions,
    KwargsProblems,
    ParamSpec,
    is_placeholder,
)
from fluxfunc_common.userjson import JSONObject

__all__ = [
    "DEFAULT_QUEUE", "DEFAULT_QUEUES", "FIXED_CRON_PREFIX", "MIN_SYNC_QUEUE_WAIT", "PLACEHOLDERS",
    "ApiEntry", "AsyncApi", "CronJob", "EntryPoint", "EnvVariable", "Func", "FuncOptions",
    "JSONObject", "KwargsProblems", "ParamSpec", "Row", "SyncApi", "is_placeholder",
]
