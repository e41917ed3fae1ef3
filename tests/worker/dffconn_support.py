"""Shared by the ``test_dffconn_*`` tests: connectors written as the Server writes them
(config sealed with the deployment secret, the version key bumped)."""

from __future__ import annotations

import uuid
from typing import Any

from tests.worker.conftest import Bench

from fluxfunc_common.connectors.sealing import seal
from fluxfunc_common.connectors.types import ConnectorConfig, ConnectorType, StoredConnector
from fluxfunc_common.crypto import Cipher

CIPHER = Cipher("test-secret-for-fluxfunc-tests-only-0123")  # the secret of bench.config()


def unique(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


async def add_connector(bench: Bench, connector_id: str, kind: str, **config: Any) -> None:
    await bench.store.create_connector(StoredConnector(
        id=connector_id, type=ConnectorType(kind),
        config=seal(ConnectorConfig.model_validate(config), CIPHER)))
    await bench.redis.incr(bench.keys.connectors_version())


async def change_connector(bench: Bench, connector_id: str, **config: Any) -> None:
    found = await bench.store.get_connector(connector_id)
    sealed = seal(ConnectorConfig.model_validate(config), CIPHER)
    await bench.store.replace_connector(found.model_copy(update={"config": sealed}))
    await bench.redis.incr(bench.keys.connectors_version())
