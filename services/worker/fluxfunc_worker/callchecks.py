"""The checks a task made by a script passes before it is enqueued (``DFF.FUNC`` and the
entity helpers' ``call``), the same as the Server's for the same call: the kwargs check,
fixed kwargs, and the bounds of ``timeout``/``expires``."""

from __future__ import annotations

from collections.abc import Mapping

from fluxfunc_common.models import Func, is_placeholder
from fluxfunc_worker.rpc import RpcError

MAX_EXPIRES = 86400  # a task may wait in its queue at most a day (DataFlux Func's bound)


def refuse_bad_kwargs(func: Func, kwargs: Mapping[str, object], what: str = "DFF.FUNC") -> None:
    """RpcError when the kwargs fail the one kwargs check (:meth:`Func.check_kwargs`, the
    Server's too), before anything is enqueued."""
    problems = func.check_kwargs(kwargs)
    if problems.unknown:
        raise RpcError(f"{what}: {func.id} takes no argument(s) {', '.join(problems.unknown)}")
    if problems.missing:
        raise RpcError(f"{what}: {func.id} is missing argument(s) {', '.join(problems.missing)}")
    if problems.placeholders:
        raise RpcError(f"{what}: {func.id} has argument(s) {', '.join(problems.placeholders)} "
                       "left as a placeholder")


def merge_kwargs(fixed: Mapping[str, object], caller: Mapping[str, object], what: str) -> dict[str, object]:
    """An entry's fixed kwargs plus the caller's, as the Server merges them: a caller may not
    override a fixed value; a placeholder only marks a caller-supplied kwarg."""
    merged: dict[str, object] = {}
    for name, value in fixed.items():
        if is_placeholder(value):
            continue
        if name in caller:
            raise RpcError(f"{what}: cannot specify a fixed kwargs field: {name}")
        merged[name] = value
    return {**merged, **caller}


def _seconds(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise RpcError(f"not a number of seconds: {value!r}")
    return float(value)


def call_limits(timeout: object, expires: object, max_timeout: float,
                what: str = "DFF.FUNC") -> tuple[float | None, float | None]:
    """A call's ``timeout`` (1 s to ``tasks.max_timeout``) and ``expires`` (1 s to a day), as
    DataFlux Func bounds them."""
    t, e = _seconds(timeout), _seconds(expires)
    if t is not None and not 1 <= t <= max_timeout:
        raise RpcError(f"{what}: timeout must be 1 to {max_timeout:g} seconds")
    if e is not None and not 1 <= e <= MAX_EXPIRES:
        raise RpcError(f"{what}: expires must be 1 to {MAX_EXPIRES} seconds")
    return t, e
