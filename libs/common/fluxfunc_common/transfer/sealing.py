"""Secrets of stored objects: opening them for an export and sealing them again on import.

A password env variable keeps its value in ``valueCipher``; an entry point's ``apiAuth`` (and
an API auth definition's ``config``) keeps fixedField values and httpBasic/httpDigest passwords
in ``valueCipher``/``passwordCipher`` fields. In a bundle the env variable's secret is the plain
value and the entry point's is its whole ``apiAuth`` (the definition's ``config``) as JSON with
the plain values (``value``, ``password``). A connector's is ``{field: value}`` of its config's
secrets (:mod:`.connectors`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from fluxfunc_common.crypto import Cipher
from fluxfunc_common.store import Entity
from fluxfunc_common.transfer import connectors
from fluxfunc_common.transfer.bundle import CIPHER_SUFFIX, CONNECTOR, Kind, Row, has_sealed

SEALED_FIELDS = ("value", "password")  # inside apiAuth: what the Server seals
# the field holding sealed values of an API auth: an entry's inline apiAuth, a definition's config
SEALED_IN: dict[Kind, str] = {Entity.SYNC_API: "apiAuth", Entity.ASYNC_API: "apiAuth",
                              Entity.API_AUTH: "config"}


def _open_auth(value: object, cipher: Cipher) -> object:
    if isinstance(value, Mapping):
        out: dict[str, object] = {}
        for key, item in value.items():
            if isinstance(key, str) and key.endswith(CIPHER_SUFFIX) and isinstance(item, str):
                out[key.removesuffix(CIPHER_SUFFIX)] = cipher.decrypt(item)
            else:
                out[key] = _open_auth(item, cipher)
        return out
    if isinstance(value, list):
        return [_open_auth(v, cipher) for v in value]
    return value


def _seal_auth(value: object, cipher: Cipher) -> object:
    if isinstance(value, Mapping):
        out: dict[str, object] = {}
        for key, item in value.items():
            if key in SEALED_FIELDS and item is not None:
                out[f"{key}{CIPHER_SUFFIX}"] = cipher.encrypt(str(item))
            else:
                out[key] = _seal_auth(item, cipher)
        return out
    if isinstance(value, list):
        return [_seal_auth(v, cipher) for v in value]
    return value


def secret_of(kind: Kind, row: Mapping[str, object], cipher: Cipher) -> str | None:
    """The plain secret of a stored object, or None when it has none."""
    if kind is CONNECTOR:
        return connectors.secret_of(row, cipher)
    if kind is Entity.ENV_VARIABLE:
        sealed = row.get("valueCipher")
        return cipher.decrypt(sealed) if isinstance(sealed, str) else None
    field = SEALED_IN.get(kind)
    if field is not None and has_sealed(row.get(field)):
        return json.dumps(_open_auth(row.get(field), cipher), sort_keys=True)
    return None


def sealed_row(kind: Kind, row: Row, secret: str | None, cipher: Cipher) -> Row:
    """``row`` as stored: its secret (when given) sealed with the deployment's cipher."""
    if kind is CONNECTOR:
        return connectors.sealed_row(row, secret, cipher)
    if secret is None:
        return row
    if kind is Entity.ENV_VARIABLE:
        return {**row, "value": None, "valueCipher": cipher.encrypt(secret)}
    field = SEALED_IN.get(kind)
    if field is not None:
        return {**row, field: _seal_auth(json.loads(secret), cipher)}
    return row
