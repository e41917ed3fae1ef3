"""Secrets at rest: password env variables, API-auth secrets (httpBasic passwords, fixedField
values) and access-key secrets are encrypted with a key derived from ``settings.secret``;
admin tokens are stored only as hashes.

Ciphertext format: ``v2:<fernet token>``, the Fernet key being HKDF-SHA256(secret,
info=``fluxfunc secrets v2``). Text without a version prefix is the first format (Fernet
with the key SHA-256(secret)); it stays readable, and ``fluxfunc admin rotate-secret``
rewrites everything in the current format. A ciphertext always says which format it is in, so
a later format can be added the same way.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from fluxfunc_common.errors import ConfigError

if TYPE_CHECKING:
    from fluxfunc_common.settings import Settings

VERSION = "v2"
_PREFIX = VERSION + ":"
_HKDF_INFO = b"fluxfunc secrets v2"
MIN_SECRET_BYTES = 32
# the value shipped in compose/.env.example: a deployment still using it has no secret at all
PLACEHOLDER_SECRETS = frozenset({"change-me-to-a-long-random-string"})


def check_secret(secret: str) -> None:
    """ConfigError unless ``secret`` is at least 32 bytes and not the compose placeholder."""
    if secret in PLACEHOLDER_SECRETS:
        raise ConfigError("secret is still the placeholder from compose/.env.example: set "
                          "FLUXFUNC_SECRET to a long random string (e.g. `openssl rand -hex 32`)")
    if len(secret.encode()) < MIN_SECRET_BYTES:
        raise ConfigError(f"secret is too short: use at least {MIN_SECRET_BYTES} bytes of random "
                          "text (e.g. `openssl rand -hex 32`)")


def _hkdf_key(secret: str) -> bytes:
    hkdf = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO)
    return base64.urlsafe_b64encode(hkdf.derive(secret.encode()))


def _legacy_key(secret: str) -> bytes:
    return base64.urlsafe_b64encode(hashlib.sha256(secret.encode()).digest())


class Cipher:
    """Encrypt with the deployment secret; decrypt with it or any ``previous`` secret (the
    ``previous_secrets`` setting, kept while ``fluxfunc admin rotate-secret`` runs)."""

    def __init__(self, secret: str, previous: Sequence[str] = ()) -> None:
        self._fernet = Fernet(_hkdf_key(secret))
        everyone = (secret, *previous)
        self._current = MultiFernet([Fernet(_hkdf_key(s)) for s in everyone])
        self._legacy = MultiFernet([Fernet(_legacy_key(s)) for s in everyone])

    def encrypt(self, text: str) -> str:
        """``v2:<token>`` (the current format, current secret)."""
        return _PREFIX + self._fernet.encrypt(text.encode()).decode()

    def decrypt(self, token: str) -> str:
        """The text of a ciphertext in any known format (ConfigError if it does not open)."""
        current = token.startswith(_PREFIX)
        fernet = self._current if current else self._legacy
        try:
            return fernet.decrypt(token.removeprefix(_PREFIX).encode()).decode()
        except InvalidToken:
            raise ConfigError("cannot decrypt a stored secret: was `secret` changed without "
                              "keeping the old one in `previous_secrets`?") from None

    def reseal(self, token: str) -> str:
        """The same text encrypted again with the current secret and format."""
        return self.encrypt(self.decrypt(token))



def cipher_for(settings: Settings) -> Cipher:
    """The Cipher of a deployment: ``secret`` (checked), then ``previous_secrets``."""
    current, *previous = settings.cipher_secrets()
    return Cipher(current, previous)


CIPHER_SUFFIX = "Cipher"  # stored entity fields named *Cipher hold ciphertext (valueCipher, …)


def reseal_fields(value: Any, cipher: Cipher) -> Any:
    """``value`` with every string under a ``*Cipher`` key re-encrypted (``rotate-secret``)."""
    if isinstance(value, dict):
        return {k: cipher.reseal(v) if k.endswith(CIPHER_SUFFIX) and isinstance(v, str)
                else reseal_fields(v, cipher) for k, v in value.items()}
    if isinstance(value, list):
        return [reseal_fields(v, cipher) for v in value]
    return value


def new_token() -> str:
    """A new admin bearer token (shown once, stored only as its hash)."""
    return "ff_" + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
