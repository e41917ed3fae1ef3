"""Password hashing for console users: stdlib scrypt (memory-hard), a random salt per hash,
and the parameters stored with the hash so they can be raised later without breaking old ones.

The stored form is ``scrypt$<log2 n>$<r>$<p>$<salt b64>$<hash b64>``; :func:`verify` compares
in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from functools import cache

LOG2_N, R, P = 15, 8, 1  # 32 MiB of memory per hash (128 * r * n bytes)
SALT_BYTES, HASH_BYTES = 16, 32
MAX_PASSWORD_CHARS = 1024
MIN_PASSWORD_CHARS = 8
_MAXMEM = 64 * 1024 * 1024


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _scrypt(password: str, salt: bytes, log2_n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=1 << log2_n, r=r, p=p,
                          maxmem=_MAXMEM, dklen=HASH_BYTES)


def hash_password(password: str) -> str:
    """The stored form of ``password`` (slow on purpose: run it off the event loop)."""
    salt = secrets.token_bytes(SALT_BYTES)
    digest = _scrypt(password, salt, LOG2_N, R, P)
    return f"scrypt${LOG2_N}${R}${P}${_b64(salt)}${_b64(digest)}"


def verify(password: str, stored: str) -> bool:
    """Whether ``password`` matches the stored form (False for a malformed one)."""
    try:
        kind, log2_n, r, p, salt, digest = stored.split("$")
        if kind != "scrypt" or len(password) > MAX_PASSWORD_CHARS:
            return False
        actual = _scrypt(password, base64.b64decode(salt), int(log2_n), int(r), int(p))
        return hmac.compare_digest(actual, base64.b64decode(digest))
    except (ValueError, TypeError):
        return False


@cache
def dummy_hash() -> str:
    """A hash to verify against for an unknown user, so that answer takes as long."""
    return hash_password(secrets.token_urlsafe(16))


def generate_password() -> str:
    """A random password to print once (about 120 bits)."""
    return secrets.token_urlsafe(15)


def check_strength(password: str) -> None:
    """ValueError when ``password`` is too short or too long."""
    if not MIN_PASSWORD_CHARS <= len(password) <= MAX_PASSWORD_CHARS:
        raise ValueError(f"a password has {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters")
