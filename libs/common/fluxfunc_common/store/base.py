"""What each consumer needs of the SQL database: one narrow interface per thing stored.

The store is split by consumer: :class:`EntityStore` (management entities: the Server's CRUD,
the catalogs), :class:`PublishStore` (publishing scripts, the Worker's code cache),
:class:`TaskRecordStore` (Worker writes, Server reads, Beat prunes), :class:`KvStore`
(``DFF.STORE``), :class:`CronFireStore` (the Beat's fire claims), :class:`CredentialStore`
(admin tokens and access keys), :class:`AccountStore` (console users, the audit log) and
:class:`SchemaStore` (migrations and liveness). A consumer
annotates only the interface it uses; :func:`~fluxfunc_common.store.open_store` returns one
object satisfying all of them (:class:`Store`). Each interface is implemented by its own module
(``entities.py``, ``publish.py``, ``records.py``, ``kv.py``, ``cronfires.py``,
``credentials.py``, ``schema.py``) over the one shared connection layer (``sql.py``).

Entities travel as JSON objects (``dict[str, object]``) with camelCase keys (the API's field
names): the Server validates writes with its pydantic schemas, readers parse rows once into the
typed models of :mod:`fluxfunc_common.models`, and the store only persists them. Task records
are :class:`~fluxfunc_common.store.types.TaskRecord` (a TypedDict); ``DFF.STORE`` values are
arbitrary user JSON (``object``). Every backend passes
the same tests (``tests/common/test_store.py``). The tables: docs/store-schema.md.
"""

from __future__ import annotations

import builtins
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from fluxfunc_common.connectors.types import StoredConnector
from fluxfunc_common.store.types import (
    INDEXED,
    TASK_RECORD_FILTERS,
    AuditEntry,
    AuditQuery,
    Credential,
    CredentialKind,
    Entity,
    Page,
    TaskRecord,
    User,
    task_record,
)

__all__ = [
    "INDEXED",
    "TASK_RECORD_FILTERS",
    "AccountStore",
    "AuditEntry",
    "AuditQuery",
    "ConnectorStore",
    "Credential",
    "CredentialKind",
    "CredentialStore",
    "CronFireStore",
    "Entity",
    "EntityStore",
    "KvStore",
    "Page",
    "PublishStore",
    "SchemaStore",
    "Store",
    "TaskRecord",
    "TaskRecordQuery",
    "TaskRecordStore",
    "User",
    "task_record",
]


@dataclass
class TaskRecordQuery:
    """Filters of ``GET /api/v1/task-records`` (``since``/``until`` on triggerTime, epoch s)."""

    filters: dict[str, str] = field(default_factory=dict)
    since: float | None = None
    until: float | None = None
    limit: int = 50
    cursor: str | None = None


class SchemaStore(Protocol):
    """Lifecycle: migrations, liveness, closing (``fluxfunc db``, ``/readyz``, every service)."""

    async def migrate(self) -> int:
        """Apply pending numbered migrations; return the schema version now in force."""
        ...

    async def schema_version(self) -> int:
        """The applied schema version (0 for an empty database)."""
        ...

    async def ping(self) -> None:
        """Raise :class:`~fluxfunc_common.errors.Unavailable` when the database is unreachable."""
        ...

    async def close(self) -> None:
        """Close the pool/connection."""
        ...


class EntityStore(Protocol):
    """Management entities (id + indexed columns + JSON body): the Server's CRUD, the catalogs."""

    async def create(self, entity: Entity, data: Mapping[str, object]) -> dict[str, object]:
        """Insert ``data`` (must hold ``id``); sets createTime/updateTime; Conflict if it exists."""
        ...

    async def find(self, entity: Entity, entity_id: str) -> dict[str, object] | None:
        """The entity or None."""
        ...

    async def get(self, entity: Entity, entity_id: str) -> dict[str, object]:
        """The entity or :class:`~fluxfunc_common.errors.NotFound`."""
        ...

    async def list(self, entity: Entity, *, filters: Mapping[str, object] | None = None,
                   limit: int = 50, cursor: str | None = None) -> Page[dict[str, object]]:
        """Entities ordered by id; ``filters`` only on INDEXED fields (and ``id``)."""
        ...

    async def update(self, entity: Entity, entity_id: str,
                     changes: Mapping[str, object]) -> dict[str, object]:
        """Merge ``changes`` into the entity (NotFound if missing); return the new entity."""
        ...

    async def delete(self, entity: Entity, entity_id: str) -> None:
        """Delete the entity (NotFound if missing)."""
        ...

    async def changed_since(self, entity: Entity, since: float) -> builtins.list[dict[str, object]]:
        """Entities whose updateTime is at or after ``since`` (epoch s), for incremental sync."""
        ...


class PublishStore(Protocol):
    """Publishing a script with its funcs (Server) and reading the published code (Worker)."""

    async def publish_script(
        self,
        script_id: str,
        code: str,
        funcs: Sequence[Mapping[str, object]],
        *,
        draft: Mapping[str, object] | None = None,
        create: Mapping[str, object] | None = None,
    ) -> dict[str, object]:
        """Atomically: apply ``draft`` (changed script fields, e.g. new draft code) — or insert
        ``create`` when the script does not exist yet —, set the published code, md5 and
        version+1, and replace the funcs of this script with ``funcs``. All or nothing: a
        publish that fails leaves the script as it was. Returns the updated script."""
        ...

    async def published_code(self, script_id: str) -> tuple[str, int] | None:
        """(published code, publish version) of a script, or None if never published."""
        ...


class CronFireStore(Protocol):
    """The Beat's fire claims: each (cron job, fire time) enqueued by one deployment only."""

    async def claim_cron_fire(self, cron_id: str, fire_ms: int, task_id: str) -> bool:
        """Record a fire; False when (cron_id, fire_ms) was already claimed (unique key)."""
        ...

    async def claim_cron_fires(self, claims: Sequence[tuple[str, int, str]]) -> list[bool]:
        """Claim many ``(cron_id, fire_ms, task_id)`` fires at once; one bool per claim, True
        when the fire is ours: newly claimed, or already claimed with this same task id (a
        re-claim after a crash between claiming and enqueueing)."""
        ...

    async def prune_cron_fires(self, older_than_ms: int, *, keep_latest: bool = False) -> int:
        """Forget claimed fires before ``older_than_ms`` (epoch ms); return how many went.
        ``keep_latest`` keeps each cron job's newest claim however old (a job firing monthly
        must still see last month's claim)."""
        ...

    async def clear_expired_cron_overrides(self, expired_before: float, *, limit: int) -> int:
        """Remove from at most ``limit`` cron jobs a script's override
        (``dynamicCronExpr`` + ``dynamicCronExprExpireTime``) and timed pause
        (``pauseExpireTime``) that expired before ``expired_before`` (epoch s), in one
        statement, leaving ``updateTime`` (the Beat reschedules on it) and every override
        not expired as they are; how many jobs changed."""
        ...


class KvStore(Protocol):
    """``DFF.STORE``: JSON values per (scope, key) with an optional expiry (arbitrary user data)."""

    async def kv_get(self, scope: str, key: str) -> object:
        """The JSON value, or None when missing or expired."""
        ...

    async def kv_set(self, scope: str, key: str, value: object, expires: float | None = None, *,
                     not_exists: bool = False) -> bool:
        """Upsert a JSON value, expiring ``expires`` seconds from now when given; with
        ``not_exists`` only when the key is missing or expired. True when written."""
        ...

    async def kv_mget(self, scope: str, keys: Sequence[str]) -> dict[str, object]:
        """``{key: value}`` for every key asked (None for a missing or expired one)."""
        ...

    async def kv_items(self, scope: str, pattern: str = "*") -> dict[str, object]:
        """``{key: value}`` of the scope's live keys matching the glob ``pattern``."""
        ...

    async def kv_delete(self, scope: str, key: str) -> None:
        """Delete a key (no error when missing)."""
        ...

    async def purge_expired_kv(self) -> int:
        """Delete expired keys (reads already hide them; the Beat's janitor calls this each
        round); return how many went."""
        ...


class TaskRecordStore(Protocol):
    """Task records: the Worker (and the Beat, for skipped fires) writes, the Server reads."""

    async def insert_task_records(self, records: Sequence[TaskRecord]) -> None:
        """Upsert a batch of task records (``TaskResult.model_dump(by_alias=True)``) in one
        statement/transaction; a record with an existing id replaces it."""
        ...

    async def get_task_record(self, task_id: str) -> TaskRecord | None:
        """One task record or None."""
        ...

    async def list_task_records(self, query: TaskRecordQuery) -> Page[TaskRecord]:
        """Task records newest first, filtered, cursor-paged."""
        ...

    async def prune_task_records(self, *, older_than: float, keep_per_origin: int,
                                 limits: Mapping[str, int] | None = None) -> int:
        """Delete records older than ``older_than`` (epoch s) and, per originId, all but the
        newest ``limits.get(originId, keep_per_origin)``; return how many went."""
        ...


class CredentialStore(Protocol):
    """Admin tokens (hashed) and access keys (secret encrypted with ``crypto``)."""

    async def add_admin_token(self, token_id: str, token_hash: str, name: str,
                              role: str = "admin") -> None:
        """Store a hashed admin token carrying ``role``."""
        ...

    async def find_admin_token(self, token_hash: str) -> Credential | None:
        """The unrevoked token with this hash (its id and role), or None."""
        ...

    async def admin_token_exists(self, token_hash: str) -> bool:
        """Whether a token with this hash exists (and is not revoked)."""
        ...

    async def revoke_admin_token(self, token_id: str) -> None:
        """Revoke an admin token (NotFound if missing)."""
        ...

    async def add_access_key(self, ak_id: str, secret_encrypted: str, name: str,
                             role: str = "admin") -> None:
        """Store a DataFlux Func style access key (its secret encrypted with ``crypto``)."""
        ...

    async def access_key(self, ak_id: str) -> tuple[str, str] | None:
        """(encrypted secret, role) of an access key, or None."""
        ...

    async def access_key_secret(self, ak_id: str) -> str | None:
        """The encrypted secret of an access key, or None."""
        ...

    async def list_credentials(self, kind: CredentialKind) -> list[Credential]:
        """Every admin token (revoked ones included, flagged) or access key, oldest first."""
        ...

    async def revoke_access_key(self, ak_id: str) -> None:
        """Delete an access key (NotFound if missing)."""
        ...

    async def set_access_key_secret(self, ak_id: str, secret_encrypted: str) -> None:
        """Replace an access key's encrypted secret (``fluxfunc admin rotate-secret``)."""
        ...


class AccountStore(Protocol):
    """Console users (``store/accounts.py``) and the audit log of management calls."""

    async def add_user(self, username: str, role: str, password_hash: str) -> User:
        """Insert a user (Conflict if the name is taken)."""
        ...

    async def find_user(self, username: str) -> User | None:
        """The user or None."""
        ...

    async def list_users(self) -> builtins.list[User]:
        """Every user, by name."""
        ...

    async def count_users(self) -> int:
        """How many users exist."""
        ...

    async def update_user(self, username: str, *, role: str | None = None,
                          disabled: bool | None = None, password_hash: str | None = None,
                          last_sign_in: float | None = None) -> User:
        """Change the given fields (NotFound if missing); the user as now stored."""
        ...

    async def delete_user(self, username: str) -> None:
        """Delete a user (NotFound if missing)."""
        ...

    async def add_audit(self, entry: AuditEntry) -> AuditEntry:
        """Record an entry (an empty ``id`` gets a time-ordered one); the entry stored."""
        ...

    async def list_audit(self, query: AuditQuery) -> builtins.list[AuditEntry]:
        """Entries newest first (by id), filtered, before ``query.before``."""
        ...

    async def prune_audit(self, older_than: float, *, batch: int = 1000) -> int:
        """Delete at most ``batch`` entries older than ``older_than`` (epoch s); how many went."""
        ...


class ConnectorStore(Protocol):
    """Connectors (``DFF.CONN``): :class:`~fluxfunc_common.connectors.StoredConnector` rows,
    their secrets sealed by the caller (``store/connectors.py``)."""

    async def create_connector(self, connector: StoredConnector) -> StoredConnector:
        """Insert (Conflict if the id exists); sets createTime/updateTime."""
        ...

    async def find_connector(self, connector_id: str) -> StoredConnector | None:
        """The connector or None."""
        ...

    async def get_connector(self, connector_id: str) -> StoredConnector:
        """The connector or NotFound."""
        ...

    async def list_connectors(self) -> builtins.list[StoredConnector]:
        """Every connector, by id."""
        ...

    async def replace_connector(self, connector: StoredConnector) -> StoredConnector:
        """Replace a connector (NotFound if missing); sets updateTime."""
        ...

    async def delete_connector(self, connector_id: str) -> None:
        """Delete a connector (NotFound if missing)."""
        ...


class Store(SchemaStore, EntityStore, PublishStore, CronFireStore, KvStore, TaskRecordStore,
            CredentialStore, ConnectorStore, AccountStore, Protocol):
    """Everything at once: what :func:`~fluxfunc_common.store.open_store` returns."""
