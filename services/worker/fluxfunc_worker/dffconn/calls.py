"""The worker's side of ``DFF.CONN``: the ``conn`` DFF call answers a connector's type,
decrypted config, version (its updateTime), ``isDisabled`` and the secret values to mask.

Answers are cached per connector and kept while ``keys.connectors_version()`` (bumped by the
Server on every change) stays the same: one Redis GET per call, one SQL read per change.
"""

from __future__ import annotations

from collections.abc import Mapping

import redis.asyncio as aioredis

from fluxfunc_common.connectors.sealing import secrets_of, unseal
from fluxfunc_common.crypto import Cipher, cipher_for
from fluxfunc_common.keys import Keys
from fluxfunc_common.settings import Settings
from fluxfunc_common.store import ConnectorStore

Params = Mapping[str, object]
Answer = dict[str, object]


class ConnCalls:
    """``conn``: see the module docstring."""

    def __init__(self, settings: Settings, store: ConnectorStore, redis: aioredis.Redis,
                 keys: Keys) -> None:
        self._settings = settings
        self._store = store
        self._redis = redis
        self._keys = keys
        self._cipher: Cipher | None = None
        self._version: bytes | str | None = None
        self._answers: dict[str, Answer | None] = {}

    async def conn(self, params: Params, job: object = None) -> Answer | None:
        connector_id = str(params["id"])
        version = await self._redis.get(self._keys.connectors_version())
        if version != self._version:
            self._answers.clear()
            self._version = version
        if connector_id not in self._answers:
            self._answers[connector_id] = await self._load(connector_id)
        return self._answers[connector_id]

    async def _load(self, connector_id: str) -> Answer | None:
        found = await self._store.find_connector(connector_id)
        if found is None:
            return None
        if self._cipher is None:
            self._cipher = cipher_for(self._settings)
        config = unseal(found.config, self._cipher)
        return {"id": found.id, "type": found.type.value, "version": found.update_time,
                "isDisabled": found.is_disabled, "secrets": secrets_of(config),
                "config": config.model_dump(by_alias=True, exclude_none=True, mode="json")}
