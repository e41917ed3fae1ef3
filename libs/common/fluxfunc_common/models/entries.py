"""Entry points of a func: sync APIs, async APIs and cron jobs (docs/http-api.md, "Management
API"), and env variables. Rows of the store, parsed once with :meth:`Row.from_row`."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator

from fluxfunc_common.clock import epoch
from fluxfunc_common.models.base import Flag, Row, Stamp, Tags, UserKwargs
from fluxfunc_common.models.func import Func
from fluxfunc_common.userjson import JSONObject

FIXED_CRON_PREFIX = "cron-fixed-"  # the implicit cron job of a func with fixed_cron_expr

Epoch = Annotated[float | None, BeforeValidator(epoch)]  # a number, or ISO 8601 text


def _misfire(value: object) -> object:
    return "skip" if value == "skip" else "fireOnce"


def _overlap(value: object) -> object:
    return "allow" if value == "allow" else "skip"


class EntryPoint(Row):
    """What sync APIs, async APIs and cron jobs have in common: a func, its fixed kwargs."""

    id: str
    func_id: str = ""
    kwargs: UserKwargs = {}
    expire_time: Epoch = None
    is_disabled: Flag = False
    task_record_limit: int | None = None
    tags: Tags = ()
    note: str | None = None
    create_time: Stamp = None
    update_time: Stamp = None

    def expired(self, now: float) -> bool:
        """True once ``expireTime`` has passed."""
        return self.expire_time is not None and self.expire_time <= now


class ApiEntry(EntryPoint):
    """A sync or async API: its API auth and throttling rules (JSON as configured)."""

    api_auth: JSONObject | None = None
    api_auth_id: str | None = None  # a reusable API auth (``/api/v1/api-auths``) instead
    throttling: JSONObject | None = None


class SyncApi(ApiEntry):
    """``/api/v1/sync/{id}``: run the func and answer with its result."""


class AsyncApi(ApiEntry):
    """``/api/v1/async/{id}``: enqueue the func and answer with the task id."""


class CronJob(EntryPoint):
    """A cron job (``cronExpr`` in ``timezone``, None = ``beat.timezone``), or the implicit
    job of a func published with ``fixed_cron_expr`` (:meth:`implicit_for`).

    A script may override the expression (``dynamicCronExpr``, until
    ``dynamicCronExprExpireTime`` or until cleared) and pause the job until
    ``pauseExpireTime`` (:mod:`fluxfunc_common.cronplan`); expired ones count as absent."""

    cron_expr: str = ""
    timezone: str | None = None
    misfire_policy: Annotated[Literal["skip", "fireOnce"], BeforeValidator(_misfire)] = "fireOnce"
    overlap_policy: Annotated[Literal["skip", "allow"], BeforeValidator(_overlap)] = "skip"
    queue: str | None = None
    implicit: Flag = False
    dynamic_cron_expr: str | None = None
    dynamic_cron_expr_expire_time: Epoch = None
    pause_expire_time: Epoch = None

    def override_at(self, at: float) -> str | None:
        """The script's expression in force at ``at`` (None: the configured one is)."""
        until = self.dynamic_cron_expr_expire_time
        if not self.dynamic_cron_expr or (until is not None and at > until):
            return None
        return self.dynamic_cron_expr

    def paused_at(self, at: float) -> bool:
        """Whether a timed pause drops a fire at ``at``."""
        return self.pause_expire_time is not None and at <= self.pause_expire_time

    def expr_at(self, at: float) -> str:
        """The expression the job fires on at ``at``."""
        return self.override_at(at) or self.cron_expr

    def overrides_at(self, at: float) -> dict[str, object]:
        """The override and pause as shown at ``at`` (DataFlux Func's fields; expired ones
        null/false)."""
        override = self.override_at(at) is not None
        paused = self.paused_at(at)
        return {"dynamicCronExpr": self.dynamic_cron_expr if override else None,
                "dynamicCronExprExpireTime": self.dynamic_cron_expr_expire_time if override else None,
                "isPaused": paused, "pauseExpireTime": self.pause_expire_time if paused else None}

    @classmethod
    def implicit_for(cls, func: Func) -> CronJob | None:
        """``cron-fixed-<funcId>`` of a func with ``fixedCronExpr``, or None."""
        expr = func.options.fixed_cron_expr
        if not expr:
            return None
        return cls(id=FIXED_CRON_PREFIX + func.id, func_id=func.id, cron_expr=expr,
                   create_time=func.create_time, update_time=func.update_time, implicit=True)


ValueType = Literal["string", "password", "integer", "float", "boolean", "json", "commaArray"]


class EnvVariable(Row):
    """``DFF.ENV``: a typed value; a password only as ``valueCipher`` (never shown)."""

    id: str
    title: str | None = None
    description: str | None = None
    value_type: Annotated[ValueType, BeforeValidator(lambda v: v or "string")] = "string"
    value: object = None
    value_cipher: str | None = None
    create_time: Stamp = None
    update_time: Stamp = None

    @property
    def is_password(self) -> bool:
        return self.value_type == "password"

    def presented(self) -> EnvVariable:
        """As the API answers it: no cipher, and no value for a password."""
        return self.model_copy(update={"value_cipher": None,
                                       "value": None if self.is_password else self.value})
