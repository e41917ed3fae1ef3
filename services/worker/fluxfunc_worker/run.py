"""One :class:`Run` per held stream entry: its state, its slot, its lease, its child, its outcome.

A run is created when the fetch loop holds an entry (read, reclaimed or adopted) and is
given one of the fetch loop's slots (:mod:`~fluxfunc_worker.slots`). Its state::

    CLAIMED ──submit──▶ STARTING ──a child takes it──▶ RUNNING ──outcome──▶ FINISHING ──▶ DONE
    cancel (from any of the first three) ──▶ CANCELLING ──outcome──▶ FINISHING ──▶ DONE
    lose (from any state before FINISHING) ──▶ LOST ──adopt──▶ the state it had
    release (from any state before DONE) ──▶ RELEASED

* ``CANCELLING``: a cancel arrived; its child is stopped (or it never starts) and it ends
  with status ``cancelled``.
* ``LOST``: the lease keeper found the entry owned by another worker; its child is stopped
  and nothing is written. A reclaim that hands the entry back to this worker while it still
  runs (:meth:`Run.adopt`) returns it to the state it had.
* ``RELEASED``: handed back at shutdown; its child is stopped, and its result is written only
  if the child answered all the same.

The slot is held while the run waits for or occupies a child and released exactly once
(:class:`~fluxfunc_worker.slots.Slot`); writing the result (``FINISHING``) needs no child.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from enum import Enum

from fluxfunc_common.envelope import Origin, TaskEnvelope
from fluxfunc_common.logs import get_logger
from fluxfunc_common.streams import Delivery
from fluxfunc_worker.childproc import Job
from fluxfunc_worker.messages import RunMessage
from fluxfunc_worker.outcome import End, Outcome
from fluxfunc_worker.pool import Pool
from fluxfunc_worker.slots import Slot

log = get_logger("worker")

# Looked up once: in Python 3.11 each ``.value`` access costs about a microsecond.
_ORIGIN: dict[Origin, str] = {o: o.value for o in Origin}


class RunState(Enum):
    CLAIMED = "claimed"  # held and start-checked, not on the pool yet
    STARTING = "starting"  # submitted: waiting for a child
    RUNNING = "running"  # a child runs it
    CANCELLING = "cancelling"  # a cancel stops it: it ends cancelled
    FINISHING = "finishing"  # its result is being written
    DONE = "done"  # ended (written, or nothing to write)
    LOST = "lost"  # another worker owns the entry: nothing is written
    RELEASED = "released"  # handed back at shutdown: written only if its child answered


_ACTIVE = frozenset({RunState.CLAIMED, RunState.STARTING, RunState.RUNNING})
_LOSABLE = _ACTIVE | {RunState.CANCELLING}
_RELEASABLE = _LOSABLE | {RunState.FINISHING}
_ABANDONED = frozenset({RunState.LOST, RunState.RELEASED})
# what the child of a run in this state is stopped for (a run stopped before it was submitted
# ends unstarted with that reason)
_STOP = {RunState.CANCELLING: End.CANCELLED, RunState.LOST: End.LOST, RunState.RELEASED: End.SHUTDOWN}


@dataclass(eq=False)
class Run:
    """One held entry from the claim to its end (see the module docstring)."""

    delivery: Delivery
    slot: Slot
    start_time: float = field(default_factory=time.time)  # epoch s, when it was read
    started: float = field(default_factory=time.monotonic)
    job: Job | None = None
    outcome: Outcome | None = None  # how its child part ended (None: it never had one)
    _state: RunState = field(default=RunState.CLAIMED, init=False)
    _before_loss: RunState = field(default=RunState.CLAIMED, init=False)

    @property
    def state(self) -> RunState:
        state = self._state
        if state is RunState.STARTING and self.job is not None and self.job.running:
            return RunState.RUNNING
        return state

    @property
    def key(self) -> tuple[str, str]:
        return self.delivery.queue, self.delivery.entry_id

    @property
    def task_id(self) -> str:
        return self.delivery.envelope.id

    @property
    def envelope(self) -> TaskEnvelope:
        return self.delivery.envelope

    @property
    def abandoned(self) -> bool:
        """Lost or released: what it did is not written (unless a released run's child answered)."""
        return self._state in _ABANDONED

    @property
    def stop_reason(self) -> End | None:
        """Why the worker stops it (None: it is not being stopped)."""
        return _STOP.get(self._state)

    @property
    def waiting(self) -> bool:
        """Submitted, no child has it yet."""
        return self.state is RunState.STARTING

    # --- transitions ----------------------------------------------------------------------
    def submit(self, pool: Pool, *, is_async: bool = False) -> Job:
        """CLAIMED → STARTING: on a child now, or queued for the next one (``is_async``: an
        ``async def``, run beside other async tasks of its child)."""
        self._expect(RunState.CLAIMED)
        env = self.delivery.envelope
        expires = env.expires if env.attempt == 1 else None
        self.job = pool.submit(run_message(env), env.timeout, expires=expires, is_async=is_async)
        self._state = RunState.STARTING
        return self.job

    def cancel(self) -> bool:
        """A cancel: stop its child (or never start it); it ends cancelled. False when it is
        past that (or already cancelling)."""
        if self._state not in _ACTIVE:
            return False
        self._state = RunState.CANCELLING
        self._stop_child(End.CANCELLED)
        log.info("cancel requested", task_id=self.task_id)
        return True

    def lose(self) -> bool:
        """Another worker owns the entry now: stop its child, write nothing."""
        if self._state not in _LOSABLE:
            return False
        self._before_loss, self._state = self._state, RunState.LOST
        self._stop_child(End.LOST)
        return True

    def adopt(self, delivery: Delivery) -> None:
        """A reclaim handed the entry back to this worker (its own lease had lapsed): keep it
        under the new delivery count and lease token; a lost run is ours again."""
        self.delivery = dataclasses.replace(self.delivery, count=delivery.count, lease=delivery.lease)
        if self._state is RunState.LOST:
            self._state = self._before_loss

    def release(self) -> bool:
        """Handed back at shutdown: stop its child (or never start it)."""
        if self._state not in _RELEASABLE:
            return False
        self._state = RunState.RELEASED
        self._stop_child(End.SHUTDOWN)
        return True

    def finishing(self, outcome: Outcome | None = None) -> None:
        """Its outcome is known (``outcome``: how its child part ended, if it had one); its
        result is being written (a released run stays released)."""
        if outcome is not None:
            self.outcome = outcome
        if self._state is not RunState.RELEASED:
            self._state = RunState.FINISHING

    def done(self) -> None:
        """Ended: its slot is free (if it was not already) and nothing more happens to it."""
        self.slot.release()
        if self._state not in _ABANDONED:
            self._state = RunState.DONE

    def _stop_child(self, why: End) -> None:
        if self.job is not None:
            self.job.stop(why)

    def _expect(self, state: RunState) -> None:
        if self._state is not state:
            raise RuntimeError(f"run of {self.task_id} is {self._state.value}, not {state.value}")


def run_message(env: TaskEnvelope) -> RunMessage:
    """The ``run`` message a child executes."""
    message: RunMessage = {
        "type": "run", "id": env.id, "func": env.func_id, "kwargs": env.kwargs,
        "origin": _ORIGIN[env.origin], "originId": env.origin_id, "triggerTime": env.trigger_time,
        "cronExpr": env.cron_expr, "httpRequest": env.http_request, "callChain": env.call_chain,
        "traceId": env.trace_id, "queue": env.queue, "attempt": env.attempt, "eta": env.eta,
        "timeout": env.timeout}
    if env.draft_md5 is not None:  # a draft run (docs/worker.md, Draft runs)
        message["draft"] = env.draft_md5
    return message
