"""Every Redis key name fluxfunc uses, built in this one place.

No other module formats a key: they ask a :class:`Keys` made from ``redis.namespace``.
Every key, its type, who writes and reads it and its lifetime: docs/redis-protocol.md.
"""

from __future__ import annotations

from dataclasses import dataclass

GROUP = "workers"


@dataclass(frozen=True, slots=True)
class Keys:
    """Key names under one namespace ``ns``."""

    ns: str = "fluxfunc"

    # --- task streams and their companions -------------------------------------------
    def queue(self, queue: str) -> str:
        """Stream of pending work of one queue (group ``workers``)."""
        return f"{self.ns}:queue:{queue}"

    def queue_name(self, stream_key: str) -> str:
        """The queue name back from a stream key."""
        return stream_key[len(self.ns) + len(":queue:") :]

    def queue_pattern(self) -> str:
        return f"{self.ns}:queue:*"

    def delayed(self, queue: str) -> str:
        """ZSET task id → due ms (ETA, delay, retry backoff)."""
        return f"{self.ns}:delayed:{queue}"

    def delayed_body(self, queue: str) -> str:
        """HASH task id → envelope JSON of a delayed task."""
        return f"{self.ns}:delayed:{queue}:body"

    def leases(self, queue: str) -> str:
        """HASH entry id → lease token of the consumer holding it (:mod:`fluxfunc_common.streams`)."""
        return f"{self.ns}:leases:{queue}"

    def dead(self) -> str:
        """Dead-letter stream."""
        return f"{self.ns}:dead"

    def result(self, task_id: str) -> str:
        return f"{self.ns}:result:{task_id}"

    def reply(self, server_id: str) -> str:
        """Reply-notification stream of one Server process."""
        return f"{self.ns}:reply:{server_id}"

    def idem(self, key: str, scope: str = "") -> str:
        """A caller's idempotency key within its scope (who called which entry point)."""
        return f"{self.ns}:idem:{scope}:{key}" if scope else f"{self.ns}:idem:{key}"

    def enqueued(self, task_id: str) -> str:
        """Guard that makes a re-sent enqueue of the same task id a no-op."""
        return f"{self.ns}:enq:{task_id}"

    def cancel(self, task_id: str) -> str:
        return f"{self.ns}:cancel:{task_id}"

    def running(self, task_id: str) -> str:
        """Which worker consumer is running a task (for cancel of a running task)."""
        return f"{self.ns}:running:{task_id}"

    def stats(self, queue: str, minute: int) -> str:
        """Completed-task counter of one queue for one minute (throughput)."""
        return f"{self.ns}:stats:{queue}:{minute}"

    def task_counts(self) -> str:
        """HASH ``{func}\x1f{status}`` → tasks that ended so, deployment-wide (``/metrics``)."""
        return f"{self.ns}:taskstats:count"

    def task_durations(self) -> str:
        """HASH ``{func}\x1f{bucket}`` → run-time histogram counts, ``{func}\x1fsum`` → seconds."""
        return f"{self.ns}:taskstats:duration"

    def task_origin_counts(self) -> str:
        """HASH ``{origin}\x1f{status}`` → tasks that ended so, deployment-wide (``/metrics``)."""
        return f"{self.ns}:taskstats:origin"

    def subscription_counts(self) -> str:
        """HASH ``{connector id}\x1f{enqueued|dropped}`` → subscription messages (``/metrics``)."""
        return f"{self.ns}:subscriptions:messages"

    # --- processes -------------------------------------------------------------------
    def svc(self, role: str, instance: str) -> str:
        """Heartbeat of one process."""
        return f"{self.ns}:svc:{role}:{instance}"

    def svc_pattern(self, role: str = "*") -> str:
        return f"{self.ns}:svc:{role}:*"

    def svc_index(self) -> str:
        """SET of the heartbeat keys written (members whose key expired are pruned by readers),
        so listing the live processes never scans the keyspace."""
        return f"{self.ns}:svcindex"

    def events(self) -> str:
        """Pub/sub channel: script published, cron jobs changed, cancel running task."""
        return f"{self.ns}:events"

    def scripts_version(self) -> str:
        """Counter bumped on every publish; workers compare it to drop cached code."""
        return f"{self.ns}:scripts:version"

    def scripts_changes(self) -> str:
        """STREAM: which script each ``scripts_version`` step changed (entry id ``<gen>-0``), so
        workers drop only that script and its importers (docs/internals.md, Notifications)."""
        return f"{self.ns}:scripts:changes"

    def connectors_version(self) -> str:
        """Counter bumped on every change of a connector (API); workers compare it to drop a
        cached connector config within a second (docs/connectors.md)."""
        return f"{self.ns}:connectors:version"

    def python_packages_version(self) -> str:
        """Counter bumped on every change of the package list (deployment list or a script
        set's requirements); workers poll it to install the new set (docs/packages.md)."""
        return f"{self.ns}:pypackages:version"

    def python_packages_status(self, instance: str) -> str:
        """JSON of one worker's package-set state (installing/ok/failed), expiring with it."""
        return f"{self.ns}:pypackages:status:{instance}"

    # --- beat --------------------------------------------------------------------------
    def beat_leader(self) -> str:
        return f"{self.ns}:beat:leader"

    def beat_epoch(self) -> str:
        return f"{self.ns}:beat:epoch"

    def beat_partition(self, partition: int) -> str:
        """Lease of one partition of the cron jobs (a Beat's token, with a PX expiry)."""
        return f"{self.ns}:beat:part:{partition}"

    def beat_partition_epoch(self, partition: int) -> str:
        """Fencing epoch of one partition (INCR on each acquire)."""
        return f"{self.ns}:beat:part:{partition}:epoch"

    def beat_members(self) -> str:
        """ZSET Beat token → expiry ms (Redis time): the live Beats sharing the partitions."""
        return f"{self.ns}:beat:members"

    def beat_fired(self, cron_id: str, fire_ms: int) -> str:
        return f"{self.ns}:beat:fired:{cron_id}:{fire_ms}"

    def beat_last(self) -> str:
        """HASH cron id → last fire ms."""
        return f"{self.ns}:beat:last"

    def beat_deployment(self) -> str:
        """Random id of this deployment (this Redis + namespace), set once: it tells the
        store claims of this deployment's fires from those of another sharing the database."""
        return f"{self.ns}:beat:deployment"

    def cron_changed(self) -> str:
        """Stream of cron-job changes (id per entry) read by the Beat leader."""
        return f"{self.ns}:cron:changed"

    def cron_running(self, cron_id: str) -> str:
        """Set while a run of a cron job is in flight (overlapPolicy ``skip``)."""
        return f"{self.ns}:cron:running:{cron_id}"

    # --- server-side helpers -------------------------------------------------------------
    def throttle(self, entry_id: str, window: str, bucket: int) -> str:
        return f"{self.ns}:throttle:{entry_id}:{window}:{bucket}"

    def result_cache(self, func_id: str, digest: str) -> str:
        return f"{self.ns}:rcache:{func_id}:{digest}"

    def nonce(self, ak_id: str, nonce: str) -> str:
        return f"{self.ns}:nonce:{ak_id}:{nonce}"

    # --- script API (DFF.CACHE) ---------------------------------------------------------
    def cache(self, scope: str, key: str) -> str:
        return f"{self.ns}:cache:{scope}:{key}"

    def cache_prefix(self, scope: str) -> str:
        """What every ``cache(scope, …)`` key starts with (patterns and key names of a scope)."""
        return f"{self.ns}:cache:{scope}:"

    # --- console accounts (docs/security.md) ---------------------------------------------
    def session(self, sid_hash: str) -> str:
        """JSON of one console session (the SHA-256 of its cookie), expiring when idle."""
        return f"{self.ns}:session:{sid_hash}"

    def user_sessions(self, username: str) -> str:
        """SET of the session hashes of one user (ended together on a password change)."""
        return f"{self.ns}:usersessions:{username}"

    def sign_in_failures(self, kind: str, who: str) -> str:
        """Counter of failed sign-ins of one username or client address (``kind``)."""
        return f"{self.ns}:signin:fail:{kind}:{who}"

    def sign_in_lockout(self, kind: str, who: str) -> str:
        """Set while sign-ins of one username or client address are refused (429)."""
        return f"{self.ns}:signin:lock:{kind}:{who}"

    def edit_lock(self, script_id: str) -> str:
        """JSON ``{holder, expiresAt}`` of the editing lock of one script, expiring."""
        return f"{self.ns}:editlock:{script_id}"

    def session_locks(self, sid_hash: str) -> str:
        """SET of the script ids whose editing lock was taken or renewed through one console
        session (released when the session ends)."""
        return f"{self.ns}:sessionlocks:{sid_hash}"

    def draft_runs(self, principal: str) -> str:
        """ZSET task id → deadline ms of the draft runs one principal has running (the
        per-user limit of ``POST /scripts/{id}/draft-run``)."""
        return f"{self.ns}:draftruns:{principal}"
