"""Firing cron jobs: shared by the Beat (scheduled fires) and the Server (``POST /api/v1/cron/{id}``).

A batch of fires goes through two steps:

1. **The store** (scheduled fires only): ``claim_cron_fires`` inserts (cron id, fire ms,
   task id) rows on a unique key, so two deployments that share only the database never
   both fire (the loser sees *duplicate*). The task id names the deployment (a random id
   kept in Redis at ``beat:deployment``), so a fire this deployment claimed but did not
   enqueue — its Beat was killed in between — is still *ours* and is fired by the next
   leader instead of being lost. While the store cannot take claims (unreachable, cannot
   write), the leader keeps firing for up to ``beat.store_outage_seconds`` (and
   ``UNCLAIMED_MAX`` fires): every fire counts as ours (the Redis guard below still fires
   each one once) and its claim is kept in memory and written when the store is back
   (:meth:`CronFirer.write_unclaimed`).
2. **Redis, one Lua script per chunk** (``lua/cron_fire.lua``), atomic per fire: refuse when
   the caller's Beat epoch is no longer current (*fenced*); *duplicate* when the per-fire
   guard ``beat:fired:{cron}:{ms}`` exists; apply ``overlapPolicy`` (``skip``: when the task
   in ``cron:running:{cron}`` has no result and is still running or queued, the fire is
   *skipped*); else enqueue the task (XLEN limit, ``enq`` marker, XADD) and set the guard,
   the running marker and the job's last-fire watermark ``beat:last``. A Beat killed at any
   point has fired a fire completely or not at all.

Skipped fires become task records with status ``skipped``. Manual runs (the Server) skip the
store claim and the watermark, dedup apart from scheduled fires (``#manual`` guard) and follow
the same overlap rule.

Task ids are deterministic (a ULID whose time is the fire time and whose random part is a
hash of deployment, cron id and fire time), so a re-sent fire is a no-op.

Funcs whose catalogue entry has ``extraConfig.fixedCronExpr`` are cron jobs as well:
:func:`fixed_job` builds the implicit job ``cron-fixed-<funcId>`` from the funcs table.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from importlib import resources
from typing import Any

import orjson
import redis.asyncio as aioredis

from fluxfunc_common.envelope import Origin, TaskEnvelope, TaskResult, TaskStatus
from fluxfunc_common.errors import ClientError
from fluxfunc_common.keys import Keys
from fluxfunc_common.logs import get_logger
from fluxfunc_common.settings import Settings
from fluxfunc_common.store import Store
from fluxfunc_common.streams import EnvelopeTemplate, StreamProtocol
from fluxfunc_common.tasks import build_envelope, func_timeout

FIXED_PREFIX = "cron-fixed-"
DEFAULT_DEDUP_TTL_MS = 10 * 60 * 1000
MANUAL_SUFFIX = "#manual"  # manual runs dedup apart from the scheduled fire of the same ms
SCRIPT_CHUNK = 500  # fires per script call: bounds the time Redis spends in one call
SEND_CONCURRENCY = 16  # script calls in flight at once (all of a 8,000-fire batch)
YIELD_EVERY = 1000  # fires encoded between two yields to the event loop
UNCLAIMED_MAX = 500_000  # fires made in a store outage whose claims wait in memory, at most
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]  # 10 bits → 2 characters

log = get_logger("cron")


class FireStatus(StrEnum):
    FIRED = "fired"  # enqueued
    DUPLICATE = "duplicate"  # this (job, fire time) was already fired (this Redis or the store)
    SKIPPED = "skipped"  # overlapPolicy skip: the previous run is still in flight
    FENCED = "fenced"  # the caller's Beat epoch is stale: it is no longer the leader
    FAILED = "failed"  # could not enqueue (queue full): not fired


@dataclass(frozen=True, slots=True)
class FireOutcome:
    cron_id: str
    fire_ms: int
    task_id: str
    status: FireStatus
    queue: str | None = None
    detail: str = ""


@dataclass(frozen=True, slots=True)
class FireRequest:
    """One fire to make: the job, its func (catalogue row) and the scheduled time."""

    job: dict[str, Any]
    func: dict[str, Any]
    fire_ms: int
    dedup_ttl_ms: int = DEFAULT_DEDUP_TTL_MS


# --- jobs -----------------------------------------------------------------------------------


def fixed_job(func: dict[str, Any]) -> dict[str, Any] | None:
    """The implicit cron job of a func published with ``fixed_cron_expr``, or None."""
    expr = (func.get("extraConfig") or {}).get("fixedCronExpr")
    if not expr:
        return None
    return {
        "id": FIXED_PREFIX + func["id"],
        "funcId": func["id"],
        "cronExpr": expr,
        "kwargs": {},
        "timezone": None,
        "misfirePolicy": "fireOnce",
        "overlapPolicy": "skip",
        "isDisabled": False,
        "expireTime": None,
        "createTime": func.get("createTime"),
        "updateTime": func.get("updateTime"),
        "implicit": True,
    }


def overlap_policy(job: dict[str, Any]) -> str:
    return "allow" if job.get("overlapPolicy") == "allow" else "skip"


def misfire_policy(job: dict[str, Any]) -> str:
    return "skip" if job.get("misfirePolicy") == "skip" else "fireOnce"


def fire_task_id(cron_id: str, fire_ms: int, *, manual: bool = False, deployment: str = "") -> str:
    """``task-<ULID>``: time = fire time, random part = hash of (deployment, cron id, fire ms)."""
    text = f"{deployment}\0{cron_id}\0{fire_ms}\0{int(manual)}"
    digest = hashlib.blake2b(text.encode(), digest_size=10).digest()
    value = (fire_ms << 80) | int.from_bytes(digest, "big")  # 128 bits → 26 chars, 2 per 10 bits
    return "task-" + "".join([_PAIRS[(value >> shift) & 1023] for shift in range(120, -1, -10)])


def _lua(name: str) -> str:
    return (resources.files("fluxfunc_common") / "lua" / name).read_text(encoding="utf-8")


# --- firing -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class JobTemplate:
    """What every fire of one job version shares: its envelope, encoded once."""

    job: dict[str, Any]
    func: dict[str, Any]
    stream: EnvelopeTemplate
    wait_s: float | None  # the func's ``expires``: queue deadline = fire time + this
    keys: tuple[str, str]  # the job's running marker and its queue's stream
    fields: tuple[str, str, str, str]  # overlap policy, running-marker ttl, func id, result ttl


@dataclass
class PreparedFires:
    """Fires claimed in the store and encoded, ready for :meth:`CronFirer.send`."""

    requests: Sequence[FireRequest]
    tids: list[str]
    templates: list[JobTemplate | None]  # None: claimed by another deployment
    chunks: list[list[Any]]  # the per-fire arguments of one script call each
    manual: bool


class CronFirer:
    """Fires batches of cron fires; one per process is enough (holds the loaded script and a
    :class:`JobTemplate` per job, so a fire costs two small JSON dumps, not a model)."""

    def __init__(
        self,
        redis: aioredis.Redis,
        keys: Keys,
        streams: StreamProtocol,
        store: Store,
        settings: Settings,
    ) -> None:
        self.redis, self.keys, self.streams, self.store, self.settings = redis, keys, streams, store, settings
        self._script = redis.register_script(_lua("cron_fire.lua"))
        self._prefixes = (keys.result(""), keys.running(""), keys.enqueued(""))
        self._deployment: str | None = None
        self._templates: dict[str, JobTemplate] = {}
        self._unclaimed: list[tuple[str, int, str]] = []  # fired in a store outage, not yet claimed
        self._store_failing_since: float | None = None  # monotonic s

    @property
    def unclaimed(self) -> int:
        """Fires made while the store could not take their claims, not yet written."""
        return len(self._unclaimed)

    def running_ttl_ms(self, func: dict[str, Any]) -> int:
        """How long a run may hold the overlap marker: wait in queue + timeout + a lease."""
        wait = (func.get("extraConfig") or {}).get("expires") or self.settings.tasks.result_ttl
        lease = self.settings.worker.lease_seconds
        seconds = float(wait) + func_timeout(func, self.settings.tasks) + 2 * lease
        return int(seconds * 1000)

    async def deployment(self) -> str:
        """This deployment's id (created on first use, then read once per process)."""
        if self._deployment is None:
            key = self.keys.beat_deployment()
            await self.redis.set(key, secrets.token_hex(8), nx=True)
            self._deployment = _text(await self.redis.get(key))
        return self._deployment

    async def fire_many(
        self, requests: Sequence[FireRequest], *, epoch: int | None, manual: bool = False
    ) -> list[FireOutcome]:
        """Fire each request (see the module docstring); one outcome per request, in order."""
        return await self.send(await self.prepare(requests, manual=manual), epoch=epoch)

    async def prepare(self, requests: Sequence[FireRequest], *, manual: bool = False) -> PreparedFires:
        """Step 1 and the encoding: claim in the store (scheduled fires), encode the envelopes
        and the script arguments. The Beat prepares a second's fires ahead of time."""
        deployment = "" if manual else await self.deployment()
        tids = [fire_task_id(r.job["id"], r.fire_ms, manual=manual, deployment=deployment) for r in requests]
        if manual or not requests:
            ours = [True] * len(requests)
        else:
            ours = await self._claim([(r.job["id"], r.fire_ms, tid)
                                      for r, tid in zip(requests, tids, strict=True)])
        templates = [self._template(r) if mine else None for r, mine in zip(requests, ours, strict=True)]
        chunks: list[list[Any]] = []
        meta: list[list[str]] = []
        blobs: list[bytes] = []
        for i, r in enumerate(requests):
            if i % YIELD_EVERY == YIELD_EVERY - 1:
                await asyncio.sleep(0)  # let a batch being sent meanwhile make progress
            # a job's fires stay in one call (chunks run concurrently; its fires are ordered)
            if len(meta) >= SCRIPT_CHUNK and r.job["id"] != requests[i - 1].job["id"]:
                chunks.append([orjson.dumps(meta), *blobs])
                meta, blobs = [], []
            fields, body, header = self._fire_args(r, tids[i], templates[i], manual)
            meta.append(fields)
            blobs += (body, header)
        if meta:
            chunks.append([orjson.dumps(meta), *blobs])
        return PreparedFires(requests, tids, templates, chunks, manual)

    async def _claim(self, claims: list[tuple[str, int, str]]) -> list[bool]:
        """Claim fires in the store; while it fails, for up to ``beat.store_outage_seconds``,
        every fire is ours and its claim waits in memory (see the module docstring)."""
        try:
            await self.write_unclaimed()
            ours = await self.store.claim_cron_fires(claims)
        except ClientError:
            raise
        except Exception as exc:
            now = time.monotonic()
            if self._store_failing_since is None:
                self._store_failing_since = now
                log.warning("the store cannot take cron fire claims; firing on, deduplicated in Redis",
                            error=str(exc) or repr(exc),
                            bound_seconds=self.settings.beat.store_outage_seconds)
            if (now - self._store_failing_since >= self.settings.beat.store_outage_seconds
                    or len(self._unclaimed) + len(claims) > UNCLAIMED_MAX):
                raise
            self._unclaimed += claims
            return [True] * len(claims)
        self._store_failing_since = None
        return ours

    async def write_unclaimed(self) -> None:
        """Write the claims of fires made while the store failed (no-op when none wait)."""
        if not self._unclaimed:
            return
        claims, self._unclaimed = self._unclaimed, []
        try:
            ours = await self.store.claim_cron_fires(claims)
        except BaseException:
            self._unclaimed = claims + self._unclaimed
            raise
        self._store_failing_since = None
        elsewhere = sum(not o for o in ours)
        log.info("cron fire claims written after a store outage", claims=len(claims), elsewhere=elsewhere)
        if elsewhere:
            log.warning("fires made in the store outage were claimed by another deployment too",
                        fires=elsewhere)

    async def send(self, prepared: PreparedFires, *, epoch: int | None) -> list[FireOutcome]:
        """Step 2 (the script calls), then the skipped records; outcomes in order."""
        replies = await self._run(prepared.chunks, epoch)
        outcomes = [self._outcome_of(prepared, i, status, detail)
                    for i, (status, detail) in enumerate(replies)]
        skipped = [(self._envelope(prepared, i), o) for i, o in enumerate(outcomes)
                   if o.status is FireStatus.SKIPPED]
        await self._record_skipped(skipped)
        _log(outcomes, prepared.manual)
        return outcomes

    def _outcome_of(self, p: PreparedFires, i: int, status: str, detail: str) -> FireOutcome:
        r, t, tid = p.requests[i], p.templates[i], p.tids[i]
        if t is None:
            return _outcome(r, tid, FireStatus.DUPLICATE, detail="claimed in the store by another deployment")
        queue = t.stream.envelope.queue
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

    def _template(self, r: FireRequest) -> JobTemplate:
        """The job's template (built and validated once per job and func version)."""
        job, func = r.job, r.func
        cached = self._templates.get(job["id"])
        if cached is not None and cached.job is job and cached.func is func:
            return cached
        if len(self._templates) > 100_000:
            self._templates.clear()
        env = build_envelope(
            func, dict(job.get("kwargs") or {}), origin=Origin.CRON_JOB, now=0.0,
            settings=self.settings.tasks, origin_id=job["id"], queue=job.get("queue") or None,
            task_id="task-template", cron_expr=job.get("cronExpr"), record_limit=job.get("taskRecordLimit"))
        stream = EnvelopeTemplate(env)
        template = JobTemplate(job, func, stream, env.expires,  # built at now = 0: expires = wait
                               (self.keys.cron_running(job["id"]), self.keys.queue(env.queue)),
                               (overlap_policy(job), str(self.running_ttl_ms(func)), env.func_id,
                                str(stream.result_ttl_ms)))
        self._templates[job["id"]] = template
        return template

    @staticmethod
    def _times(r: FireRequest, t: JobTemplate) -> tuple[float, float | None]:
        now = r.fire_ms / 1000
        return now, None if t.wait_s is None else now + t.wait_s

    def _envelope(self, p: PreparedFires, i: int) -> TaskEnvelope:
        t = p.templates[i]
        assert t is not None
        return t.stream.envelope_for(p.tids[i], *self._times(p.requests[i], t))

    def _fire_args(self, r: FireRequest, tid: str, t: JobTemplate | None,
                   manual: bool) -> tuple[list[str], bytes, bytes]:
        """One fire's entry of the script's ``fires`` array, its envelope JSON and its ``enq``
        header (see ``lua/cron_fire.lua``)."""
        k, cron_id = self.keys, r.job["id"]
        if t is None:  # claimed by another deployment: only mark it
            return [k.beat_fired(cron_id, r.fire_ms), "", "", "", cron_id, str(r.fire_ms),
                    str(r.dedup_ttl_ms), tid, "claimed", "0", "", "0"], b"", b""
        body, header = t.stream.render(tid, *self._times(r, t))
        guard = k.beat_fired(cron_id + (MANUAL_SUFFIX if manual else ""), r.fire_ms)
        policy, running_ttl, func_id, result_ttl = t.fields
        return [guard, *t.keys, k.enqueued(tid), cron_id, "" if manual else str(r.fire_ms),
                str(r.dedup_ttl_ms), tid, policy, running_ttl, func_id, result_ttl], body, header

    async def _run(self, chunks: list[list[Any]], epoch: int | None) -> list[tuple[str, str]]:
        """The ``cron_fire`` script once per chunk; one reply per fire, in order. Chunks go out
        concurrently (a few connections), so Redis runs the first while the next is packed."""
        keys = [self.keys.beat_epoch(), self.keys.beat_last()]
        head = ["" if epoch is None else epoch, *self._prefixes, self.settings.redis.queue_max_len,
                Origin.CRON_JOB.value]
        gate = asyncio.Semaphore(SEND_CONCURRENCY)

        async def one(chunk: list[Any]) -> Any:
            async with gate:  # Script: EVALSHA, and SCRIPT LOAD + retry on NOSCRIPT
                return await self._script(keys=keys, args=[*head, *chunk])

        results = await asyncio.gather(*(one(c) for c in chunks))
        return [(_text(s), _text(d)) for batch in results for s, d in batch]

    async def _record_skipped(self, items: list[tuple[TaskEnvelope, FireOutcome]]) -> None:
        if not items:
            return
        records = []
        for env, outcome in items:
            result = TaskResult.for_envelope(env, TaskStatus.SKIPPED, end_time=env.trigger_time,
                                             exception=f"Skipped: {outcome.detail}")
            records.append(result.model_dump(by_alias=True, mode="json"))
        await self.store.insert_task_records(records)


def _outcome(r: FireRequest, tid: str, status: FireStatus, *, queue: str | None = None,
             detail: str = "") -> FireOutcome:
    return FireOutcome(cron_id=r.job["id"], fire_ms=r.fire_ms, task_id=tid, status=status,
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


def count_by_status(outcomes: Sequence[FireOutcome]) -> dict[str, int]:
    """``{"fired": n, "skipped": m, …}`` for summary log lines and tests."""
    return dict(Counter(o.status.value for o in outcomes))


def _text(value: Any) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else str(value)


async def fire(
    redis: aioredis.Redis,
    keys: Keys,
    streams: StreamProtocol,
    store: Store,
    settings: Settings,
    job: dict[str, Any],
    func: dict[str, Any],
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
