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


class TaskRecord(TypedDict, total=False):
    """A task record: ``TaskResult.model_dump(mode="json", by_alias=True)``
    (:class:`~fluxfunc_common.envelope.TaskResult`), stored whole as JSON."""

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


def task_record(result: TaskResult) -> TaskRecord:
    """The record of a finished (or skipped) task, as the store keeps it."""
    return cast(TaskRecord, result.model_dump(mode="json", by_alias=True))


ItemT = TypeVar("ItemT")


@dataclass
class Page(Generic[ItemT]):
    """One page of a list; ``next_cursor`` is None on the last page."""

    items: list[ItemT]
    next_cursor: str | None = None
