"""The ``cron_fire.lua`` script of cron firing (:mod:`fluxfunc_common.cron`): fire task ids,
the per-job templates, the script's per-fire arguments, and the script calls.

Task ids are deterministic (a ULID whose time is the fire time and whose random part is a
hash of deployment, cron id and fire time), so a re-sent fire is a no-op. What every fire of
one job version shares — its envelope, its keys, its policy fields — is encoded once per job
(:class:`JobTemplate`), so a fire costs two small JSON dumps, not a model. The argument layout
is documented in ``lua/cron_fire.lua``.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from itertools import groupby
from typing import Any

import orjson
import redis.asyncio as aioredis
from redis.exceptions import NoScriptError

from fluxfunc_common import luascripts
from fluxfunc_common.envelope import Origin, TaskEnvelope
from fluxfunc_common.keys import Keys
from fluxfunc_common.lane import CommandBatches, Packed
from fluxfunc_common.models import CronJob, Func
from fluxfunc_common.settings import Settings
from fluxfunc_common.streams import EnvelopeTemplate
from fluxfunc_common.tasks import build_envelope
from fluxfunc_common.text import as_optional_text

DEFAULT_DEDUP_TTL_MS = 10 * 60 * 1000
MANUAL_SUFFIX = "#manual"  # manual runs dedup apart from the scheduled fire of the same ms
SCRIPT_CHUNK = 500  # fires per script call: bounds the time Redis spends in one call
SEND_CONCURRENCY = 16  # script calls in flight at once (all of a 8,000-fire batch)
YIELD_EVERY = 1000  # fires encoded between two yields to the event loop
CLAIM_CHUNK = 1000  # guards claimed ahead per beat_claim.lua call
ORD_ONE = ord("1")
TEMPLATES_MAX = 100_000  # job templates kept; past that the cache starts over
_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_TIME_PARTS: dict[int, str] = {}  # fire ms → "task-" + its 10 characters

FIRED = ord("F")
STATUS_OF = {ord("F"): "fired", ord("N"): "fenced", ord("D"): "duplicate", ord("S"): "skipped",
             ord("X"): "full"}  # the script's one-character status codes

ScriptArg = bytes | str | int
Chunk = list[ScriptArg]  # the per-fire arguments of one script call
Profile = tuple[str, ...]  # what fires of one script call share (see ``lua/cron_fire.lua``)
Rendered = tuple[bytes, bytes]  # a fire's envelope JSON and its ``enq`` header
Epochs = int | None | Mapping[int, int]  # one epoch (None: not fenced), or partition → epoch


@dataclass(slots=True)  # not frozen: built per fire, and a frozen __init__ costs three times more
class FireRequest:
    """One fire to make: the job, its func and the scheduled time (treated as immutable)."""

    job: CronJob
    func: Func
    fire_ms: int
    dedup_ttl_ms: int = DEFAULT_DEDUP_TTL_MS
    delay_s: int = 0  # a delayed run of this fire (``delayed_cron_job``): due at fire + delay
    partition: int = -1  # the Beat partition it is fenced by (-1: the chores lease's epoch)

    @property
    def due_ms(self) -> int:
        return self.fire_ms + self.delay_s * 1000


def run_delays(func: Func) -> tuple[int, ...]:
    """The runs of each fire, in seconds after it: the func's ``delayed_cron_job`` (sorted,
    once each) — as in DataFlux Func the list replaces the run at 0, so ``[0, 60]`` runs at
    the fire and a minute later and ``[60]`` only a minute later — else ``(0,)``."""
    delays = func.options.delayed_cron_expr
    return tuple(sorted(set(delays))) if delays else (0,)


@dataclass(frozen=True, slots=True)
class JobTemplate:
    """What every fire of one job version shares: its envelope, encoded once."""

    job: CronJob
    func: Func
    stream: EnvelopeTemplate
    wait_s: float | None  # the func's ``expires``: queue deadline = fire time + this
    keys: tuple[str, str]  # the job's running marker and its queue's stream
    delayed_keys: tuple[str, str]  # its queue's delayed set and delayed bodies
    fields: tuple[str, str, str, str]  # overlap policy, running-marker ttl, func id, result ttl

    def times(self, fire_ms: int, delay_s: int = 0) -> tuple[float, float | None]:
        """(trigger time, queue deadline) of the fire at ``fire_ms`` (its run ``delay_s``
        later: the deadline counts from the run, as in DataFlux Func)."""
        now = fire_ms / 1000
        return now, None if self.wait_s is None else now + delay_s + self.wait_s

    def envelope(self, task_id: str, fire_ms: int, delay_s: int = 0) -> TaskEnvelope:
        """The envelope of one fire as a model (for the rare fire that needs one)."""
        env = self.stream.envelope_for(task_id, *self.times(fire_ms, delay_s))
        return env.model_copy(update={"eta": (fire_ms / 1000 + delay_s) if delay_s else None})


def fire_task_id(cron_id: str, fire_ms: int, *, manual: bool = False, deployment: str = "",
                 delay_s: int = 0) -> str:
    """``task-<ULID>``: time = fire time, random part = hash of (deployment, cron id, fire ms
    and, for a delayed run, its delay)."""
    text = f"{deployment}\0{cron_id}\0{fire_ms}\0{int(manual)}" + (f"\0{delay_s}" if delay_s else "")
    digest = hashlib.blake2b(text.encode(), digest_size=10).digest()
    # 128 bits → 26 Crockford characters: 10 for the 48-bit time (the fires of one second
    # share them), 16 for the 80-bit hash (one character, then five of 3 per 15 bits)
    v, t = int.from_bytes(digest, "big"), _triples()
    return "".join((_time_part(fire_ms), _CROCKFORD[v >> 75], t[(v >> 60) & 32767], t[(v >> 45) & 32767],
                    t[(v >> 30) & 32767], t[(v >> 15) & 32767], t[v & 32767]))


def _chunk(profiles: dict[Profile, int], fires: list[int | str], blobs: list[ScriptArg]) -> Chunk:
    """One script call's per-fire arguments: profiles, fires, then envelope and header per fire.
    ``fires`` has four items per fire (profile, cron id, fire ms, task id); the script takes
    them as runs of fires sharing a profile and a fire time, then the cron ids, the task ids."""
    groups: list[int | str] = []
    for (profile, fire_ms), run in groupby(zip(fires[0::4], fires[2::4], strict=True)):
        groups += (profile, fire_ms, len(list(run)))
    return [orjson.dumps(list(profiles)), orjson.dumps([groups, fires[1::4], fires[3::4]]), *blobs]


@cache
def _triples() -> list[str]:
    """15 bits → 3 Crockford characters (built on first use: 32,768 short strings)."""
    return [a + b + c for a in _CROCKFORD for b in _CROCKFORD for c in _CROCKFORD]


def _time_part(fire_ms: int) -> str:
    part = _TIME_PARTS.get(fire_ms)
    if part is None:
        if len(_TIME_PARTS) > 1000:
            _TIME_PARTS.clear()
        part = _TIME_PARTS[fire_ms] = "task-" + "".join([_CROCKFORD[(fire_ms >> shift) & 31]
                                                         for shift in range(45, -1, -5)])
    return part


class FireScript:
    """The job templates and the ``cron_fire.lua`` calls of one firer."""

    def __init__(self, redis: aioredis.Redis, keys: Keys, settings: Settings,
                 lane: CommandBatches | None = None) -> None:
        self.keys, self.settings = keys, settings
        self._redis, self._lane = redis, lane  # lane: the Beat's calls, pipelined (see run_codes)
        self._loaded = False  # the script was loaded into Redis by this firer (pack)
        self._script = luascripts.register(redis, "cron_fire")
        self._claim = luascripts.register(redis, "beat_claim")
        # the script arguments every call shares after the epoch (see ``lua/cron_fire.lua``):
        # key prefixes, the stream length limit, the origin, and the marker and guard key
        # prefixes the script puts before a cron id
        self._tail: list[ScriptArg] = [
            keys.result(""), keys.running(""), keys.enqueued(""), settings.redis.queue_max_len,
            Origin.CRON_JOB.value, keys.cron_running(""), keys.beat_fired("", 0).removesuffix(":0")]
        self._templates: dict[str, JobTemplate] = {}

    def running_ttl_ms(self, func: Func) -> int:
        """How long a run may hold the overlap marker: wait in queue + timeout + a lease (a
        func without a queue deadline: the result TTL stands for its wait)."""
        timeout = func.options.effective_timeout(self.settings.tasks)
        wait = func.options.queue_wait(timeout, sync=False) or self.settings.tasks.result_ttl
        seconds = float(wait) + timeout + 2 * self.settings.worker.lease_seconds
        return int(seconds * 1000)

    def template(self, r: FireRequest) -> JobTemplate:
        """The job's template (built and validated once per job and func version)."""
        job, func = r.job, r.func
        cached = self._templates.get(job.id)
        if cached is not None and cached.job is job and cached.func is func:
            return cached
        if len(self._templates) > TEMPLATES_MAX:
            self._templates.clear()
        env = build_envelope(
            func, job.kwargs, origin=Origin.CRON_JOB, now=0.0, settings=self.settings.tasks,
            origin_id=job.id, queue=job.queue or None, task_id="task-template",
            cron_expr=job.cron_expr or None, record_limit=job.task_record_limit)
        stream = EnvelopeTemplate(env)
        template = JobTemplate(job, func, stream, env.expires,  # built at now = 0: expires = wait
                               (self.keys.cron_running(job.id), self.keys.queue(env.queue)),
                               (self.keys.delayed(env.queue), self.keys.delayed_body(env.queue)),
                               (job.overlap_policy, str(self.running_ttl_ms(func)), env.func_id,
                                str(stream.result_ttl_ms)))
        self._templates[job.id] = template
        return template

    @staticmethod
    def guard_suffix(r: FireRequest, manual: bool) -> str:
        """What sets a fire's guard apart from its job's scheduled fire: ``#manual``, ``#d{delay}``."""
        return (MANUAL_SUFFIX if manual else "") + (f"#d{r.delay_s}" if r.delay_s else "")

    def guard(self, r: FireRequest, manual: bool) -> str:
        """The per-fire guard key of a fire (``cron_fire.lua`` builds the same one)."""
        suffix = self.guard_suffix(r, manual)
        return self.keys.beat_fired(r.job.id + suffix if suffix else r.job.id, r.fire_ms)

    @staticmethod
    def queued_ahead(r: FireRequest, t: JobTemplate | None) -> bool:
        """Whether a scheduled fire whose guard is claimed ahead also has its ``enq`` marker
        set then (``lua/beat_claim.lua``): the common fire (overlap 'allow', due now), whose
        moment is then only its XADD and the watermark."""
        return t is not None and not r.delay_s and t.fields[0] == "allow"

    def render(self, requests: Sequence[FireRequest], tids: list[str],
               templates: list[JobTemplate | None]) -> list[Rendered | None]:
        """(envelope JSON, ``enq`` header) of every fire this deployment fires (None: not ours)."""
        return [None if t is None else t.stream.render(tid, *t.times(r.fire_ms, r.delay_s))
                for r, tid, t in zip(requests, tids, templates, strict=True)]

    async def claim(self, requests: Sequence[FireRequest], guards: list[str], tids: list[str],
                    templates: list[JobTemplate | None], rendered: list[Rendered | None]) -> list[bool]:
        """Take the guards of scheduled fires this deployment fires, ahead of their moment
        (``lua/beat_claim.lua``), and set the ``enq`` marker of those :meth:`queued_ahead`:
        True per fire whose guard is ours, so ``cron_fire.lua`` need not take it at the moment
        (it checks the job's watermark instead)."""
        mine = [i for i, t in enumerate(templates) if t is not None]
        calls = []
        for k in range(0, len(mine), CLAIM_CHUNK):
            claims: list[list[str | int]] = []
            headers: list[bytes] = []
            for i in mine[k:k + CLAIM_CHUNK]:
                claim: list[str | int] = [guards[i], tids[i], requests[i].dedup_ttl_ms]
                pair, t = rendered[i], templates[i]
                if pair is not None and t is not None and self.queued_ahead(requests[i], t):
                    claim += (self.keys.enqueued(tids[i]), t.fields[3])
                    headers.append(pair[1])
                claims.append(claim)
            calls.append(self._claim(args=[orjson.dumps(claims), *headers]))
        replies = await asyncio.gather(*calls)
        ours = [False] * len(requests)
        for i, code in zip(mine, b"".join(r.encode() if isinstance(r, str) else bytes(r) for r in replies),
                           strict=True):
            ours[i] = code == ORD_ONE
        return ours

    async def chunks(self, requests: Sequence[FireRequest], tids: list[str],
                     templates: list[JobTemplate | None], manual: bool,
                     ahead: list[bool] | None = None,
                     rendered: list[Rendered | None] | None = None) -> list[tuple[int, Chunk]]:
        """The script arguments of every fire, cut in calls of about :data:`SCRIPT_CHUNK`
        fires (a job's fires stay in one call: chunks run concurrently, its fires are ordered),
        each call with the fires of one partition (its fence), as (partition, arguments).
        ``ahead``: per fire, its guard was taken by :meth:`claim`; ``rendered``: its
        :meth:`render` (made here when None)."""
        chunks: list[tuple[int, Chunk]] = []
        profiles: dict[Profile, int] = {}  # profile → its 1-based index in this call
        fires: list[int | str] = []  # four per fire: profile, cron id, fire ms, task id
        blobs: list[ScriptArg] = []
        if rendered is None:
            rendered = self.render(requests, tids, templates)
        for i, r in enumerate(requests):
            if i % YIELD_EVERY == YIELD_EVERY - 1:
                await asyncio.sleep(0)  # let a batch being sent meanwhile make progress
            prev = requests[i - 1] if i else r
            if fires and (r.partition != prev.partition
                          or (len(blobs) >= 2 * SCRIPT_CHUNK and r.job.id != prev.job.id)):
                chunks.append((prev.partition, _chunk(profiles, fires, blobs)))
                profiles, fires, blobs = {}, [], []
            profile, body, header = self._fire_args(r, templates[i], manual, ahead is not None and ahead[i],
                                                    rendered[i])
            fires += (profiles.setdefault(profile, len(profiles) + 1), r.job.id, str(r.fire_ms), tids[i])
            blobs += (body, header)
        if fires:
            chunks.append((requests[-1].partition, _chunk(profiles, fires, blobs)))
        return chunks

    def _fire_args(self, r: FireRequest, t: JobTemplate | None, manual: bool, ahead: bool,
                   rendered: Rendered | None) -> tuple[Profile, bytes, bytes]:
        """One fire's profile (what it shares with other fires), its envelope JSON and its
        ``enq`` header ('' when the marker was set ahead; see ``lua/cron_fire.lua``)."""
        guard = (self.guard_suffix(r, manual), str(r.dedup_ttl_ms))
        queued = ahead and self.queued_ahead(r, t)
        flags = ("" if manual else "1", "1" if ahead else "", "1" if queued else "")
        if t is None or rendered is None:  # claimed by another deployment: only mark it
            return ("", "claimed", "0", "", "0", "", "", *guard, "0", *flags), b"", b""
        body, header = rendered
        policy, running_ttl, func_id, result_ttl = t.fields
        delayed = ("", "")
        if r.delay_s:  # runs later, overlap or not (as in DataFlux Func, no lock at fire time)
            body = orjson.dumps({**orjson.loads(body), "eta": r.due_ms / 1000})
            policy, delayed = "allow", t.delayed_keys
        return ((t.keys[1], policy, running_ttl, func_id, result_ttl, *delayed, *guard,
                 str(r.delay_s * 1000), *flags), body, b"" if queued else header)

    def _fence(self, partition: int, epochs: Epochs) -> tuple[str, ScriptArg | None]:
        """(epoch key, epoch) of a chunk: '' = not fenced, None = a partition no longer ours."""
        if partition < 0:
            return self.keys.beat_epoch(), "" if epochs is None or isinstance(epochs, Mapping) else epochs
        if not isinstance(epochs, Mapping):
            return self.keys.beat_partition_epoch(partition), "" if epochs is None else epochs
        return self.keys.beat_partition_epoch(partition), epochs.get(partition)

    def _call(self, partition: int, chunk: Chunk, epochs: Epochs) -> list[ScriptArg] | None:
        """The ``EVALSHA`` of one chunk, fenced by its partition's epoch (None: not ours)."""
        key, epoch = self._fence(partition, epochs)
        if epoch is None:
            return None
        return ["EVALSHA", self._script.sha, 2, key, self.keys.beat_last(), epoch, *self._tail, *chunk]

    async def pack(self, chunks: list[tuple[int, Chunk]], epochs: Epochs) -> list[Packed | None]:
        """The calls of ``chunks`` packed now, with the epochs held now (the Beat packs a
        moment's calls before it is due: at the moment its lane only writes bytes); None for
        a chunk of a partition not held. Without a lane there is nothing to pack. The script
        is loaded into Redis first (once), so the moment's calls find it."""
        lane = self._lane
        if lane is None:
            return []
        if not self._loaded:
            await self._redis.script_load(self._script.script)
            self._loaded = True
        calls = [self._call(p, chunk, epochs) for p, chunk in chunks]
        return [None if call is None else lane.pack(call) for call in calls]

    async def run_codes(self, chunks: list[tuple[int, Chunk]], epochs: Epochs,
                        packed: Sequence[Packed | None] = ()) -> tuple[bytes, list[str]]:
        """The script once per chunk, fenced by its partition's epoch (a chunk of a partition
        missing from ``epochs`` is *fenced* without a call): one status code per fire, in order
        (see ``lua/cron_fire.lua``), and the details of the fires that did not fire, in order.

        With a lane (the Beat) every call goes out in one write on its one connection, in
        order, and Redis runs them back to back: ``packed`` (from :meth:`pack`) are used
        as they are where their epoch is still the one held. Without one (the Server's
        manual run), the calls go out concurrently on pooled connections."""
        if self._lane is not None:
            replies = await self._run_on_lane(self._lane, chunks, epochs, packed)
        else:
            replies = await self._run_pooled(chunks, epochs)
        codes: list[bytes] = []
        details: list[str] = []
        for (_, chunk), reply in zip(chunks, replies, strict=True):
            if reply is None:
                fires = (len(chunk) - 2) // 2  # an envelope and a header per fire
                codes.append(b"N" * fires)
                details += [""] * fires
                continue
            code, detail = reply
            codes.append(code.encode() if isinstance(code, str) else bytes(code or b""))
            details += [as_optional_text(d) or "" for d in detail]
        return b"".join(codes), details

    async def _run_on_lane(self, lane: CommandBatches, chunks: list[tuple[int, Chunk]], epochs: Epochs,
                           packed: Sequence[Packed | None]) -> list[Any]:
        """One reply per chunk (None: fenced), every call in one batch on the lane; calls that
        met NOSCRIPT (Redis lost its scripts) go again, in order, once the script is loaded."""
        calls: list[Packed | None] = []
        for i, (partition, chunk) in enumerate(chunks):
            key, epoch = self._fence(partition, epochs)
            ready = packed[i] if i < len(packed) else None
            if epoch is None:
                calls.append(None)
            elif ready is not None and ready.args[3] == key and ready.args[5] == epoch:
                calls.append(ready)
            else:
                call = self._call(partition, chunk, epochs)
                calls.append(None if call is None else lane.pack(call))
        live = [c for c in calls if c is not None]
        replies = await lane.execute(live)
        if any(isinstance(r, NoScriptError) for r in replies):
            await self._redis.script_load(self._script.script)
            again = iter(await lane.execute([c for c, r in zip(live, replies, strict=True)
                                             if isinstance(r, NoScriptError)]))
            replies = [next(again) if isinstance(r, NoScriptError) else r for r in replies]
        for r in replies:
            if isinstance(r, Exception):
                raise r
        answers = iter(replies)
        return [None if c is None else next(answers) for c in calls]

    async def _run_pooled(self, chunks: list[tuple[int, Chunk]], epochs: Epochs) -> list[Any]:
        """One reply per chunk (None: fenced), the calls concurrently on pooled connections."""
        gate = asyncio.Semaphore(SEND_CONCURRENCY)

        async def one(partition: int, chunk: Chunk) -> Any:
            key, epoch = self._fence(partition, epochs)
            if epoch is None:
                return None
            async with gate:  # Script: EVALSHA, and SCRIPT LOAD + retry on NOSCRIPT
                return await self._script(keys=[key, self.keys.beat_last()],
                                          args=[epoch, *self._tail, *chunk])

        return list(await asyncio.gather(*(one(p, c) for p, c in chunks)))

    async def run(self, chunks: list[tuple[int, Chunk]], epochs: Epochs) -> list[tuple[str, str]]:
        """:meth:`run_codes` as one (status, detail) per fire."""
        codes, details = await self.run_codes(chunks, epochs)
        unusual = iter(details)
        return [("fired", "") if c == FIRED else (STATUS_OF[c], next(unusual)) for c in codes]
