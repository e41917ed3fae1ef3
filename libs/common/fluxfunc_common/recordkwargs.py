"""The kwargs a task record keeps: the call's kwargs with secrets masked and the size capped.

A task record shows what a task was called with (docs/store-schema.md, ``kwargs`` in
``data``). Secrets are masked as the print output masks them: every occurrence of a secret
value — a ``password`` env variable's value, a connector's secret field — in a string becomes
``*****`` (a number that *is* a secret too). Masking walks the JSON (keys and values), so it
never breaks it. Then, beyond :data:`MAX_KWARGS_BYTES` of JSON, a value too large for its
share is kept as the start of its JSON and its size, and the record says ``kwargsTruncated``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import orjson

MASK = "*****"
MAX_KWARGS_BYTES = 64 * 1024  # as much as the print output keeps
PREVIEW_CHARS = 200  # the start of a value kept when it is too large for its share


class Masker:
    """Masks a set of secrets in JSON values: one regular expression over every string,
    the longest secret first (built once per batch of records)."""

    def __init__(self, secrets: Iterable[str]) -> None:
        order = sorted({s for s in secrets if s}, key=len, reverse=True)
        self._numbers = frozenset(order)
        self._pattern = re.compile("|".join(map(re.escape, order))) if order else None

    def __call__(self, value: object) -> object:
        """``value`` (JSON) with every secret in its strings replaced by :data:`MASK`."""
        return value if self._pattern is None else self._mask(value, self._pattern)

    def _mask(self, value: object, pattern: re.Pattern[str]) -> object:
        if isinstance(value, str):
            return pattern.sub(MASK, value)
        if isinstance(value, dict):
            return {pattern.sub(MASK, str(k)): self._mask(v, pattern) for k, v in value.items()}
        if isinstance(value, list):
            return [self._mask(v, pattern) for v in value]
        if isinstance(value, int | float) and not isinstance(value, bool) and str(value) in self._numbers:
            return MASK
        return value


def masked(value: object, secrets: Iterable[str]) -> object:
    """``value`` (JSON) with every secret in its strings replaced by :data:`MASK`."""
    return Masker(secrets)(value)


def _json(value: object) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS, default=str)


def capped(kwargs: Mapping[str, object], limit: int = MAX_KWARGS_BYTES) -> tuple[dict[str, object], bool]:
    """``kwargs`` within ``limit`` bytes of JSON, and whether anything was cut: each value
    larger than its share (``limit`` / number of kwargs) keeps its first characters and its
    size; kwargs beyond the limit are left out."""
    if len(_json(kwargs)) <= limit:
        return dict(kwargs), False
    share = max(PREVIEW_CHARS, limit // max(len(kwargs), 1))
    out: dict[str, object] = {}
    used = 2
    for key, value in kwargs.items():
        raw = _json(value)
        kept: object = value
        if len(raw) > share:
            text = raw.decode("utf-8", "replace")
            kept = f"{text[:PREVIEW_CHARS]}… ({len(raw)} bytes)"
        size = len(_json({key: kept}))
        if used + size > limit:
            break
        out[key] = kept
        used += size
    return out, True


def record_kwargs(kwargs: Mapping[str, object], mask: Masker) -> tuple[dict[str, object], bool]:
    """What a task record keeps of ``kwargs``: masked, then capped (see the module docstring)."""
    clean = mask(dict(kwargs))
    return capped(clean if isinstance(clean, dict) else {})
