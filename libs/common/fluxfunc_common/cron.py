"""Firing cron jobs: shared by the Beat (scheduled fires) and the Server (``POST /api/v1/cron/{id}``).

A batch of fires goes through two steps:

1. **The store** (scheduled fires only): each fire is claimed in the store, so two deployments
   that share only the database never both fire it; while the store cannot take claims, the
   leader fires on for a bounded time and writes the claims later
   (:mod:`fluxfunc_common.cronclaims`).
2. **Redis, one Lua script per chunk** (``lua/cron_fire.lua``, :mod:`fluxfunc_common.cronscript`),
   atomic per fire: refuse when the caller's Beat epoch is no longer current (*fenced*);
   *duplicate* when the per-fire guard ``beat:fired:{cron}:{ms}`` exists; apply
   ``overlapPolicy`` (``skip``: when the task in ``cron:running:{cron}`` has no result and is
   still running or queued, the fire is *skipped*); else enqueue the task (XLEN limit, ``enq``
   marker, XADD) and set the guard, the running marker and the job's last-fire watermark
   ``beat:last``. A Beat killed at any point has fired a fire completely or not at all.

Skipped fires become task records with status ``skipped``. Manual runs (the Server) skip the
store claim and the watermark, dedup apart from scheduled fires (``#manual`` guard) and follow
the same overlap rule. Task ids are deterministic (:func:`~fluxfunc_common.cronscript.fire_task_id`),
so a re-sent fire is a no-op.

A func's ``delayed_cron_job`` (``extraConfig.delayedCronExpr``, seconds) turns each scheduled
fire into one run per delay: a run at 0 is enqueued at once, the others as delayed tasks due at
fire + delay (the promoter moves them), all in the same script call as the fire, each with its
own task id and guard (:func:`~fluxfunc_common.cronscript.run_delays`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

import redis.asyncio as aioredis

from fluxfunc_common.clock import Clock
from fluxfunc_common.cronclaims import FireClaims
from fluxfunc_common.cronscript import (
    FIRED,
    STATUS_OF,
    Chunk,
    Epochs,
    FireRequest,
    FireScript,
    JobTemplate,
    fire_task_id,
    run_delays,
)
from fluxfunc_common.envelope import TaskEnvelope, TaskResult, TaskStatus
from fluxfunc_common.keys import Keys
from fluxfunc_common.lane import CommandBatches, Packed
from fluxfunc_common.logs import get_logger
from fluxfunc_common.models import CronJob, Func
from fluxfunc_common.settings import Settings
from fluxfunc_common.store import Store, task_record
from fluxfunc_common.streams import StreamProtocol

__all__ = ["CronFirer", "FireCounts", "FireOutcome", "FireRequest", "FireStatus", "PreparedFires", "fire",
           "fire_task_id"]

log = get_logger("cron")


class FireStatus(StrEnum):
    FIRED = "fired"  # enqueued
    DUPLICATE = "duplicate"  # this (job, fire time) was already fired (this Redis or the store)
    SKIPPED = "skipped"  # overlapPolicy skip: the previous run is still in flight
    FENCED = "fenced"  # the caller's Beat epoch is stale: it is no longer the leader
    FAILED = "failed"  # could not enqueue (queue full): not fired


@dataclass(slots=True)  # not frozen: one per fire (treated as immutable)
class FireOutcome:
    cron_id: str
    fire_ms: int
    task_id: str
    status: FireStatus
    queue: str | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class FireCounts:
    """What a batch did (:meth:`CronFirer.send_counted`): outcomes by status, fenced partitions."""

    counts: Counter[str]
    fenced: set[int]


@dataclass
class PreparedFires:
    """Fires claimed in the store and encoded, ready for :meth:`CronFirer.send`."""

    requests: Sequence[FireRequest]
    tids: list[str]
    templates: list[JobTemplate | None]  # None: claimed by another deployment
    chunks: list[tuple[int, Chunk]]  # (partition, the per-fire arguments) of one script call each
    manual: bool
    packed: list[Packed | None] = field(default_factory=list)  # the calls packed ahead (pack)

    def envelope(self, i: int) -> TaskEnvelope:
        """The envelope of fire ``i`` (one this deployment fires) as a model."""
        t = self.templates[i]
        assert t is not None
        return t.envelope(self.tids[i], self.requests[i].fire_ms, self.requests[i].delay_s)


class CronFirer:
    """Fires batches of cron fires; one per process is enough (holds the loaded script, the
    claims of a store outage and a template per job)."""

    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        streams: StreamProtocol,
        store: Store,
        settings: Settings,
        *,
        clock: Clock | None = None,
        lane: CommandBatches | None = None,
    ) -> None:
        """``lane``: the Beat's own connection for the moment's script calls (see :meth:`pack`);
        without one the calls go out on pooled connections."""
        self.redis, self.keys, self.streams, self.store, self.settings = redis, keys, streams, store, settings
        self.claims = FireClaims(redis, keys, store, settings, clock=clock)
        self.script = FireScript(redis, keys, settings, lane)

    @property
    def unclaimed(self) -> int:
        """Fires made while the store could not take their claims, not yet written."""
        return self.claims.unclaimed

    async def deployment(self) -> str:
        """This deployment's id (named in the task ids of its scheduled fires)."""
        return await self.claims.deployment()

    async def write_unclaimed(self) -> None:
        """Write the claims of fires made while the store failed (no-op when none wait)."""
        await self.claims.write_unclaimed()

    async def fire_many(
        self, requests: Sequence[FireRequest], *, epoch: Epochs, manual: bool = False
    ) -> list[FireOutcome]:
        """Fire each request (see the module docstring); one outcome per request, in order."""
        return await self.send(await self.prepare(requests, manual=manual), epoch=epoch)

    async def prepare(self, requests: Sequence[FireRequest], *, manual: bool = False) -> PreparedFires:
        """Step 1 and the encoding: claim in the store (scheduled fires), encode the envelopes
        and the script arguments. The Beat prepares a second's fires ahead of time."""
        deployment = "" if manual else await self.deployment()
        tids = [fire_task_id(r.job.id, r.fire_ms, manual=manual, deployment=deployment) for r in requests]
        if manual or not requests:
            ours = [True] * len(requests)
        else:
            ours = await self.claims.claim([(r.job.id, r.fire_ms, tid)
                                            for r, tid in zip(requests, tids, strict=True)])
        templates = [self.script.template(r) if mine else None
                     for r, mine in zip(requests, ours, strict=True)]
        ahead = None
        if not manual:  # a manual run is one run now, as in DataFlux Func
            requests, tids, templates = _with_delays(requests, tids, templates, deployment)
        rendered = self.script.render(requests, tids, templates)
        if not manual and requests:  # the guards too, before the moment (see cron_fire.lua)
            guards = [self.script.guard(r, manual) for r in requests]
            ahead = await self.script.claim(requests, guards, tids, templates, rendered)
        chunks = await self.script.chunks(requests, tids, templates, manual, ahead, rendered)
        return PreparedFires(requests, tids, templates, chunks, manual)

    async def send(self, prepared: PreparedFires, *, epoch: Epochs) -> list[FireOutcome]:
        """Step 2 (the script calls), then the skipped records; outcomes in order. ``epoch``:
        the chores lease's epoch, None (not fenced: a manual run), or partition → epoch (the
        requests' partitions; one missing is *fenced*)."""
        replies = await self.script.run(prepared.chunks, epoch)
        outcomes = [_outcome_of(prepared, i, status, detail) for i, (status, detail) in enumerate(replies)]
        skipped = [(prepared.envelope(i), o) for i, o in enumerate(outcomes)
                   if o.status is FireStatus.SKIPPED]
        await self._record_skipped(skipped)
        _log(outcomes, prepared.manual)
        return outcomes

    async def pack(self, prepared: PreparedFires, *, epoch: Epochs) -> None:
        """Pack the script calls of ``prepared`` now, fenced by ``epoch`` (the epochs held now;
        one changed by the send is packed again then), so sending them only writes bytes."""
        prepared.packed = await self.script.pack(prepared.chunks, epoch)

    async def send_counted(self, batches: Sequence[PreparedFires], *, epoch: Epochs) -> FireCounts:
        """:meth:`send` for a caller that needs only the counts (the Beat), of several batches
        sent as one (their calls in order, back to back): a fire that simply fired costs no
        outcome object; the others are recorded and logged as by :meth:`send`."""
        codes, details = await self.script.run_codes(  # a batch not packed ahead: packed now
            [c for b in batches for c in b.chunks], epoch,
            [p for b in batches for p in (b.packed or [None] * len(b.chunks))])
        counts: Counter[str] = Counter()
        fenced: set[int] = set()
        skipped: list[tuple[TaskEnvelope, FireOutcome]] = []
        rest, start = iter(details), 0
        for prepared in batches:
            templates, end = prepared.templates, start + len(prepared.requests)
            mine, unusual = codes[start:end], []
            for i in [i for i, c in enumerate(mine) if c != FIRED or templates[i] is None]:
                status = STATUS_OF[mine[i]]
                detail = "" if status == "fired" else next(rest)
                unusual.append(o := _outcome_of(prepared, i, status, detail))
                counts[o.status.value] += 1
                if o.status is FireStatus.SKIPPED:
                    skipped.append((prepared.envelope(i), o))
                elif o.status is FireStatus.FENCED:
                    fenced.add(prepared.requests[i].partition)
            counts["fired"] += end - start - len(unusual)
            _log(unusual, prepared.manual)
            start = end
        await self._record_skipped(skipped)
        return FireCounts(counts, fenced)

    async def _record_skipped(self, items: list[tuple[TaskEnvelope, FireOutcome]]) -> None:
        if not items:
            return
        records = []
        for env, outcome in items:
            result = TaskResult.for_envelope(env, TaskStatus.SKIPPED, end_time=env.trigger_time,
                                             exception=f"Skipped: {outcome.detail}")
            records.append(task_record(result))
        await self.store.insert_task_records(records)


def _with_delays(requests: Sequence[FireRequest], tids: list[str], templates: list[JobTemplate | None],
                 deployment: str) -> tuple[Sequence[FireRequest], list[str], list[JobTemplate | None]]:
    """Each fire as its runs (:func:`~fluxfunc_common.cronscript.run_delays`), next to each
    other (one script call makes them all); unchanged when no func has delays."""
    if all(not r.func.options.delayed_cron_expr for r in requests):
        return requests, tids, templates
    runs: list[FireRequest] = []
    run_tids: list[str] = []
    run_templates: list[JobTemplate | None] = []
    for r, tid, t in zip(requests, tids, templates, strict=True):
        for delay in run_delays(r.func):
            runs.append(replace(r, delay_s=delay) if delay else r)
            run_tids.append(fire_task_id(r.job.id, r.fire_ms, deployment=deployment, delay_s=delay)
                            if delay else tid)
            run_templates.append(t)
    return runs, run_tids, run_templates


def _outcome_of(p: PreparedFires, i: int, status: str, detail: str) -> FireOutcome:
    """The outcome of fire ``i`` from the script's reply."""
    r, t, tid = p.requests[i], p.templates[i], p.tids[i]
    if t is None:
        return _outcome(r, tid, FireStatus.DUPLICATE, detail="claimed in the store by another deployment")
    queue = t.stream.queue
    if status == "fired":
        return _outcome(r, tid, FireStatus.FIRED, queue=queue)
    if status == "duplicate":
        return _outcome(r, detail or tid, FireStatus.DUPLICATE, queue=queue)
    if status == "skipped":
        return _outcome(r, tid, FireStatus.SKIPPED, queue=queue,
                        detail=f"previous run {detail} has not finished (overlapPolicy skip)")
    if status == "full":
        return _outcome(r, tid, FireStatus.FAILED, queue=queue, detail=f"queue {queue} is full")
    return _outcome(r, tid, FireStatus.FENCED, queue=queue)


def _outcome(r: FireRequest, tid: str, status: FireStatus, *, queue: str | None = None,
             detail: str = "") -> FireOutcome:
    return FireOutcome(cron_id=r.job.id, fire_ms=r.fire_ms, task_id=tid, status=status,
                       queue=queue, detail=detail)


def _log(outcomes: list[FireOutcome], manual: bool) -> None:
    """A line for each manual run and each unusual outcome; scheduled fires that simply fired
    get none (the Beat logs a summary a minute), so 1,000 fires/s are not 1,000 lines/s."""
    for o in outcomes:
        if o.status is FireStatus.FIRED and not manual:
            continue
        level = log.warning if o.status is FireStatus.FAILED else log.info
        level("cron fire", cron_id=o.cron_id, fire_ms=o.fire_ms, task_id=o.task_id, status=o.status.value,
              queue=o.queue, manual=manual, **({"detail": o.detail} if o.detail else {}))


async def fire(
    redis: aioredis.Redis,
    keys: Keys,
    streams: StreamProtocol,
    store: Store,
    settings: Settings,
    job: CronJob,
    func: Func,
    *,
    fire_ms: int,
    epoch: int | None = None,
    manual: bool = False,
) -> FireOutcome:
    """Fire one cron job once (the Server's manual run: ``manual=True``, ``fire_ms`` = now).

    ``epoch`` fences a Beat leader (None: not fenced). Disabled/expired checks are the
    caller's: this function fires what it is given.
    """
    firer = CronFirer(redis, keys, streams, store, settings)
    outcomes = await firer.fire_many([FireRequest(job, func, fire_ms)], epoch=epoch, manual=manual)
    return outcomes[0]
