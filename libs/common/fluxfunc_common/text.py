"""Text out of Redis replies: the one bytes → str helper.

A Redis client without ``decode_responses`` answers bytes, one with it (or a Lua script's
status replies, or a number) answers something else; every reader turns such values into
text the same way, here.
"""

from __future__ import annotations


def as_text(value: object) -> str:
    """``value`` as text: bytes decoded as UTF-8, anything else through ``str``."""
    return value.decode() if isinstance(value, bytes) else str(value)


def as_optional_text(value: object) -> str | None:
    """:func:`as_text`, keeping None (a missing key or field) as None."""
    return None if value is None else as_text(value)
