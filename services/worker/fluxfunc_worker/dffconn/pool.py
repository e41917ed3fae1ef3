"""The connectors of one child process: configs fetched from the worker, clients opened lazily.

``DFF.CONN(id)`` asks the worker (the DFF RPC ``conn``: the child never reads the store) for
the connector's type, decrypted config and version. The client is opened on first use and
kept for every later task of this child; a config older than :data:`RECHECK_SECONDS` is asked
again, and a new version (the connector changed through the API) closes the old client, so a
change is in force within about a second, for helpers kept at module level too. A client whose
connection broke is closed and reopened by the next call; :func:`close_all` closes every client
when the child retires. Secrets of a config are masked in the task's printed output.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from fluxfunc_common.connectors.testing import explain
from fluxfunc_common.connectors.types import ConnectorConfig, ConnectorType

RECHECK_SECONDS = 1.0
T = TypeVar("T")
Rpc = Callable[..., Any]  # sdk's call(method, **params): the worker's JSON answer
Mask = Callable[[str], None]  # adds a secret to the running task's masks


class ConnectorError(Exception):
    """A connector is missing, disabled, or cannot be reached (the message says which)."""


class Family(Protocol):
    """How one connector type opens, closes and judges its client."""

    def open(self, config: ConnectorConfig, connector_id: str) -> Any: ...

    def close(self, client: Any) -> None: ...

    def is_broken(self, exc: BaseException) -> bool:
        """Whether ``exc`` means the connection is gone (the client is then reopened)."""
        ...


@dataclass
class Entry:
    """One connector as this child knows it."""

    kind: ConnectorType
    version: float  # the connector's updateTime
    config: ConnectorConfig
    disabled: bool
    checked: float
    secrets: list[str]
    client: Any = None
    lock: threading.RLock = field(default_factory=threading.RLock)


class ConnectorPool:
    """Per child: entries by connector id (see the module docstring)."""

    def __init__(self, rpc: Rpc, mask: Mask, families: dict[ConnectorType, Family],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._rpc = rpc
        self._mask = mask
        self._families = families
        self._clock = clock
        self._entries: dict[str, Entry] = {}
        self._lock = threading.Lock()

    def entry(self, connector_id: str) -> Entry:
        """The entry, asked again from the worker when older than RECHECK_SECONDS."""
        now = self._clock()
        with self._lock:
            found = self._entries.get(connector_id)
            if found is None or now - found.checked >= RECHECK_SECONDS:
                found = self._refresh(connector_id, found, now)
        for secret in found.secrets:
            self._mask(secret)
        if found.disabled:
            raise ConnectorError(f"connector {connector_id!r} is disabled")
        return found

    def _refresh(self, connector_id: str, old: Entry | None, now: float) -> Entry:
        answer = self._rpc("conn", id=connector_id)
        if not isinstance(answer, dict):
            self._forget(connector_id)
            raise ConnectorError(f"no connector {connector_id!r}")
        version = float(answer["version"])
        if old is not None and old.version == version:
            old.checked = now
            return old
        self._forget(connector_id)
        config = ConnectorConfig.model_validate(answer["config"])
        entry = Entry(ConnectorType(str(answer["type"])), version, config,
                      bool(answer.get("isDisabled")), now, [str(s) for s in answer.get("secrets", [])])
        self._entries[connector_id] = entry
        return entry

    def family(self, kind: ConnectorType) -> Family:
        return self._families[kind]

    def client(self, connector_id: str) -> tuple[Entry, Any]:
        """The entry and its live client (opened now if needed)."""
        entry = self.entry(connector_id)
        with entry.lock:
            if entry.client is None:
                try:
                    entry.client = self._families[entry.kind].open(entry.config, connector_id)
                except Exception as exc:
                    raise ConnectorError(f"connector {connector_id!r} ({entry.kind.value}): "
                                         f"{explain(exc)}") from None
            return entry, entry.client

    def call(self, connector_id: str, action: Callable[[Any], T], *, retry: bool = True) -> T:
        """``action(client)``; a broken connection is closed and, with ``retry``, the action
        runs once more on a new one. A connection that stays broken (the server is gone, or it
        refuses the credentials of a client that connects lazily, as redis-py does) is a
        :class:`ConnectorError` naming the connector and what failed; any other error of the
        action is raised as it is."""
        for attempt in (1, 2):
            entry, client = self.client(connector_id)
            try:
                with entry.lock:
                    return action(client)
            except Exception as exc:
                if not self._families[entry.kind].is_broken(exc):
                    raise
                self.drop(connector_id, client)
                if not retry or attempt == 2:
                    raise ConnectorError(f"connector {connector_id!r} ({entry.kind.value}): "
                                         f"{explain(exc)}") from exc
        raise AssertionError("unreachable")

    def drop(self, connector_id: str, client: Any) -> None:
        """Close ``client`` if it is still the entry's (the next call reconnects)."""
        entry = self._entries.get(connector_id)
        if entry is not None and entry.client is client:
            entry.client = None
            self._close(entry.kind, client)

    def _forget(self, connector_id: str) -> None:
        entry = self._entries.pop(connector_id, None)
        if entry is not None and entry.client is not None:
            self._close(entry.kind, entry.client)

    def _close(self, kind: ConnectorType, client: Any) -> None:
        with contextlib.suppress(Exception):
            self._families[kind].close(client)

    def close_all(self) -> None:
        """Close every client (the child retires)."""
        with self._lock:
            for connector_id in list(self._entries):
                self._forget(connector_id)
