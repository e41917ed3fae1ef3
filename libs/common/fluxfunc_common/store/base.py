"""The store interface: one async API, two backends (MySQL/MariaDB and SQLite).

Entities travel as plain dicts with camelCase keys (the API's field names), so the Server
validates with its pydantic schemas and the store only persists. Every backend passes the
same tests (``tests/common/test_store.py``).
"""

from __future__ import annotations

import builtins
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Entity(StrEnum):
    """Management entities stored generically (id + indexed columns + JSON body)."""

    SCRIPT_SET = "script_sets"
    SCRIPT = "scripts"
    FUNC = "funcs"
    SYNC_API = "sync_apis"
    ASYNC_API = "async_apis"
    CRON_JOB = "cron_jobs"
    ENV_VARIABLE = "env_variables"


# Fields that are real, indexed columns (usable as ``list`` filters); the rest lives in JSON.
INDEXED: dict[Entity, tuple[str, ...]] = {
    Entity.SCRIPT_SET: (),
    Entity.SCRIPT: ("scriptSetId",),
    Entity.FUNC: ("scriptId", "scriptSetId"),
    Entity.SYNC_API: ("funcId",),
    Entity.ASYNC_API: ("funcId",),
    Entity.CRON_JOB: ("funcId",),
    Entity.ENV_VARIABLE: (),
}

TASK_RECORD_FILTERS = ("funcId", "origin", "originId", "status", "queue")


class CredentialKind(StrEnum):
    """What ``fluxfunc admin list-…`` and ``/api/v1/admin/…`` list and revoke."""

    TOKEN = "tokens"
    ACCESS_KEY = "access-keys"


@dataclass(frozen=True)
class Credential:
    """An admin token or access key as listed: never its secret or hash."""

    id: str
    name: str
    created: float
    revoked: bool = False


@dataclass
class Page:
    """One page of a list; ``next_cursor`` is None on the last page."""

    items: list[dict[str, Any]]
    next_cursor: str | None = None


@dataclass
class TaskRecordQuery:
    """Filters of ``GET /api/v1/task-records`` (``since``/``until`` on triggerTime, epoch s)."""

    filters: dict[str, str] = field(default_factory=dict)
    since: float | None = None
    until: float | None = None
    limit: int = 50
    cursor: str | None = None


class Store(ABC):
    """What Server, Worker and Beat need of the SQL database."""

    # --- lifecycle -----------------------------------------------------------------------
    @abstractmethod
    async def migrate(self) -> int:
        """Apply pending numbered migrations; return the schema version now in force."""

    @abstractmethod
    async def schema_version(self) -> int:
        """The applied schema version (0 for an empty database)."""

    @abstractmethod
    async def ping(self) -> None:
        """Raise :class:`~fluxfunc_common.errors.Unavailable` when the database is unreachable."""

    @abstractmethod
    async def close(self) -> None:
        """Close the pool/connection."""

    # --- generic entities -------------------------------------------------------------------
    @abstractmethod
    async def create(self, entity: Entity, data: dict[str, Any]) -> dict[str, Any]:
        """Insert ``data`` (must hold ``id``); sets createTime/updateTime; Conflict if it exists."""

    @abstractmethod
    async def find(self, entity: Entity, entity_id: str) -> dict[str, Any] | None:
        """The entity or None."""

    async def get(self, entity: Entity, entity_id: str) -> dict[str, Any]:
        """The entity or :class:`~fluxfunc_common.errors.NotFound`."""
        from fluxfunc_common.errors import NotFound

        found = await self.find(entity, entity_id)
        if found is None:
            raise NotFound(f"{entity.value[:-1].replace('_', ' ')} {entity_id!r} not found")
        return found

    @abstractmethod
    async def list(
        self,
        entity: Entity,
        *,
        filters: dict[str, Any] | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page:
        """Entities ordered by id; ``filters`` only on INDEXED fields (and ``id``)."""

    @abstractmethod
    async def update(self, entity: Entity, entity_id: str, changes: dict[str, Any]) -> dict[str, Any]:
        """Merge ``changes`` into the entity (NotFound if missing); return the new entity."""

    @abstractmethod
    async def delete(self, entity: Entity, entity_id: str) -> None:
        """Delete the entity (NotFound if missing)."""

    @abstractmethod
    async def changed_since(self, entity: Entity, since: float) -> builtins.list[dict[str, Any]]:
        """Entities whose updateTime is at or after ``since`` (epoch s), for incremental sync."""

    # --- scripts -----------------------------------------------------------------------------
    @abstractmethod
    async def publish_script(
        self,
        script_id: str,
        code: str,
        funcs: Sequence[dict[str, Any]],
        *,
        draft: Mapping[str, Any] | None = None,
        create: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Atomically: apply ``draft`` (changed script fields, e.g. new draft code) — or insert
        ``create`` when the script does not exist yet —, set the published code, md5 and
        version+1, and replace the funcs of this script with ``funcs``. All or nothing: a
        publish that fails leaves the script as it was. Returns the updated script."""

    @abstractmethod
    async def published_code(self, script_id: str) -> tuple[str, int] | None:
        """(published code, publish version) of a script, or None if never published."""

    # --- beat --------------------------------------------------------------------------------
    @abstractmethod
    async def claim_cron_fire(self, cron_id: str, fire_ms: int, task_id: str) -> bool:
        """Record a fire; False when (cron_id, fire_ms) was already claimed (unique key)."""

    async def claim_cron_fires(self, claims: Sequence[tuple[str, int, str]]) -> builtins.list[bool]:
        """Claim many ``(cron_id, fire_ms, task_id)`` fires at once; one bool per claim, True
        when the fire is ours: newly claimed, or already claimed with this same task id (a
        re-claim after a crash between claiming and enqueueing)."""
        return [await self.claim_cron_fire(c, m, t) for c, m, t in claims]

    async def prune_cron_fires(self, older_than_ms: int, *, keep_latest: bool = False) -> int:
        """Forget claimed fires before ``older_than_ms`` (epoch ms); return how many went.
        ``keep_latest`` keeps each cron job's newest claim however old (a job firing monthly
        must still see last month's claim)."""
        return 0

    # --- DFF.STORE -----------------------------------------------------------------------------
    @abstractmethod
    async def kv_get(self, scope: str, key: str) -> Any:
        """The JSON value, or None when missing or expired."""

    @abstractmethod
    async def kv_set(self, scope: str, key: str, value: Any, expires: float | None = None, *,
                     not_exists: bool = False) -> bool:
        """Upsert a JSON value, expiring ``expires`` seconds from now when given; with
        ``not_exists`` only when the key is missing or expired. True when written."""

    @abstractmethod
    async def kv_mget(self, scope: str, keys: Sequence[str]) -> dict[str, Any]:
        """``{key: value}`` for every key asked (None for a missing or expired one)."""

    @abstractmethod
    async def kv_items(self, scope: str, pattern: str = "*") -> dict[str, Any]:
        """``{key: value}`` of the scope's live keys matching the glob ``pattern``."""

    @abstractmethod
    async def kv_delete(self, scope: str, key: str) -> None:
        """Delete a key (no error when missing)."""

    async def purge_expired_kv(self) -> int:
        """Delete expired DFF.STORE keys (reads already hide them); return how many went."""
        return 0

    # --- task records ---------------------------------------------------------------------------
    @abstractmethod
    async def insert_task_records(self, records: Sequence[dict[str, Any]]) -> None:
        """Upsert a batch of task records (TaskResult.model_dump(by_alias=True) dicts) in one
        statement/transaction; a record with an existing id replaces it."""

    @abstractmethod
    async def get_task_record(self, task_id: str) -> dict[str, Any] | None:
        """One task record or None."""

    @abstractmethod
    async def list_task_records(self, query: TaskRecordQuery) -> Page:
        """Task records newest first, filtered, cursor-paged."""

    @abstractmethod
    async def prune_task_records(
        self, *, older_than: float, keep_per_origin: int, limits: dict[str, int] | None = None
    ) -> int:
        """Delete records older than ``older_than`` (epoch s) and, per originId, all but the
        newest ``limits.get(originId, keep_per_origin)``; return how many went."""

    # --- admin tokens ---------------------------------------------------------------------------
    @abstractmethod
    async def add_admin_token(self, token_id: str, token_hash: str, name: str) -> None:
        """Store a hashed admin token."""

    @abstractmethod
    async def admin_token_exists(self, token_hash: str) -> bool:
        """Whether a token with this hash exists (and is not revoked)."""

    async def revoke_admin_token(self, token_id: str) -> None:
        """Revoke an admin token (NotFound if missing)."""
        raise NotImplementedError

    @abstractmethod
    async def add_access_key(self, ak_id: str, secret_encrypted: str, name: str) -> None:
        """Store a DataFlux Func style access key (its secret encrypted with ``crypto``)."""

    @abstractmethod
    async def access_key_secret(self, ak_id: str) -> str | None:
        """The encrypted secret of an access key, or None."""

    @abstractmethod
    async def list_credentials(self, kind: CredentialKind) -> builtins.list[Credential]:
        """Every admin token (revoked ones included, flagged) or access key, oldest first."""

    @abstractmethod
    async def revoke_access_key(self, ak_id: str) -> None:
        """Delete an access key (NotFound if missing)."""

    @abstractmethod
    async def set_access_key_secret(self, ak_id: str, secret_encrypted: str) -> None:
        """Replace an access key's encrypted secret (``fluxfunc admin rotate-secret``)."""
