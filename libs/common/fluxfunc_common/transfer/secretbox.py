"""Passphrase encryption of exported secrets: scrypt (memory-hard KDF, random salt) derives an
AES-256-GCM key; the box is JSON naming its parameters, so a later format can be told apart.

A wrong passphrase and a tampered box are the same error (GCM authenticates the ciphertext).
"""

from __future__ import annotations

import base64
import json
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from fluxfunc_common.errors import BadRequest

FORMAT = "fluxfunc-secretbox-1"
SCRYPT_N = 2**15
SCRYPT_R = 8
SCRYPT_P = 1
MIN_PASSPHRASE = 8


def _key(passphrase: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=n, r=r, p=p).derive(passphrase.encode())


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def seal(plain: bytes, passphrase: str) -> dict[str, object]:
    """The box of ``plain`` (JSON-able): format, scrypt parameters, salt, nonce, ciphertext."""
    if len(passphrase) < MIN_PASSPHRASE:
        raise BadRequest(f"the passphrase must have at least {MIN_PASSPHRASE} characters")
    salt, nonce = os.urandom(16), os.urandom(12)
    key = _key(passphrase, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return {"format": FORMAT, "kdf": {"name": "scrypt", "n": SCRYPT_N, "r": SCRYPT_R,
                                      "p": SCRYPT_P, "salt": _b64(salt)},
            "nonce": _b64(nonce), "ciphertext": _b64(AESGCM(key).encrypt(nonce, plain, FORMAT.encode()))}


def open_box(box: object, passphrase: str) -> bytes:
    """The plain bytes of a box; BadRequest for a wrong passphrase or a damaged box."""
    try:
        assert isinstance(box, dict) and box.get("format") == FORMAT
        kdf = box["kdf"]
        key = _key(passphrase, base64.b64decode(kdf["salt"]), int(kdf["n"]), int(kdf["r"]),
                   int(kdf["p"]))
        return AESGCM(key).decrypt(base64.b64decode(box["nonce"]),
                                   base64.b64decode(box["ciphertext"]), FORMAT.encode())
    except InvalidTag:
        raise BadRequest("cannot open the exported secrets: wrong passphrase") from None
    except (AssertionError, KeyError, TypeError, ValueError):
        raise BadRequest("the exported secrets are damaged or in an unknown format") from None


def seal_json(value: object, passphrase: str) -> dict[str, object]:
    return seal(json.dumps(value, sort_keys=True).encode(), passphrase)


def open_json(box: object, passphrase: str) -> object:
    return json.loads(open_box(box, passphrase))
