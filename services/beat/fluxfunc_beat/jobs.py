"""The leader's in-memory job table: every enabled cron job with its next fire time.

Jobs sit in buckets keyed by their next fire (ms) with a heap of bucket times, so a tick
touches only the jobs that are due; 10,000 jobs cost nothing between their fires. Jobs with
the same ``(cronExpr, timezone)`` share one parsed :class:`Schedule`, and next-fire results
are memoised, so 10,000 jobs on one expression cost one croniter step per second.

Pure logic (no I/O, no clock): the Beat passes Redis-time ``now_ms`` in.

Late and missed fires. A due fire at most ``late_ms`` old (the Beat passes lease + 10 s,
longer than any leader change takes) is **late**: it is fired, whatever the policy, so a
takeover or a slow tick loses nothing. An older one is **missed** (every Beat was down, or a
job was just loaded with fires due since its last fire) and follows the job's
``misfirePolicy``: ``fireOnce`` fires the most recent missed fire once — unless a late fire
of the same job is being fired anyway — and ``skip`` fires none.

Overload. :meth:`JobTable.pop_due` takes about ``limit`` fires at a time (the Beat prepares
and sends them in bounded batches), oldest first, so memory stays flat whatever is due. A job
the table already scheduled (not one just loaded, which catches up over the late window: a
takeover loses nothing) popped more than ``max_lag_ms`` after its due time — the Beat is
behind — treats its fires older than that as missed: its ``misfirePolicy`` decides, so the
backlog never grows past ``max_lag_ms`` of fires per job (:attr:`JobTable.shed` counts such
pops; :attr:`JobTable.lag_ms` is how late the last pop took its jobs).
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from fluxfunc_common import schedule as sched
from fluxfunc_common.clock import epoch
from fluxfunc_common.cronplan import CronPlan, plan_for
from fluxfunc_common.models import CronJob, Func

DEFAULT_LATE_MS = 25_000
MAX_FIRES_PER_POP = 1000  # per job and tick; bounds a 6-field job with a huge late window
MIN_DEDUP_TTL_MS = 60_000
MAX_DEDUP_TTL_MS = 86_400_000


Signature = tuple[str, str, float | None, bool, object, object]  # what a reschedule depends on


@dataclass
class JobState:
    job: CronJob
    func: Func | None
    plan: CronPlan  # the configured schedule, a script's override, a timed pause
    next_ms: int | None
    expire_ms: int | None
    signature: Signature
    catchup: bool = True  # just loaded: catches up over the late window, not the lag bound


@dataclass(slots=True)  # not frozen: one per fire, and a frozen __init__ costs three times more
class Due:
    """A fire to make now: the job (and its func), the fire time, and its dedup TTL."""

    job: CronJob
    func: Func | None
    fire_ms: int
    dedup_ttl_ms: int


def epoch_ms(value: object) -> int | None:
    """A store timestamp (epoch s number or ISO text) as epoch ms, or None."""
    seconds = epoch(value)
    return None if seconds is None else int(seconds * 1000)


def with_fixed_expr(job: CronJob, func: Func | None) -> CronJob:
    """The job as it fires: a func published with ``fixed_cron_expr`` fixes the expression
    of every cron job on it (as in DataFlux Func: the func's fixed expression wins over the
    job's own), so a re-publish with another expression reschedules them."""
    fixed = func.options.fixed_cron_expr if func is not None else None
    if not fixed or fixed == job.cron_expr:
        return job
    return job.model_copy(update={"cron_expr": fixed})


def _signature(job: CronJob, tz: str) -> Signature:
    overrides = (job.dynamic_cron_expr, job.dynamic_cron_expr_expire_time, job.pause_expire_time)
    return (job.cron_expr, tz, job.expire_time, job.is_disabled, job.update_time, overrides)


class JobTable:
    """Enabled jobs by next fire; see the module docstring."""

    def __init__(self, default_tz: str = "UTC", *, late_ms: int = DEFAULT_LATE_MS) -> None:
        self.default_tz = default_tz
        self.late_ms = late_ms
        self.jobs: dict[str, JobState] = {}
        self._buckets: dict[int, list[str]] = {}
        self._heap: list[int] = []
        self._memo: dict[tuple[sched.Schedule, int], int | None] = {}
        self._latest_memo: dict[tuple[sched.Schedule, int, int], int | None] = {}
        self.invalid: dict[str, str] = {}  # cron id → why it is not scheduled
        self.shed = 0  # job pops whose older fires were missed because the Beat was behind
        self.lag_ms = 0  # how late the last pop took the jobs it had scheduled (behind: > 0)

    def __len__(self) -> int:
        return len(self.jobs)

    # --- changes ----------------------------------------------------------------------------
    def upsert(self, job: CronJob, func: Func | None, *, last_ms: int | None, now_ms: int) -> bool:
        """Add or replace a job; returns True when it is scheduled. ``last_ms`` is its last fire."""
        cron_id, job = job.id, with_fixed_expr(job, func)
        tz = job.timezone or self.default_tz
        signature = _signature(job, tz)
        current = self.jobs.get(cron_id)
        if current is not None and current.signature == signature:
            current.job, current.func = job, func  # kwargs, func, policies: no reschedule
            return current.next_ms is not None
        self.remove(cron_id)
        if job.is_disabled or not job.cron_expr:
            return False
        try:
            schedule = sched.parse(job.cron_expr, tz)
        except sched.ScheduleError as exc:
            self.invalid[cron_id] = exc.message
            return False
        plan = plan_for(schedule, job.dynamic_cron_expr, job.dynamic_cron_expr_expire_time,
                        job.pause_expire_time, tz)
        changed = epoch_ms(job.update_time) or epoch_ms(job.create_time)
        known = [x for x in (last_ms, changed) if x is not None]
        base = max(known) if known else now_ms
        state = JobState(job, func, plan, None, _expire_ms(job), signature)
        state.next_ms = self._after(state, base)
        self.jobs[cron_id] = state
        return self._push(cron_id, state)

    def remove(self, cron_id: str) -> None:
        """Forget a job (its bucket entry goes stale and is ignored)."""
        self.jobs.pop(cron_id, None)
        self.invalid.pop(cron_id, None)

    def reject(self, cron_id: str, reason: str) -> None:
        """A job that cannot be scheduled (its row does not parse): listed in ``invalid``."""
        self.remove(cron_id)
        self.invalid[cron_id] = reason

    def update_func(self, func: Func) -> None:
        """A func was re-published: jobs on it use the new catalogue row."""
        for state in self.jobs.values():
            if state.job.func_id == func.id:
                state.func = func

    # --- time ---------------------------------------------------------------------------------
    def next_due_ms(self) -> int | None:
        """When the earliest job is due (None when nothing is scheduled)."""
        while self._heap:
            at = self._heap[0]
            ids = self._buckets.get(at)
            if ids and any(self._live(i, at) for i in ids):
                return at
            heapq.heappop(self._heap)
            self._buckets.pop(at, None)
        return None

    def pop_due(self, now_ms: int, *, limit: int | None = None, max_lag_ms: int | None = None) -> list[Due]:
        """The fires due at ``now_ms`` (late ones included, misfire policy applied), oldest
        due jobs first, in fire time order per job, about ``limit`` at most (a job's fires are
        never split); popped jobs are rescheduled after ``now_ms``. ``max_lag_ms``: see the
        module docstring."""
        if len(self._memo) > 100_000:
            self._memo.clear()
        if len(self._latest_memo) > 10_000:
            self._latest_memo.clear()
        self.lag_ms = 0
        out: list[Due] = []
        while self._heap and self._heap[0] <= now_ms and (limit is None or len(out) < limit):
            at = self._heap[0]
            bucket = self._buckets.get(at, [])
            while bucket and (limit is None or len(out) < limit):
                cron_id = bucket.pop()
                state = self.jobs.get(cron_id)
                if state is None or state.next_ms != at:
                    continue
                out += self._advance(state, now_ms, max_lag_ms)
                self._push(cron_id, state)
            if not bucket:
                heapq.heappop(self._heap)
                self._buckets.pop(at, None)
        return out

    def due(self, now_ms: int) -> bool:
        """True when some job is due at ``now_ms``."""
        at = self.next_due_ms()
        return at is not None and at <= now_ms

    def _advance(self, state: JobState, now_ms: int, max_lag_ms: int | None = None) -> list[Due]:
        """The fires to make for a due job; moves it to its first fire after ``now_ms``."""
        first = state.next_ms
        assert first is not None
        cutoff = self._cutoff(state, first, now_ms, max_lag_ms)
        missed: tuple[int, int] | None = None  # (lo, hi]: the missed fires, if any
        at: int | None = first
        if first < cutoff:  # some fires are missed: keep only the latest of them, for fireOnce
            missed = (first - 1, cutoff - 1)
            at = self._after(state, cutoff - 1)
        fires: list[int] = []
        while at is not None and at <= now_ms and len(fires) < MAX_FIRES_PER_POP:
            fires.append(at)
            at = self._after(state, at)
        if at is not None and at <= now_ms:
            at = self._after(state, now_ms)
        state.next_ms = at
        if not fires and missed is not None and state.job.misfire_policy == "fireOnce":
            latest = state.plan.latest_fire(*missed, self._latest)  # only when it is fired
            fires = [] if latest is None else [latest]
        if state.expire_ms is not None:
            fires = [f for f in fires if f <= state.expire_ms]
            if at is not None and at > state.expire_ms:
                state.next_ms = None
        return [Due(_job_at(state, f), state.func, f, self._dedup_ttl(f, state.next_ms)) for f in fires]

    def _cutoff(self, state: JobState, first: int, now_ms: int, max_lag_ms: int | None) -> int:
        """Fires before this are missed: the late window, or the lag bound when behind."""
        cutoff = now_ms - self.late_ms
        if state.catchup:  # its first pop since loaded: fires since its last fire are not lag
            state.catchup = False
            return cutoff
        self.lag_ms = max(self.lag_ms, now_ms - first)
        if max_lag_ms is not None and first < now_ms - max_lag_ms:
            self.shed += 1
            return max(cutoff, now_ms - max_lag_ms)
        return cutoff

    def _latest(self, schedule: sched.Schedule, lo_ms: int, hi_ms: int) -> int | None:
        key = (schedule, lo_ms, hi_ms)  # a behind Beat asks it for many jobs of one bucket
        if key not in self._latest_memo:
            self._latest_memo[key] = _latest(schedule, lo_ms, hi_ms)
        return self._latest_memo[key]

    def _after(self, state: JobState, after_ms: int) -> int | None:
        """The job's first fire after ``after_ms``, across its override and pause."""
        return state.plan.next_fire(after_ms, self._next)

    def _next(self, schedule: sched.Schedule, after_ms: int) -> int | None:
        key = (schedule, after_ms)
        if key in self._memo:
            return self._memo[key]
        at = schedule.next_fire(after_ms / 1000)
        value = None if at is None else round(at * 1000)
        self._memo[key] = value
        return value

    def _push(self, cron_id: str, state: JobState) -> bool:
        at = state.next_ms
        if at is None or (state.expire_ms is not None and at > state.expire_ms):
            return False
        bucket = self._buckets.get(at)
        if bucket is None:
            self._buckets[at] = bucket = []
            heapq.heappush(self._heap, at)
        bucket.append(cron_id)
        return True

    def _dedup_ttl(self, fire_ms: int, next_ms: int | None) -> int:
        """Keep the per-fire guard ~3 periods (1 min … 1 day, and past the late window)."""
        period = (next_ms - fire_ms) if next_ms is not None else MAX_DEDUP_TTL_MS
        floor = max(MIN_DEDUP_TTL_MS, 2 * self.late_ms)
        return min(max(3 * period, floor), MAX_DEDUP_TTL_MS)

    def _live(self, cron_id: str, at: int) -> bool:
        state = self.jobs.get(cron_id)
        return state is not None and state.next_ms == at


def _job_at(state: JobState, fire_ms: int) -> CronJob:
    """The job as a fire at ``fire_ms`` carries it: with the override's expression while that
    governs (the task's ``_DFF_CRON_EXPR``)."""
    expr = state.job.override_at(fire_ms / 1000)
    if expr is None or expr == state.job.cron_expr:
        return state.job
    return state.job.model_copy(update={"cron_expr": expr})


def _latest(schedule: sched.Schedule, lo_ms: int, hi_ms: int) -> int | None:
    latest = sched.latest_fire(schedule, None, lo_ms / 1000, hi_ms / 1000)
    return None if latest is None else round(latest * 1000)


def _expire_ms(job: CronJob) -> int | None:
    return None if job.expire_time is None else int(job.expire_time * 1000)


