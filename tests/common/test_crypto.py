"""Secrets at rest: the versioned ciphertext format, the HKDF key, old formats and old secrets
still readable, and every ``*Cipher`` field found for a rotation."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.fernet import Fernet

from fluxfunc_common.crypto import Cipher, check_secret, new_token, reseal_fields
from fluxfunc_common.errors import ConfigError

SECRET = "s" * 32


def test_current_format_is_versioned_and_not_the_sha256_key() -> None:
    sealed = Cipher(SECRET).encrypt("pw")
    assert sealed.startswith("v2:") and Cipher(SECRET).decrypt(sealed) == "pw"
    sha_key = base64.urlsafe_b64encode(hashlib.sha256(SECRET.encode()).digest())
    with pytest.raises(Exception):  # noqa: B017 - any failure: the key is not the old one
        Fernet(sha_key).decrypt(sealed.removeprefix("v2:").encode())


def test_first_format_stays_readable() -> None:
    legacy_key = base64.urlsafe_b64encode(hashlib.sha256(SECRET.encode()).digest())
    legacy = Fernet(legacy_key).encrypt(b"old").decode()
    assert Cipher(SECRET).decrypt(legacy) == "old"
    assert Cipher(SECRET).reseal(legacy).startswith("v2:")


def test_previous_secrets_open_what_they_sealed() -> None:
    old = Cipher("o" * 32).encrypt("pw")
    with pytest.raises(ConfigError, match="previous_secrets"):
        Cipher(SECRET).decrypt(old)
    both = Cipher(SECRET, ["o" * 32])
    assert both.decrypt(old) == "pw" and Cipher(SECRET).decrypt(both.reseal(old)) == "pw"


def test_reseal_fields_finds_every_cipher_field() -> None:
    old = Cipher("o" * 32)
    data = {"id": "x", "apiAuth": {"type": "httpBasic", "users": [
        {"username": "a", "passwordCipher": old.encrypt("p1")}]}, "valueCipher": old.encrypt("v")}
    out = reseal_fields(data, Cipher(SECRET, ["o" * 32]))
    fresh = Cipher(SECRET)
    assert fresh.decrypt(out["valueCipher"]) == "v"
    assert fresh.decrypt(out["apiAuth"]["users"][0]["passwordCipher"]) == "p1"
    assert out["id"] == "x" and out["apiAuth"]["users"][0]["username"] == "a"


def test_weak_secrets_are_refused_and_generated_ones_are_long() -> None:
    for weak in ("", "short", "x" * 31, "change-me-to-a-long-random-string"):
        with pytest.raises(ConfigError):
            check_secret(weak)
    check_secret("x" * 32)
    check_secret(new_token()[3:])  # what `fluxfunc up` generates
