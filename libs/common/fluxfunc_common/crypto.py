"""Secrets at rest: password env variables and access-key secrets are encrypted with
``settings.secret`` (Fernet, key derived by SHA-256); admin tokens are stored as hashes."""

from __future__ import annotations

import base64
import hashlib
import secrets

from cryptography.fernet import Fernet, InvalidToken

from fluxfunc_common.errors import ConfigError


class Cipher:
    """Encrypt/decrypt short text values with a key derived from the deployment secret."""

    def __init__(self, secret: str) -> None:
        key = base64.urlsafe_b64encode(hashlib.sha256(secret.encode()).digest())
        self._fernet = Fernet(key)

    def encrypt(self, text: str) -> str:
        return self._fernet.encrypt(text.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken:
            raise ConfigError("cannot decrypt a stored secret: was `secret` changed?") from None


def new_token() -> str:
    """A new admin bearer token (shown once, stored only as its hash)."""
    return "ff_" + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
