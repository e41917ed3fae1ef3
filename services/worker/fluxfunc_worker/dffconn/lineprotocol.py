"""InfluxDB line protocol (what ``influxdb``, ``datakit`` and ``dataway`` connectors write):
points of DataFlux Func's shape (``measurement``, ``tags``, ``fields``, ``timestamp`` or
``time``) encoded one per line with nanosecond timestamps (``precision=n``)."""

from __future__ import annotations

import math
import time
from datetime import datetime
from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

PRECISION = "n"
_MIN_NS = 10**18  # a number below this is seconds, ms or µs (DataFlux Func's rule)

Scalar = str | bool | int | float


class Point(BaseModel):
    """One point as scripts give it (DataFlux Func's dict)."""

    model_config = ConfigDict(populate_by_name=True)

    measurement: str = Field(min_length=1)
    tags: dict[str, Any] | None = None
    fields: dict[str, Any] = Field(min_length=1)
    timestamp: float | int | str | None = Field(default=None, alias="time")

    @classmethod
    def of(cls, value: Any) -> Point:
        if isinstance(value, Point):
            return value
        data = dict(value)
        if "timestamp" in data and "time" not in data:
            data["time"] = data.pop("timestamp")
        return cls.model_validate(data)


def to_ns(timestamp: float | int | str | None) -> int:
    """Nanoseconds since the epoch: an ISO string, or a number in s, ms, µs or ns."""
    if timestamp is None:
        return time.time_ns()
    if isinstance(timestamp, str):
        stamp = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
        return int(stamp.timestamp()) * 10**9 + stamp.microsecond * 1000
    value = Decimal(repr(timestamp))  # exact: no float rounding of ms or µs
    for _ in range(3):
        if value >= _MIN_NS:
            break
        value *= 1000
    return int(value)


def _escape(text: str, chars: str) -> str:
    text = text.replace("\\", "\\\\") if '"' in chars else text
    for char in chars:
        text = text.replace(char, "\\" + char)
    return text


def _field_value(name: str, value: Scalar) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return f"{value}i"
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"field {name!r}: {value} cannot be written")
        return repr(value)
    if isinstance(value, str):
        return '"' + _escape(value, '"') + '"'
    raise TypeError(f"field {name!r}: a {type(value).__name__} cannot be written "
                    "(str, bool, int or float)")


def line(point: Point) -> str:
    """One point as a line; tags and fields sorted by key, ``None`` values left out."""
    head = _escape(point.measurement, ", ")
    for key in sorted(point.tags or {}):
        value = (point.tags or {})[key]
        if value is None or str(value) == "":
            continue
        text = str(value).lower() if isinstance(value, bool) else str(value)
        head += f",{_escape(key, ',= ')}={_escape(text, ',= ')}"
    fields = [f"{_escape(k, ',= ')}={_field_value(k, v)}"
              for k, v in sorted(point.fields.items()) if v is not None]
    if not fields:
        raise ValueError(f"point {point.measurement!r} has no field value")
    return f"{head} {','.join(fields)} {to_ns(point.timestamp)}"


def encode(points: list[Point]) -> bytes:
    return "\n".join(line(p) for p in points).encode()
