"""Back-pressure of the fetch loop: how many entries the worker may hold for its children.

:class:`Slots` is a counting semaphore of :class:`Slot` tokens, the one place where free
capacity is counted. The fetch loop acquires slots *before* it reads (:meth:`Slots.acquire`:
waits until at least one is free, then takes every free one); a claim that brings fewer
entries than it asked for gives the rest back when its :class:`SlotBatch` closes; each
entry it brings takes one slot into its :class:`~fluxfunc_worker.run.Run`, which releases it
exactly once, when its use of a child ends (``with run.slot``), whether it ran, was skipped
or failed.

A slot is a child that is not running a task; with the opt-in ``worker.read_ahead``, while
the recent runs were all short, one more per child (:meth:`Slots.observe`). The extra
entries wait in the worker, not in a child, for the first child that frees up: a short
task's child then gets its next task without waiting for a Redis round trip, and each round
trip carries more completions. A run that is not short ends the extra at once, so an entry
waits behind a long task only if it was read just before.
"""

from __future__ import annotations

import asyncio
from types import TracebackType


class Slot:
    """One held place; :meth:`release` gives it back (once, however often it is called)."""

    __slots__ = ("_slots",)

    def __init__(self, slots: Slots) -> None:
        self._slots: Slots | None = slots

    @property
    def held(self) -> bool:
        return self._slots is not None

    def release(self) -> None:
        slots, self._slots = self._slots, None
        if slots is not None:
            slots._put_back()

    def __enter__(self) -> Slot:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.release()


class SlotBatch:
    """Slots acquired for one read: :meth:`take` one per entry read; closing the batch (a
    ``with`` block) gives back the ones not taken."""

    def __init__(self, slots: list[Slot]) -> None:
        self._slots = slots

    def __len__(self) -> int:
        return len(self._slots)

    def take(self) -> Slot:
        return self._slots.pop()

    def handover(self) -> SlotBatch:
        """A new batch holding all of these slots (this one is left empty)."""
        moved, self._slots = self._slots, []
        return SlotBatch(moved)

    def close(self) -> None:
        while self._slots:
            self._slots.pop().release()

    def __enter__(self) -> SlotBatch:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class Slots:
    """``size`` slots (plus ``extra`` while runs are short); see the module docstring."""

    def __init__(self, size: int, *, extra: int = 0, short_seconds: float = 0.0,
                 batch_max: int = 1 << 30) -> None:
        self.size = size
        self.batch_max = batch_max  # slots per read at most (thousands of async places)
        self.extra_max = extra
        self.short_seconds = short_seconds
        self.extra = 0
        self._held = 0  # live Slot tokens: changed only by _hand_out and _put_back
        self._short_runs = 0
        self._woken = False
        self._event = asyncio.Event()  # set while a slot is free (or a waiter is to be woken)
        self._event.set()

    @property
    def free(self) -> int:
        return self.size + self.extra - self._held

    @property
    def held(self) -> int:
        return self._held

    async def acquire(self) -> SlotBatch:
        """Every free slot, once at least one is; an empty batch when :meth:`wake` cut the
        wait short (the caller looks at its stop flag)."""
        while self.free <= 0 and not self._woken:
            self._event.clear()
            await self._event.wait()
        self._woken = False
        return self.acquire_nowait(min(self.free, self.batch_max))

    def acquire_nowait(self, n: int, *, beyond: bool = False) -> SlotBatch:
        """Up to ``n`` free slots now (exactly ``n`` with ``beyond``: entries already delivered
        to this consumer, adopted whatever the count)."""
        count = n if beyond else max(0, min(n, self.free))
        return SlotBatch([self._hand_out() for _ in range(count)])

    def _hand_out(self) -> Slot:
        self._held += 1
        if self.free <= 0:
            self._event.clear()
        return Slot(self)

    def _put_back(self) -> None:
        self._held -= 1
        if self.free > 0:
            self._event.set()

    def resize(self, size: int) -> None:
        """The pool's capacity changed (children entered or left async mode: ``size`` places)."""
        self.size = size
        if self.free > 0:
            self._event.set()
        else:
            self._event.clear()

    def observe(self, run_seconds: float) -> None:
        """A run took ``run_seconds``: extra slots after ``2 × size`` short runs in a row,
        none after a run that is not short."""
        if run_seconds < self.short_seconds:
            self._short_runs += 1
            if self._short_runs >= 2 * self.size and self.extra != self.extra_max:
                self.extra = self.extra_max
                if self.free > 0:
                    self._event.set()
        else:
            self._short_runs = 0
            if self.extra:
                self.extra = 0
                if self.free <= 0:
                    self._event.clear()

    def wake(self) -> None:
        """Let a fetch loop waiting in :meth:`acquire` (or the next call) look at its stop flag."""
        self._woken = True
        self._event.set()
