"""The task envelope (what travels on a stream) and the task result (what a run produced).

Both are versioned pydantic models with camelCase JSON names. Only :mod:`streams` converts
them to and from stream entries and result keys.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from fluxfunc_common.userjson import JSONObject

ENVELOPE_VERSION = 1


class Origin(StrEnum):
    SYNC_API = "syncAPI"
    ASYNC_API = "asyncAPI"
    DIRECT = "direct"
    CRON_JOB = "cronJob"
    CHILD = "child"
    SUBSCRIPTION = "subscription"  # a broker message (docs/connectors.md)
    API_AUTH = "apiAuth"  # the auth func of a `func` API auth (docs/http-api.md)
    DRAFT = "draft"  # a console run of a script's unpublished draft (docs/http-api.md)


class TaskStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCESS = "success"
    FAILURE = "failure"
    TIMEOUT = "timeout"
    EXPIRED = "expired"
    CANCELLED = "cancelled"
    DEAD = "dead"
    SKIPPED = "skipped"

    @property
    def final(self) -> bool:
        return self not in (TaskStatus.QUEUED, TaskStatus.RUNNING)


class Model(BaseModel):
    """camelCase on the wire, snake_case in Python."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    def to_json(self) -> str:
        return self.model_dump_json(by_alias=True)


class TaskEnvelope(Model):
    """One task as enqueued by a producer (Server, Beat, a worker for retries/children)."""

    v: int = ENVELOPE_VERSION
    id: str
    func_id: str
    kwargs: JSONObject = Field(default_factory=dict)
    origin: Origin = Origin.DIRECT
    origin_id: str | None = None
    queue: str = "default"
    trigger_time: float = Field(description="epoch seconds when the task was created/fired")
    eta: float | None = Field(default=None, description="epoch seconds; run not before")
    timeout: float = 30.0
    expires: float | None = Field(default=None, description="epoch seconds; not started after")
    attempt: int = 1
    max_attempts: int = 1
    reply_to: str | None = Field(default=None, description="reply stream key of a waiting Server")
    idempotency_key: str | None = None
    idempotency_scope: str | None = Field(default=None, description=(
        "who used the key on which entry point (a digest): keys of different scopes never meet"))
    call_chain: list[str] = Field(default_factory=list)
    cron_expr: str | None = None
    trace_id: str | None = None
    result_ttl: int | None = None
    http_request: JSONObject | None = None
    record_limit: int | None = None
    last_error: str | None = None
    draft_md5: str | None = Field(default=None, description=(
        "a draft run: the MD5 of the script draft to run instead of the published code "
        "(the worker refuses a draft that changed meanwhile)"))


class HttpResponse(Model):
    """What ``DFF.RESP`` asked the sync call to answer with."""

    status_code: int = 200
    content_type: str | None = None
    headers: dict[str, str] = Field(default_factory=dict)
    data: Any = None
    # DFF.RESP_FILE / DFF.RESP_LARGE_DATA: a file under the resource directory
    file_path: str | None = None
    auto_delete: bool = False
    download: bool | str = False
    large_data: bool = False
    allow_304: bool = False  # answer If-None-Match with 304 (an ETag of the body is sent)


class TaskResult(Model):
    """A finished (or skipped) run: stored at ``{ns}:result:{task}`` and in the task record."""

    v: int = ENVELOPE_VERSION
    id: str
    func_id: str
    status: TaskStatus
    origin: Origin = Origin.DIRECT
    origin_id: str | None = None
    queue: str = "default"
    attempt: int = 1
    trigger_time: float | None = None
    start_time: float | None = None
    end_time: float | None = None
    result: Any = None
    response: HttpResponse | None = None
    exception: str | None = None
    traceback: str | None = None
    print_logs: str | None = None
    cron_expr: str | None = None
    call_chain: list[str] = Field(default_factory=list)
    record_limit: int | None = None

    @classmethod
    def for_envelope(cls, env: TaskEnvelope, status: TaskStatus, **fields: object) -> TaskResult:
        """A result carrying the envelope's identity fields (``fields`` adds or overrides)."""
        return cls.model_validate({
            "status": status,
            "id": env.id,
            "func_id": env.func_id,
            "origin": env.origin,
            "origin_id": env.origin_id,
            "queue": env.queue,
            "attempt": env.attempt,
            "trigger_time": env.trigger_time,
            "cron_expr": env.cron_expr,
            "call_chain": env.call_chain,
            "record_limit": env.record_limit,
            **fields,
        })
