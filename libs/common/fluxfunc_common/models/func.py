"""A published function (a row of the func catalogue, see docs/internals.md) and the rules
that follow from its ``@DFF.API`` options: its queue, how long a task may wait in that queue,
its effective timeout, its retries, its result cache, and which kwargs it accepts."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Annotated

from pydantic import BeforeValidator, Field

from fluxfunc_common.envelope import Origin
from fluxfunc_common.models.base import Flag, Row, Stamp, Tags
from fluxfunc_common.settings import TasksSettings

# A fixed kwarg with one of these values is not fixed: the caller supplies it (DataFlux Func
# spells it FROM_PARAMETER). docs/http-api.md, "Fixed kwargs".
PLACEHOLDERS = frozenset({"INPUT_BY_CALLER", "FROM_PARAMETER"})

# Seconds a task of a sync call may wait in its queue when the func gives no ``expires``
# (together with the func's timeout, see FuncOptions.queue_wait; docs/http-api.md).
MIN_SYNC_QUEUE_WAIT = 30.0

# The queue of a func without ``queue=``, by the origin of the call (docs/user-guide.md).
DEFAULT_QUEUES: Mapping[Origin, str] = {Origin.CRON_JOB: "cron", Origin.ASYNC_API: "async"}
DEFAULT_QUEUE = "default"


def is_placeholder(value: object) -> bool:
    """True for a fixed kwarg value that only marks a kwarg the caller supplies."""
    return isinstance(value, str) and value in PLACEHOLDERS


def _queue_name(value: object) -> object:
    """``queue=3`` (DataFlux Func's numbered queues) is the queue ``"3"``; ``""`` is none."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value or None


def _count(value: object) -> object:
    return 0 if value is None else value


QueueName = Annotated[str | None, BeforeValidator(_queue_name)]


class FuncOptions(Row):
    """``extraConfig`` of a func: its ``@DFF.API`` options under their catalogue names
    (``api_timeout`` → ``timeout``, ``cache_result`` → ``cacheResult``, ``fixed_crontab`` →
    ``fixedCronExpr``, ``delayed_crontab`` → ``delayedCronExpr``, ``is_hidden`` → ``isHidden``).
    Publish validates them (:mod:`fluxfunc_common.models.decorator`)."""

    timeout: float | None = None
    expires: float | None = None
    cache_result: float | None = None
    queue: QueueName = None
    fixed_cron_expr: str | None = None
    delayed_cron_expr: tuple[int, ...] | None = None
    retries: Annotated[int, BeforeValidator(_count)] = 0
    is_hidden: Flag = False

    def effective_timeout(self, settings: TasksSettings) -> float:
        """The func's timeout (``tasks.default_timeout`` without one), at most ``tasks.max_timeout``."""
        return float(min(self.timeout or settings.default_timeout, settings.max_timeout))

    def queue_name(self, origin: Origin) -> str:
        """The func's queue, else the queue of the call's origin (``cron``, ``async``, ``default``)."""
        return self.queue or DEFAULT_QUEUES.get(origin, DEFAULT_QUEUE)

    def queue_wait(self, timeout: float, *, sync: bool) -> float | None:
        """Seconds a task may wait in its queue before it ends ``expired``: the func's
        ``expires``; without one, a sync call's task its timeout (at least 30 s), any other
        task without limit (None)."""
        if self.expires:
            return float(self.expires)
        return max(timeout, MIN_SYNC_QUEUE_WAIT) if sync else None

    def queue_deadline(self, start: float, timeout: float, *, sync: bool) -> float | None:
        """Epoch seconds after which a task due at ``start`` is not started (None: never)."""
        wait = self.queue_wait(timeout, sync=sync)
        return None if wait is None else start + wait

    @property
    def max_attempts(self) -> int:
        """The first run plus ``retries``."""
        return 1 + max(self.retries, 0)

    @property
    def cache_seconds(self) -> int | None:
        """Seconds a successful sync result is cached (None: not cached)."""
        ttl = self.cache_result
        return int(ttl) if ttl is not None and ttl >= 1 else None


class ParamSpec(Row):
    """One keyword parameter: required, or its default's source text."""

    required: Flag = False
    default: str | None = None


@dataclass(frozen=True, slots=True)
class KwargsProblems:
    """What is wrong with a call's kwargs for a func (all empty: nothing; then ``accepted``
    is empty too — it names the func's parameters only alongside a problem)."""

    unknown: tuple[str, ...] = ()
    missing: tuple[str, ...] = ()
    placeholders: tuple[str, ...] = ()
    accepted: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.unknown or self.missing or self.placeholders)


_NO_PROBLEMS = KwargsProblems()


class Func(Row):
    """A row of the func catalogue (table ``funcs``, written by publish)."""

    id: str
    script_id: str = ""
    script_set_id: str = ""
    name: str = ""
    title: str | None = None
    description: str | None = None
    definition: str = ""
    args: tuple[str, ...] = ()
    kwargs_spec: dict[str, ParamSpec] = Field(default_factory=dict)
    var_kwargs: Flag = False
    is_async: Flag = False
    extra_config: Annotated[FuncOptions, BeforeValidator(lambda v: v or {})] = Field(
        default_factory=FuncOptions)
    category: str | None = None
    tags: Tags = ()
    create_time: Stamp = None
    update_time: Stamp = None

    @classmethod
    def of(cls, func: Func | Mapping[str, object]) -> Func:
        """``func`` itself, or the Func of a catalogue row (tests, tools, publish output)."""
        return func if isinstance(func, Func) else cls.from_row(func)

    @property
    def options(self) -> FuncOptions:
        return self.extra_config

    @property
    def version(self) -> str:
        """What changes with each publish of the func (part of result-cache keys)."""
        return str(self.update_time or self.create_time or "")

    def check_kwargs(self, kwargs: Mapping[str, object], *, has_caller: bool = False) -> KwargsProblems:
        """THE kwargs check, before anything is enqueued (docs/http-api.md): names the
        signature does not take (unless ``**kwargs``), and — unless a caller will still add
        its own (``has_caller``: the fixed kwargs of a sync/async API) — required ones
        missing and placeholders nobody will replace. The signature is ``kwargsSpec``
        (``args`` lists the same names)."""
        spec = self.kwargs_spec
        unknown = [] if self.var_kwargs else [k for k in kwargs if k not in spec]
        if has_caller:
            missing: list[str] = []
            placeholders: list[str] = []
        else:
            missing = [k for k in self._required if k not in kwargs]
            placeholders = [k for k, v in kwargs.items() if type(v) is str and v in PLACEHOLDERS]
        if not (unknown or missing or placeholders):
            return _NO_PROBLEMS  # the hot path: nothing to sort or to name
        return KwargsProblems(tuple(sorted(unknown)), tuple(sorted(missing)),
                              tuple(sorted(placeholders)), tuple(spec))

    @cached_property
    def _required(self) -> tuple[str, ...]:
        return tuple(k for k, p in self.kwargs_spec.items() if p.required)
