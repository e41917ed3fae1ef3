"""Response shapes (``data`` of the envelope) of the management and ops API, for the OpenAPI
document. Entities may carry more fields than listed (``additionalProperties``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from fluxfunc_common.models import FuncOptions, JSONObject, ParamSpec


class Out(BaseModel):
    model_config = ConfigDict(extra="allow")


class Stamped(Out):
    id: str
    createTime: float | None = None
    updateTime: float | None = None


class ScriptSet(Stamped):
    title: str | None = None
    description: str | None = None
    requirements: str | None = None


class Script(Stamped):
    scriptSetId: str | None = None
    title: str | None = None
    description: str | None = None
    code: str | None = None
    codeMD5: str | None = None


class Func(Stamped):
    scriptId: str
    scriptSetId: str
    name: str
    title: str | None = None
    description: str | None = None
    definition: str
    args: list[str]
    kwargsSpec: dict[str, ParamSpec]
    varKwargs: bool
    isAsync: bool
    extraConfig: FuncOptions
    category: str | None = None
    tags: list[str] = []


class ApiEntry(Stamped):
    funcId: str
    kwargs: JSONObject = {}
    apiAuth: JSONObject | None = None
    apiAuthId: str | None = None
    throttling: JSONObject | None = None
    expireTime: float | None = None
    isDisabled: bool | None = None
    taskRecordLimit: int | None = None
    tags: list[str] | None = None
    note: str | None = None


class SyncApi(ApiEntry):
    """A sync API."""


class AsyncApi(ApiEntry):
    """An async API."""


class CronJob(ApiEntry):
    cronExpr: str
    timezone: str | None = None
    misfirePolicy: str | None = None
    overlapPolicy: str | None = None
    dynamicCronExpr: str | None = Field(default=None, description=(
        "a script's expression in force over cronExpr (DFF.CRON_JOB.set_cron_expr)"))
    dynamicCronExprExpireTime: float | None = Field(default=None, description=(
        "when dynamicCronExpr ends by itself (epoch s); null: until cleared"))
    isPaused: bool = Field(default=False, description="paused by DFF.CRON_JOB.pause(expires)")
    pauseExpireTime: float | None = Field(default=None, description="when the pause ends (epoch s)")


class EnvVariable(Stamped):
    title: str | None = None
    description: str | None = None
    valueType: str
    value: Any = None


class TaskRecord(Out):
    id: str
    funcId: str | None = None
    status: str | None = None
    origin: str | None = None
    originId: str | None = None
    queue: str | None = None


class PublishResult(Out):
    script: Script
    funcs: list[Func]
    warnings: list[str]


class DraftRunResult(Out):
    """The outcome of a draft run (``POST /scripts/{id}/draft-run``)."""

    taskId: str
    status: str = Field(description="success, failure or timeout")
    result: Any = Field(default=None, description="the return value (DFF.RESP: its data)")
    output: str = Field(description="what the function printed")
    error: str | None = Field(default=None, description="`Type: message` when it did not succeed")
    traceback: str | None = None
    durationMs: float | None = Field(default=None, description="how long the function ran")


class Fire(Out):
    timestamp: float
    iso: str


class NextFires(Out):
    id: str
    cronExpr: str
    timezone: str
    isDisabled: bool
    next: list[Fire]


class Consumer(Out):
    name: str
    pending: int
    idleMs: int
    inactiveMs: int | None = None


class QueueStats(Out):
    """One queue, as ``fluxfunc streams`` shows it (``fluxfunc_common.queuestats.queue_stats``)."""

    queue: str
    exists: bool
    length: int
    pending: int
    lag: int
    consumers: list[Consumer]
    oldestPendingAgeMs: int | None = None
    delayed: int
    dead: int
    throughputLastMinute: int
    noConsumer: bool = Field(default=False, description="no live worker reads this queue: its "
                             "tasks wait until one does")


class BeatInfo(Out):
    leader: Any = None
    epoch: int | None = None


class Service(Out):
    """One live service, as its heartbeat describes it (roles add fields: a Server its port)."""

    role: str
    instance: str
    host: str
    pid: int
    version: str
    startTime: float
    lastHeartbeat: float


class Overview(Out):
    serverTime: float
    queues: list[QueueStats]
    deadLetters: int
    services: dict[str, list[Service]]
    beat: BeatInfo


class DeadLetter(Out):
    """One dead-letter entry (reason, queue, original entry id, task, delivery count, body)."""


class Requeued(Out):
    taskId: str
    entryId: str | None = None
    duplicate: bool


class Deleted(Out):
    id: str


class Status(Out):
    status: str
    instance: str | None = Field(default=None, description="/healthz: this process's instance id")


class Credential(Out):
    """An admin token or access key as listed (never its secret)."""

    id: str
    name: str
    created: float
    revoked: bool
    role: str


class Revoked(Out):
    id: str
    revoked: bool


class TaskId(Out):
    id: str


class CronRun(Out):
    id: str
    status: str | None = None
    queue: str | None = None
    detail: str | None = None


class PageInfo(Out):
    limit: int
    count: int
    nextCursor: str | None = None


RESPONSE_MODELS: list[type[BaseModel]] = [
    ScriptSet, Script, Func, SyncApi, AsyncApi, CronJob, EnvVariable, TaskRecord, PublishResult,
    NextFires, Overview, DeadLetter, Requeued, Deleted, Status, TaskId, CronRun, PageInfo,
    Credential, Revoked, DraftRunResult,
]
