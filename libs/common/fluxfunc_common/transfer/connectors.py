"""Connectors in an export: their exported form, their secrets, and the checks of an import.

A connector moves as the API shows it (:class:`~fluxfunc_common.connectors.StoredConnector`
JSON without its times), each secret of its config (``password``, ``secretKey``, ``token``,
``guanceAPIKey``) shown as ``"******"``, so an import can tell which secrets the source had.
With ``--with-secrets`` the plain values travel sealed with the passphrase, as JSON
``{field: value}``; without, an import never changes a stored connector's secrets, writes the
connector untested (as ``skipTest`` does) and adds a plan note naming each secret that must be
set. The subscriptions (``config.topicHandlers``) move with the connector, their ``isDisabled``
and the connector's as they are: an import starts no subscription the source had stopped.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from pydantic import ValidationError

from fluxfunc_common.connectors.sealing import masked
from fluxfunc_common.connectors.types import MASK, SECRET_FIELDS, ConnectorConfig, StoredConnector
from fluxfunc_common.crypto import CIPHER_SUFFIX, Cipher
from fluxfunc_common.store import ConnectorStore
from fluxfunc_common.transfer.bundle import Row, exported_form


def _config(row: Mapping[str, object]) -> dict[str, object]:
    config = row.get("config")
    return dict(config) if isinstance(config, Mapping) else {}


def exported_row(stored: Mapping[str, object]) -> Row:
    """A stored connector (JSON, secrets sealed) in exported form: secrets masked."""
    return exported_form({**stored, "config": masked(_config(stored))})


async def find(store: ConnectorStore, connector_id: str) -> dict[str, object] | None:
    """The stored connector as JSON (its config's secrets sealed), or None."""
    found = await store.find_connector(connector_id)
    return None if found is None else found.as_json()


def comparable(row: Mapping[str, object]) -> Row:
    """``row`` without its masked secrets: what an import without secrets compares."""
    config = {k: v for k, v in _config(row).items() if v != MASK}
    return {**row, "config": config}


def masked_fields(row: Mapping[str, object]) -> list[str]:
    """The secrets the source had (masked in the exported config)."""
    return [k for k, v in sorted(_config(row).items()) if v == MASK]


def sealed_fields(stored: Mapping[str, object] | None) -> set[str]:
    """The secrets a stored connector has."""
    config = _config(stored or {})
    return {name for name in SECRET_FIELDS if config.get(name + CIPHER_SUFFIX)}


def secret_of(stored: Mapping[str, object], cipher: Cipher) -> str | None:
    """The plain secrets of a stored connector as JSON ``{field: value}``, or None."""
    config = _config(stored)
    plain = {name: cipher.decrypt(str(config[name + CIPHER_SUFFIX]))
             for name in sorted(sealed_fields(stored))}
    return json.dumps(plain, sort_keys=True) if plain else None


def sealed_row(row: Row, secret: str | None, cipher: Cipher) -> Row:
    """``row`` as stored: masks dropped, the secrets (when given, or written plain into the
    file by hand) sealed with ``cipher`` — a secret is never stored in the clear."""
    config = comparable(row)["config"]
    assert isinstance(config, dict)
    plain = {name: config.pop(name) for name in SECRET_FIELDS if name in config}
    plain.update(json.loads(secret) if secret is not None else {})
    for name, value in sorted(plain.items()):
        if name in SECRET_FIELDS and value not in (None, ""):
            config[name + CIPHER_SUFFIX] = cipher.encrypt(str(value))
    return {**row, "config": config}


def kept_secrets(row: Row, existing: Mapping[str, object] | None) -> Row:
    """An import without secrets keeps every secret the stored connector has."""
    old, config = _config(existing or {}), dict(_config(row))
    for name in sealed_fields(existing):
        config.setdefault(name + CIPHER_SUFFIX, old[name + CIPHER_SUFFIX])
    return {**row, "config": config}


def problem(row: Row) -> str | None:
    """Why ``row`` is not a connector this deployment can store, or None."""
    try:
        StoredConnector.model_validate(row)
        ConnectorConfig.model_validate(comparable(row)["config"])
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        return f"not a valid connector ({where}: {first.get('msg')})"
    return None


def handler_funcs(row: Mapping[str, object]) -> list[str]:
    """The funcs its subscriptions (``config.topicHandlers``) call."""
    handlers = _config(row).get("topicHandlers")
    return sorted({str(h["funcId"]) for h in handlers if isinstance(h, Mapping) and h.get("funcId")}
                  ) if isinstance(handlers, list) else []


def missing_secrets(row: Row, secret: str | None, existing: Mapping[str, object] | None) -> list[str]:
    """The secrets the source had that neither the import file nor the stored connector has."""
    if secret is not None:
        return []
    return [name for name in masked_fields(row) if name not in sealed_fields(existing)]


def model(row: Mapping[str, object]) -> StoredConnector:
    """The stored connector of a written row (times included)."""
    return StoredConnector.model_validate(row)
