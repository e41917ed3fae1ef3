"""DataFlux Func's encryption of password env variables (and connector passwords).

Current format: ``AESv2:`` + base64 of AES-256-CBC with a zero IV, no padding scheme (the text
is padded with spaces to a multiple of 16, at least one space); the key is the 32 hex digits
of MD5(``~SECRET~salt~``), the salt being the env variable's id. The first format has no
header and uses the secret itself, space-padded to 32 characters, as the key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from fluxfunc_common.errors import BadRequest

HEADER = "AESv2:"
_IV = b"\0" * 16


def _v2_key(secret: str, salt: str | None) -> bytes:
    salted = f"~{secret}~{salt}~" if salt else secret
    return hashlib.md5(salted.encode()).hexdigest().encode()


def _v1_key(secret: str) -> bytes:
    return _pad(secret.encode(), 32)[:32]


def _pad(data: bytes, size: int) -> bytes:
    return data + b" " * (size - len(data) % size)


def encrypt(text: str, secret: str, salt: str | None) -> str:
    """What DataFlux Func stores for ``text`` (used by tests to build a DataFlux Func database)."""
    enc = Cipher(algorithms.AES(_v2_key(secret, salt)), modes.CBC(_IV)).encryptor()
    data = enc.update(_pad(text.encode(), 16)) + enc.finalize()
    return HEADER + base64.b64encode(data).decode()


def decrypt(data: str, secret: str, salt: str | None) -> str:
    """The text of a DataFlux Func ciphertext (either format); BadRequest when it does not open
    with ``secret`` (the result would not be valid UTF-8)."""
    v2 = data.startswith(HEADER)
    key = _v2_key(secret, salt) if v2 else _v1_key(secret)
    try:
        raw = base64.b64decode(data.removeprefix(HEADER), validate=True)
        dec = Cipher(algorithms.AES(key), modes.CBC(_IV)).decryptor()
        return (dec.update(raw) + dec.finalize()).decode().strip()
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise BadRequest("cannot decrypt a DataFlux Func password: is --dff-secret its SECRET?") from None
