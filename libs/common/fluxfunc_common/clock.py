"""The one time seam: everything that reads the time or sleeps goes through a Clock."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    """What fluxfunc needs of time; a fake one drives Beat and lease tests."""

    def time(self) -> float:
        """Seconds since the epoch."""
        ...

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Wait this long."""
        ...


class SystemClock:
    """The real clock."""

    def time(self) -> float:
        return time.time()

    def monotonic(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


class FakeClock:
    """A clock that only moves when told; ``sleep`` advances it at once."""

    def __init__(self, start: float = 1_700_000_000.0) -> None:
        self.now = start
        self._mono = 0.0

    def time(self) -> float:
        return self.now

    def monotonic(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        self.now += seconds
        self._mono += seconds

    async def sleep(self, seconds: float) -> None:
        self.advance(max(seconds, 0.0))
        await asyncio.sleep(0)


def utc(ts: float) -> datetime:
    """Epoch seconds → aware UTC datetime."""
    return datetime.fromtimestamp(ts, UTC)


def iso(ts: float | None) -> str | None:
    """Epoch seconds → ISO 8601 text in UTC (``None`` stays ``None``)."""
    return None if ts is None else utc(ts).isoformat(timespec="milliseconds")


def epoch(value: object) -> float | None:
    """A stored timestamp (``expireTime``, ``updateTime``…) as epoch seconds: a number, or
    ISO 8601 text (``Z`` accepted, no offset = UTC); None when empty or unreadable."""
    if value is None or value == "" or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    try:
        parsed = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).timestamp()
