"""How long the event loop was held: a probe that ticks every 2 ms and records the CPU time
this thread spent between two ticks. Work that holds the loop (a slow decode, a deep walk)
shows up; time the machine gave to other processes does not, so a busy CI machine does not
make a bound fail."""

from __future__ import annotations

import asyncio
import time


class LoopHold:
    """``async with LoopHold() as hold: …`` then ``hold.worst`` (seconds of CPU between two
    ticks, the longest seen)."""

    def __init__(self, period: float = 0.002) -> None:
        self.period = period
        self.worst = 0.0
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        last = time.thread_time()
        while True:
            await asyncio.sleep(self.period)
            now = time.thread_time()
            self.worst = max(self.worst, now - last)
            last = now

    async def __aenter__(self) -> LoopHold:
        self._task = asyncio.create_task(self._run())
        await asyncio.sleep(self.period * 1.5)  # it has ticked once
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
