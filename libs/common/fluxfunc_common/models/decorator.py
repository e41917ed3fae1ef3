"""The options of ``@DFF.API(...)`` as publish reads them: one declarative rule per option
(its catalogue name, what it must be), including DataFlux Func's spellings (docs/user-guide.md).

A value that breaks its rule is dropped with a warning (the rest of the func publishes); a
duration beyond :data:`MAX_SECONDS` refuses the publish (400), since it cannot be a wish.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from fluxfunc_common.errors import ScriptError

MAX_SECONDS = 366 * 86_400  # the longest timeout, expires or cache_result a func may ask for


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _integer(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _positive(value: object) -> bool:
    return _number(value) and value > 0  # type: ignore[operator]


def _count(value: object) -> bool:
    return _integer(value) and value >= 0  # type: ignore[operator]


def _text(value: object) -> bool:
    return isinstance(value, str)


def _queue(value: object) -> bool:
    return (isinstance(value, str) and bool(value)) or _integer(value)


def _texts(value: object) -> bool:
    return isinstance(value, list | tuple) and all(isinstance(t, str) for t in value)


def _seconds_list(value: object) -> bool:
    return isinstance(value, list | tuple) and all(_count(v) for v in value)


def _boolean(value: object) -> bool:
    return isinstance(value, bool)


@dataclass(frozen=True, slots=True)
class Rule:
    """An option: its catalogue key, what a value must be (and how to say it is not)."""

    key: str
    check: Callable[[object], bool]
    problem: str
    nullable: bool = True  # None means "not set"
    seconds: bool = False  # a duration: at most MAX_SECONDS




def _seconds(key: str) -> Rule:
    return Rule(key, _positive, "must be a positive number", seconds=True)


RULES: dict[str, Rule] = {
    "title": Rule("title", _text, "must be a string"),
    "category": Rule("category", _text, "must be a string"),
    "tags": Rule("tags", _texts, "must be a list of strings"),
    "timeout": _seconds("timeout"),
    "api_timeout": _seconds("timeout"),
    "expires": _seconds("expires"),
    "cache_result": _seconds("cacheResult"),
    "queue": Rule("queue", _queue, "must be a queue name"),
    "fixed_cron_expr": Rule("fixedCronExpr", _text, "must be a string"),
    "fixed_crontab": Rule("fixedCronExpr", _text, "must be a string"),
    "delayed_crontab": Rule("delayedCronExpr", _seconds_list,
                            "must be a list of non-negative integer seconds"),
    "delayed_cron_job": Rule("delayedCronExpr", _seconds_list,
                             "must be a list of non-negative integer seconds"),
    "retries": Rule("retries", _count, "must be a non-negative integer", nullable=False),
    "is_hidden": Rule("isHidden", _boolean, "must be a boolean"),
}
IGNORED = frozenset({"integration", "integration_config"})  # DataFlux Func's, not supported


def problem(option: str, value: object) -> str | None:
    """Why ``value`` is not acceptable for ``option`` (None when it is)."""
    rule = RULES[option]
    if value is None:
        return None if rule.nullable else "must be an integer"
    return None if rule.check(value) else rule.problem


def check_range(func: str, option: str, value: object) -> None:
    """A duration beyond :data:`MAX_SECONDS` (or not finite) → ScriptError (400)."""
    if not RULES[option].seconds or not _number(value):
        return
    assert isinstance(value, int | float)
    if not math.isfinite(value) or value > MAX_SECONDS:
        raise ScriptError(f"{func}: option {option!r} = {value!r} is out of range (at most "
                          f"{MAX_SECONDS} seconds, 366 days)", {"func": func, "option": option})


def normalised(func: str, option: str, value: object, warnings: list[str]) -> object:
    """The value as the catalogue stores it (numbered queue → its name, tuples → lists)."""
    if option == "queue" and _integer(value):
        warnings.append(f"{func}: numbered queue {value} becomes queue name {str(value)!r}; "
                        "a worker must listen on it")
        return str(value)
    if RULES[option].key == "fixedCronExpr" and isinstance(value, str):
        _check_cron(func, value)
    return list(value) if isinstance(value, tuple) else value


def _check_cron(func: str, expr: str) -> None:
    """A bad ``fixed_cron_expr`` would never fire: refuse the publish instead."""
    from fluxfunc_common import schedule

    try:
        schedule.validate(expr)
    except schedule.ScheduleError as exc:
        raise ScriptError(f"{func}: invalid fixed_cron_expr: {exc.message}",
                          {"func": func, "fixedCronExpr": expr}) from None
