"""Connectors: named connections to external systems that scripts reach with ``DFF.CONN(id)``
(DataFlux Func's connectors; docs/connectors.md).

- :mod:`.types`: the connector types, their config model and the stored connector;
- :mod:`.sealing`: secrets in a config encrypted with the deployment secret, masked on output;
- :mod:`.clients`: opening a synchronous client of each type (the Server's test, the Worker's
  child helpers);
- :mod:`.testing`: testing a config (what the Server runs before saving).
"""

from __future__ import annotations

from fluxfunc_common.connectors.types import (
    SECRET_FIELDS,
    ConnectorConfig,
    ConnectorType,
    StoredConnector,
)

__all__ = ["SECRET_FIELDS", "ConnectorConfig", "ConnectorType", "StoredConnector"]
