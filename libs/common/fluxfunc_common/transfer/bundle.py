"""What an export carries: entity and connector rows in their exported form, and optionally
their secrets.

A row in exported form is the stored entity without what belongs to one deployment: its
timestamps (``createTime``, ``updateTime``, ``publishTime``), derived fields (``codeMD5``) and
anything sealed with the deployment secret (``*Cipher`` fields). Sealed values travel, when
asked for, as plain text in :attr:`Bundle.secrets` (encrypted in the archive with a passphrase,
:mod:`fluxfunc_common.transfer.secretbox`). Funcs are not carried: the import derives them from
each script's published code, as publishing does.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol

from fluxfunc_common.store import ConnectorStore, Entity, EntityStore

Row = dict[str, object]  # one entity in exported form (camelCase JSON, as the store keeps it)


class Stored(StrEnum):
    """What moves but is kept in its own store part rather than as a generic :class:`Entity`."""

    CONNECTOR = "connectors"


Kind = Entity | Stored
CONNECTOR = Stored.CONNECTOR


class TransferStore(EntityStore, ConnectorStore, Protocol):
    """What an export reads and an import plans against: the entities and the connectors."""

# what moves, in the order an import writes it (a script's set first, funcs before entry points)
KINDS: tuple[Kind, ...] = (
    Entity.SCRIPT_SET,
    Entity.SCRIPT,
    Entity.ENV_VARIABLE,
    Entity.API_AUTH,  # before the entry points that name one (apiAuthId)
    Entity.SYNC_API,
    Entity.ASYNC_API,
    Entity.CRON_JOB,
    CONNECTOR,  # after the scripts: its subscriptions (topicHandlers) name funcs
)
VOLATILE = frozenset({"createTime", "updateTime", "publishTime", "codeMD5", "codeMd5"})
# a cron job's overrides set by its scripts while running (DFF.CRON_JOB.set_cron_expr, pause
# with expires; ``isPaused`` as the API shows it): state of one deployment, as DataFlux Func
# keeps them in Redis, out of its export. Not exported; ignored in an import file, kept as they
# are by an import that updates the job.
RUNTIME = frozenset({"dynamicCronExpr", "dynamicCronExprExpireTime", "pauseExpireTime",
                     "isPaused"})
CIPHER_SUFFIX = "Cipher"


def secret_key(kind: Kind, entity_id: str) -> str:
    """The key of an object's secret in :attr:`Bundle.secrets` (``env_variables/db_pass``)."""
    return f"{kind.value}/{entity_id}"


@dataclass
class Bundle:
    """Rows per kind (sorted by id when written), the secrets by :func:`secret_key`, and what
    a reader of a foreign format had to leave out or change (``notes``: one line each)."""


    rows: dict[Kind, list[Row]] = field(default_factory=lambda: {k: [] for k in KINDS})
    secrets: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    # fields an object that already exists keeps, by secret_key (DataFlux Func's cron jobs
    # arrive disabled: a job enabled here since stays enabled)
    keep: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def add(self, kind: Kind, row: Row) -> None:
        self.rows.setdefault(kind, []).append(row)

    def items(self) -> Iterator[tuple[Kind, Row]]:
        """Every row with its kind, in import order."""
        for kind in KINDS:
            for row in sorted(self.rows.get(kind, []), key=lambda r: str(r["id"])):
                yield kind, row

    def counts(self) -> dict[str, int]:
        return {kind.value: len(self.rows.get(kind, [])) for kind in KINDS}


def canonical(value: object) -> bytes:
    """Canonical JSON: sorted keys, two-space indent, UTF-8, one final newline."""
    text = json.dumps(value, sort_keys=True, ensure_ascii=False, indent=2, separators=(",", ": "))
    return (text + "\n").encode()


def strip_sealed(value: object) -> object:
    """``value`` without any ``*Cipher`` field, at any depth."""
    if isinstance(value, Mapping):
        return {k: strip_sealed(v) for k, v in value.items()
                if not (isinstance(k, str) and k.endswith(CIPHER_SUFFIX))}
    if isinstance(value, list):
        return [strip_sealed(v) for v in value]
    return value


def exported_form(row: Mapping[str, object]) -> Row:
    """A stored entity as exported: no timestamps, derived fields, run-time overrides or
    sealed values."""
    out = strip_sealed({k: v for k, v in row.items() if k not in VOLATILE and k not in RUNTIME})
    assert isinstance(out, dict)
    return out


def without_runtime(row: Mapping[str, object]) -> Row:
    """An imported row without run-time overrides (:data:`RUNTIME`): an import never sets them."""
    return {k: v for k, v in row.items() if k not in RUNTIME}


def has_sealed(value: object) -> bool:
    """Whether ``value`` holds a ``*Cipher`` field anywhere."""
    if isinstance(value, Mapping):
        return any((isinstance(k, str) and k.endswith(CIPHER_SUFFIX)) or has_sealed(v)
                   for k, v in value.items())
    if isinstance(value, list):
        return any(has_sealed(v) for v in value)
    return False
