"""Request models of the management and ops API.

The same classes validate requests in the handlers and describe them in
``/api/openapi.json``. Bodies are strict (no type coercion, unknown fields refused, camelCase
names); query strings are parsed leniently because every query value arrives as text.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    field_validator,
)
from pydantic.alias_generators import to_camel

from fluxfunc_common.envelope import Origin, TaskStatus
from fluxfunc_common.errors import BadRequest
from fluxfunc_common.models import JSONObject
from fluxfunc_common.streams import is_entry_id

MAX_TEXT = 65_535
MAX_CODE = 5 * 1024 * 1024

SCRIPT_SET_ID = r"^[A-Za-z][A-Za-z0-9]*(_[A-Za-z0-9]+)*$"
SCRIPT_ID = r"^[A-Za-z][A-Za-z0-9]*(_[A-Za-z0-9]+)*__[A-Za-z0-9][A-Za-z0-9_]*$"
ENTRY_ID = r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$"
VALUE_TYPES = ("string", "password", "integer", "float", "boolean", "json")

BaseModelT = TypeVar("BaseModelT", bound=BaseModel)


def _epoch(value: Any) -> Any:
    """ISO-8601 text → epoch seconds; numbers (and numeric text, as in a query) pass through."""
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            pass
        else:
            if not math.isfinite(number):
                raise ValueError("must be a finite number of epoch seconds")
            return number
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError("must be epoch seconds or an ISO-8601 date-time") from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.timestamp()
    return value


MAX_EPOCH = 253_402_300_799  # 9999-12-31T23:59:59Z
Timestamp = Annotated[
    float,
    BeforeValidator(_epoch),
    Field(ge=0, le=MAX_EPOCH),
    WithJsonSchema({"anyOf": [{"type": "number", "minimum": 0, "maximum": MAX_EPOCH},
                              {"type": "string", "format": "date-time"}],
                    "description": "epoch seconds or ISO-8601 date-time (stored as epoch seconds)"}),
]
ScriptSetId = Annotated[str, Field(pattern=SCRIPT_SET_ID, max_length=64)]
ScriptId = Annotated[str, Field(pattern=SCRIPT_ID, max_length=100)]
EntryId = Annotated[str, Field(pattern=ENTRY_ID, min_length=1, max_length=64)]
Title = Annotated[str, Field(max_length=256)]
Text = Annotated[str, Field(max_length=MAX_TEXT)]
Tags = Annotated[list[Annotated[str, Field(max_length=64)]], Field(max_length=64)]
FuncId = Annotated[str, Field(min_length=1, max_length=191)]


class Body(BaseModel):
    """A JSON request body: camelCase, strict types, unknown fields refused."""

    model_config = ConfigDict(extra="forbid", strict=True, alias_generator=to_camel,
                              populate_by_name=False)


class Query(BaseModel):
    """A query string: camelCase, lenient (text) types, unknown parameters refused."""

    model_config = ConfigDict(extra="forbid", alias_generator=to_camel, populate_by_name=False)


def parse(model: type[BaseModelT], data: Any, *, what: str = "request body") -> BaseModelT:
    """Validate ``data``; a failure is a 400 with pydantic's errors in ``detail.errors``."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        first = errors[0] if errors else {"loc": (), "msg": "invalid"}
        where = ".".join(str(p) for p in first["loc"]) or what
        raise BadRequest(f"invalid {what}: {where}: {first['msg']}", {"errors": errors}) from None


# --- script sets and scripts -------------------------------------------------------------------


class ScriptSetCreate(Body):
    id: ScriptSetId
    title: Title | None = None
    description: Text | None = None
    requirements: Text | None = None


class ScriptSetUpdate(Body):
    title: Title | None = None
    description: Text | None = None
    requirements: Text | None = None


class ScriptCreate(Body):
    id: ScriptId
    title: Title | None = None
    description: Text | None = None
    code: Annotated[str, Field(max_length=MAX_CODE)] = Field(
        default="", description="the draft code (published with POST /scripts/{id}/publish)")


class ScriptUpdate(Body):
    title: Title | None = None
    description: Text | None = None
    code: Annotated[str, Field(max_length=MAX_CODE)] | None = None


class PublishBody(Body):
    code: Annotated[str, Field(max_length=MAX_CODE)] | None = Field(
        default=None, description="replace the draft with this code before publishing (a script "
        "that does not exist yet is created with it)")
    title: Title | None = Field(default=None, description="set the title too")
    description: Text | None = Field(default=None, description="set the description too")


class DraftRunBody(Body):
    """``POST /scripts/{id}/draft-run``: run a function of the draft, unpublished."""

    func_name: Annotated[str, Field(min_length=1, max_length=191)] = Field(
        description="an @DFF.API function of the script's draft")
    kwargs: JSONObject = Field(default_factory=dict, description=(
        "its kwargs, checked as a published call's are"))
    timeout: Annotated[float, Field(gt=0)] | None = Field(default=None, description=(
        "seconds it may run, at most console.draft_run_max_timeout (default: the function's "
        "own timeout, capped to that)"))


# --- entry points ---------------------------------------------------------------------------------


class ApiAuthNone(Body):
    type: Literal["none"]


class ApiAuthFixedField(Body):
    type: Literal["fixedField"]
    location: Literal["header", "query", "body"]
    field: Annotated[str, Field(min_length=1, max_length=256)]
    value: Annotated[str, Field(max_length=4096)]


class BasicUser(Body):
    username: Annotated[str, Field(min_length=1, max_length=256)]
    password: Annotated[str, Field(max_length=4096)]


class ApiAuthHttpBasic(Body):
    type: Literal["httpBasic"]
    users: Annotated[list[BasicUser], Field(min_length=1, max_length=1000)]
    allow_cross_origin_forms: bool = Field(default=False, description=(
        "accept form posts from other origins (refused by default: a browser would send "
        "its cached credentials with them)"))


class ApiAuthHttpDigest(Body):
    type: Literal["httpDigest"]
    users: Annotated[list[BasicUser], Field(min_length=1, max_length=1000)]
    algorithm: Literal["MD5", "SHA-256"] = "MD5"
    allow_cross_origin_forms: bool = False


class ApiAuthFunc(Body):
    type: Literal["func"]
    func_id: FuncId = Field(description="a published func; truthy return value = pass")


ApiAuth = Annotated[ApiAuthNone | ApiAuthFixedField | ApiAuthHttpBasic | ApiAuthHttpDigest
                    | ApiAuthFunc, Field(discriminator="type")]
ApiAuthId = Annotated[str, Field(min_length=1, max_length=191, description=(
    "a reusable API auth (/api/v1/api-auths) instead of an inline apiAuth"))]


class Throttling(Body):
    """Call limits per window; ``window`` ``sliding`` (default) or ``fixed`` (DataFlux Func's
    epoch-aligned windows). ``byMonth`` = 30 days, ``byYear`` = 365 days."""

    by_second: Annotated[int, Field(ge=1)] | None = None
    by_minute: Annotated[int, Field(ge=1)] | None = None
    by_hour: Annotated[int, Field(ge=1)] | None = None
    by_day: Annotated[int, Field(ge=1)] | None = None
    by_month: Annotated[int, Field(ge=1)] | None = None
    by_year: Annotated[int, Field(ge=1)] | None = None
    window: Literal["sliding", "fixed"] = "sliding"


Kwargs = Annotated[JSONObject, Field(description="fixed kwargs; the value "
                                                     "\"INPUT_BY_CALLER\" lets the caller supply one")]
RecordLimit = Annotated[int, Field(ge=0, le=1_000_000)]


class ApiCreate(Body):
    id: EntryId | None = None
    func_id: FuncId
    kwargs: Kwargs = Field(default_factory=dict)
    api_auth: ApiAuth | Literal["none"] | None = None
    api_auth_id: ApiAuthId | None = None
    throttling: Throttling | None = None
    expire_time: Timestamp | None = None
    is_disabled: bool = False
    task_record_limit: RecordLimit | None = None
    tags: Tags = Field(default_factory=list)
    note: Text | None = None


class ApiUpdate(Body):
    func_id: FuncId | None = None
    kwargs: Kwargs | None = None
    api_auth: ApiAuth | Literal["none"] | None = None
    api_auth_id: ApiAuthId | None = None
    throttling: Throttling | None = None
    expire_time: Timestamp | None = None
    is_disabled: bool | None = None
    task_record_limit: RecordLimit | None = None
    tags: Tags | None = None
    note: Text | None = None


class SyncApiCreate(ApiCreate):
    """A sync API (``/api/v1/sync/{id}``)."""


class SyncApiUpdate(ApiUpdate):
    """Changes to a sync API."""


class AsyncApiCreate(ApiCreate):
    """An async API (``/api/v1/async/{id}``)."""


class AsyncApiUpdate(ApiUpdate):
    """Changes to an async API."""


class CronJobCreate(Body):
    id: EntryId | None = None
    func_id: FuncId
    kwargs: JSONObject = Field(default_factory=dict)
    cron_expr: Annotated[str, Field(min_length=1, max_length=256,
                                    description="5 fields, or 6 with seconds first; may be left "
                                    "out for a func with fixed_cron_expr")] | None = None
    timezone: Annotated[str, Field(max_length=64)] | None = Field(
        default=None, description="IANA name; default beat.timezone")
    misfire_policy: Literal["skip", "fireOnce"] = "fireOnce"
    overlap_policy: Literal["skip", "allow"] = "skip"
    expire_time: Timestamp | None = None
    is_disabled: bool = False
    task_record_limit: RecordLimit | None = None
    tags: Tags = Field(default_factory=list)
    note: Text | None = None


class CronJobUpdate(Body):
    func_id: FuncId | None = None
    kwargs: JSONObject | None = None
    cron_expr: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    timezone: Annotated[str, Field(max_length=64)] | None = None
    misfire_policy: Literal["skip", "fireOnce"] | None = None
    overlap_policy: Literal["skip", "allow"] | None = None
    expire_time: Timestamp | None = None
    is_disabled: bool | None = None
    task_record_limit: RecordLimit | None = None
    tags: Tags | None = None
    note: Text | None = None


# --- env variables -----------------------------------------------------------------------------------


ValueType = Literal["string", "password", "integer", "float", "boolean", "json", "commaArray"]


class EnvVariableCreate(Body):
    id: EntryId
    title: Title | None = None
    description: Text | None = None
    value_type: ValueType = "string"
    value: Any = Field(description="text, or a JSON value of the declared type")


class EnvVariableUpdate(Body):
    title: Title | None = None
    description: Text | None = None
    value_type: ValueType | None = None
    value: Any = None


# --- query strings ----------------------------------------------------------------------------------


class ListQuery(Query):
    limit: Annotated[int, Field(ge=1, le=500)] = 50
    cursor: Annotated[str, Field(max_length=512)] | None = None


class ScriptSetListQuery(ListQuery):
    """Filters of ``GET /script-sets``."""


class ScriptListQuery(ListQuery):
    script_set_id: Annotated[str, Field(max_length=64)] | None = None


class FuncListQuery(ListQuery):
    script_id: Annotated[str, Field(max_length=128)] | None = None
    script_set_id: Annotated[str, Field(max_length=64)] | None = None


class EntryListQuery(ListQuery):
    func_id: Annotated[str, Field(max_length=256)] | None = None


class EnvVariableListQuery(ListQuery):
    """Filters of ``GET /env-variables``."""


class TaskRecordListQuery(ListQuery):
    func_id: Annotated[str, Field(max_length=256)] | None = None
    origin: Origin | None = None
    origin_id: Annotated[str, Field(max_length=256)] | None = None
    status: TaskStatus | None = None
    queue: Annotated[str, Field(max_length=128)] | None = None
    since: Timestamp | None = None
    until: Timestamp | None = None


class NoQuery(Query):
    """A route that takes no query parameters."""


class NextFiresQuery(Query):
    count: Annotated[int, Field(ge=1, le=100)] = 5


class DeadLetterQuery(Query):
    count: Annotated[int, Field(ge=1, le=1000)] = 100
    start: Annotated[str, Field(max_length=64, pattern=r"^(-|\(?\d{1,20}(-\d{1,20})?)$",
                                description="first entry id (`-` = oldest; `(id` = after id)")] = "-"

    @field_validator("start")
    @classmethod
    def _fits_a_stream_id(cls, value: str) -> str:
        """Both parts of a stream id are unsigned 64-bit integers."""
        bare = value.lstrip("(")
        if value != "-" and not is_entry_id(bare if "-" in bare else f"{bare}-0"):
            raise ValueError("not a stream entry id (each part must be below 2^64)")
        return value


def query_of(request_query: Any, model: type[BaseModelT]) -> BaseModelT:
    """Validate a request's query string (repeated keys: the last one counts)."""
    return parse(model, {k: request_query.getall(k)[-1] for k in request_query}, what="query")
