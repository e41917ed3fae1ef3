"""The values the store's interfaces speak in: entity kinds, pages, task records, credentials."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Generic, Required, TypedDict, TypeVar, cast

from fluxfunc_common.envelope import TaskResult


class Entity(StrEnum):
    """Management entities stored generically (id + indexed columns + JSON body)."""

    SCRIPT_SET = "script_sets"
    SCRIPT = "scripts"
    FUNC = "funcs"
    SYNC_API = "sync_apis"
    ASYNC_API = "async_apis"
    CRON_JOB = "cron_jobs"
    ENV_VARIABLE = "env_variables"
    API_AUTH = "api_auths"


# Fields that are real, indexed columns (usable as ``list`` filters); the rest lives in JSON.
INDEXED: dict[Entity, tuple[str, ...]] = {
    Entity.SCRIPT_SET: (),
    Entity.SCRIPT: ("scriptSetId",),
    Entity.FUNC: ("scriptId", "scriptSetId"),
    Entity.SYNC_API: ("funcId",),
    Entity.ASYNC_API: ("funcId",),
    Entity.CRON_JOB: ("funcId",),
    Entity.ENV_VARIABLE: (),
    Entity.API_AUTH: (),
}

TASK_RECORD_FILTERS = ("funcId", "origin", "originId", "status", "queue")


class CredentialKind(StrEnum):
    """What ``fluxfunc admin list-…`` and ``/api/v1/admin/…`` list and revoke."""

    TOKEN = "tokens"
    ACCESS_KEY = "access-keys"


@dataclass(frozen=True)
class Credential:
    """An admin token or access key as listed: never its secret or hash."""

    id: str
    name: str
    created: float
    revoked: bool = False
    role: str = "admin"


@dataclass(frozen=True)
class User:
    """A console user as stored (``password_hash``: :mod:`fluxfunc_common.passwords`)."""

    username: str
    role: str
    password_hash: str
    created: float
    last_sign_in: float | None = None
    disabled: bool = False


@dataclass(frozen=True)
class AuditEntry:
    """One mutating management call: who (a username, ``token:<id>`` or ``ak:<id>``), by
    which credential (``via``), what (method, route template, entity id) and the status."""

    id: str
    time: float
    username: str
    via: str
    method: str
    route: str
    entity_id: str | None
    status: int


@dataclass(frozen=True)
class AuditQuery:
    """Filters of ``GET /api/v1/audit``: newest first, ids before ``before``."""

    limit: int = 50
    before: str | None = None
    username: str | None = None
    route: str | None = None


class TaskRecord(TypedDict, total=False):
    """A task record: ``TaskResult.model_dump(mode="json", by_alias=True)``
    (:class:`~fluxfunc_common.envelope.TaskResult`) plus the call's ``kwargs`` as
    :mod:`fluxfunc_common.recordkwargs` keeps them (the Worker adds them), stored whole as JSON."""

    v: int
    id: Required[str]
    funcId: str
    status: str
    origin: str
    originId: str | None
    queue: str
    attempt: int
    triggerTime: float | None
    startTime: float | None
    endTime: float | None
    result: object  # whatever the func returned (arbitrary JSON)
    response: dict[str, object] | None  # HttpResponse dumped (DFF.RESP)
    exception: str | None
    traceback: str | None
    printLogs: str | None
    cronExpr: str | None
    callChain: list[str]
    recordLimit: int | None
    kwargs: dict[str, object]  # the call's kwargs, secrets masked, capped (recordkwargs.py)
    kwargsTruncated: bool  # kwargs too large: some values cut short or left out


def task_record(result: TaskResult) -> TaskRecord:
    """The record of a finished (or skipped) task, as the store keeps it."""
    return cast(TaskRecord, result.model_dump(mode="json", by_alias=True))


ItemT = TypeVar("ItemT")


@dataclass
class Page(Generic[ItemT]):
    """One page of a list; ``next_cursor`` is None on the last page."""

    items: list[ItemT]
    next_cursor: str | None = None
