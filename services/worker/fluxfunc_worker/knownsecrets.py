"""The deployment's secret values a task record must not show: every ``password`` env
variable's value and every connector's secret fields, decrypted, read from the store at most
once a second (as fresh as a child's ``DFF.ENV`` answers: ``dffcalls.ENV_CACHE_SECONDS``).

The record batcher masks the kwargs it writes with them (:mod:`fluxfunc_common.recordkwargs`):
all of them, not only those the task read, since a secret reaches a task's kwargs from its
caller (``DFF.FUNC('other', kwargs={'password': DFF.ENV('db')})``) and skipped or killed tasks
read nothing. A value that no longer decrypts (a secret rotated away) is skipped.
"""

from __future__ import annotations

import time
from typing import Protocol

from fluxfunc_common.connectors.types import SECRET_FIELDS
from fluxfunc_common.crypto import CIPHER_SUFFIX, Cipher, cipher_for
from fluxfunc_common.logs import get_logger
from fluxfunc_common.models import EnvVariable
from fluxfunc_common.settings import Settings
from fluxfunc_common.store import ConnectorStore, Entity, EntityStore

log = get_logger("worker.secrets")

FRESH_SECONDS = 1.0
PAGE = 500


class SecretStore(EntityStore, ConnectorStore, Protocol):
    """Where the secrets are: env variables and connectors."""


class KnownSecrets:
    """The current secret values (see the module docstring)."""

    def __init__(self, settings: Settings, store: SecretStore) -> None:
        self._settings = settings
        self._store = store
        self._cipher: Cipher | None = None
        self._values: list[str] = []
        self._read_at: float | None = None
        self._undecryptable: set[str] = set()  # warned about once

    async def current(self) -> list[str]:
        """Every secret value (store errors propagate: the caller keeps what it masks)."""
        now = time.monotonic()
        if self._read_at is None or now - self._read_at >= FRESH_SECONDS:
            self._values = [*await self._env_passwords(), *await self._connector_secrets()]
            self._read_at = now
        return self._values

    async def _env_passwords(self) -> list[str]:
        tokens: list[str] = []
        cursor: str | None = None
        while True:
            page = await self._store.list(Entity.ENV_VARIABLE, limit=PAGE, cursor=cursor)
            for row in page.items:
                var = EnvVariable.from_row(row)
                if var.is_password and var.value_cipher:
                    tokens.append(var.value_cipher)
            if page.next_cursor is None:
                return self._decrypted(tokens)
            cursor = page.next_cursor

    async def _connector_secrets(self) -> list[str]:
        tokens = [token for connector in await self._store.list_connectors()
                  for name in SECRET_FIELDS
                  if isinstance(token := connector.config.get(name + CIPHER_SUFFIX), str)]
        return self._decrypted(tokens)

    def _decrypted(self, tokens: list[str]) -> list[str]:
        if not tokens:
            return []
        if self._cipher is None:
            self._cipher = cipher_for(self._settings)
        values: list[str] = []
        for token in tokens:
            if token in self._undecryptable:
                continue
            try:
                values.append(self._cipher.decrypt(token))
            except Exception as exc:  # not ours any more: nothing to mask with it
                self._undecryptable.add(token)
                log.warning("a stored secret does not decrypt; not masked in task records",
                            error=type(exc).__name__)
        return [v for v in values if v]
