"""Secrets of a connector config at rest and on output.

A secret field (:data:`~fluxfunc_common.connectors.types.SECRET_FIELDS`) is stored as
``<field>Cipher`` (the field name suffix every ``*Cipher`` re-seal of ``rotate-secret``
knows, :func:`fluxfunc_common.crypto.reseal_fields`) encrypted with the deployment secret
(authenticated: Fernet); the API answers ``"******"`` in its place.
"""

from __future__ import annotations

from collections.abc import Mapping

from fluxfunc_common.connectors.types import MASK, SECRET_FIELDS, ConnectorConfig
from fluxfunc_common.crypto import CIPHER_SUFFIX, Cipher


def seal(config: ConnectorConfig, cipher: Cipher) -> dict[str, object]:
    """The config as stored: every secret replaced by its ``*Cipher`` ciphertext."""
    plain = config.model_dump(by_alias=True, exclude_none=True)
    for name in SECRET_FIELDS:
        value = plain.pop(name, None)
        if value not in (None, ""):
            plain[name + CIPHER_SUFFIX] = cipher.encrypt(str(value))
    return plain


def unseal(stored: Mapping[str, object], cipher: Cipher) -> ConnectorConfig:
    """The config with its secrets decrypted (the Worker's and the connection test's view)."""
    plain = {k: v for k, v in stored.items() if not _is_cipher(k)}
    for name in SECRET_FIELDS:
        token = stored.get(name + CIPHER_SUFFIX)
        if isinstance(token, str):
            plain[name] = cipher.decrypt(token)
    return ConnectorConfig.model_validate(plain)


def masked(stored: Mapping[str, object]) -> dict[str, object]:
    """The config as the API answers it: ``"******"`` for each secret that is set."""
    out = {k: v for k, v in stored.items() if not _is_cipher(k)}
    for name in SECRET_FIELDS:
        if stored.get(name + CIPHER_SUFFIX):
            out[name] = MASK
    return out


def secrets_of(config: ConnectorConfig) -> list[str]:
    """The secret values of a config (to mask in a task's output)."""
    dumped = config.model_dump(by_alias=True)
    return [str(dumped[n]) for n in SECRET_FIELDS if dumped.get(n)]


def _is_cipher(key: str) -> bool:
    return key.endswith(CIPHER_SUFFIX) and key.removesuffix(CIPHER_SUFFIX) in SECRET_FIELDS
