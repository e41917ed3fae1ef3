"""The ``httpDigest`` API auth (RFC 7616): ``qop=auth`` with MD5 (the default, what DataFlux
Func offers) or SHA-256 (``"algorithm": "SHA-256"`` in the config).

Nonces are stateless: ``<issued epoch s>.<HMAC-SHA256 of it and the realm>`` keyed with a key
derived from the deployment secret, so every Server replica accepts every other's nonces. A
nonce older than :data:`NONCE_TTL` whose signature is still right is *stale*: the 401 then
says ``stale=true`` and a client retries with the new nonce without asking for the password
again. Without server-side state, the nonce count (``nc``) is not tracked: a captured
request can be replayed to the same URI until its nonce goes stale.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import re
from collections.abc import Mapping
from typing import Any

from fluxfunc_common.crypto import Cipher
from fluxfunc_common.settings import Settings

REALM = "fluxfunc"
NONCE_TTL = 300.0  # seconds a nonce is fresh
OPAQUE = hashlib.sha256(b"fluxfunc-digest-opaque").hexdigest()[:32]
HASHES = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}

_PARAM = re.compile(r'([A-Za-z-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^,\s]*))')


def nonce_key(settings: Settings) -> bytes:
    """The HMAC key of nonces: derived from (never equal to) the deployment secret."""
    return _derive(settings.cipher_secrets()[0])


@functools.lru_cache(maxsize=4)
def _derive(secret: str) -> bytes:
    return hashlib.sha256(b"fluxfunc-digest-nonce\0" + secret.encode()).digest()


def _sign(key: bytes, issued: str) -> str:
    return hmac.new(key, f"{issued}:{REALM}".encode(), hashlib.sha256).hexdigest()[:40]


def new_nonce(key: bytes, now: float) -> str:
    issued = str(int(now))
    return f"{issued}.{_sign(key, issued)}"


def nonce_state(key: bytes, nonce: str, now: float) -> str:
    """``"fresh"``, ``"stale"`` (signed by us, too old) or ``"bad"``."""
    issued, _, sig = nonce.partition(".")
    if not issued.isdigit() or not hmac.compare_digest(sig.encode(), _sign(key, issued).encode()):
        return "bad"
    age = now - int(issued)
    if age < -5:  # issued in the future: clocks of replicas more than a few seconds apart
        return "bad"
    return "fresh" if age <= NONCE_TTL else "stale"


def challenge(key: bytes, now: float, algorithm: str, *, stale: bool = False) -> dict[str, str]:
    """The ``WWW-Authenticate`` header of a 401."""
    value = (f'Digest realm="{REALM}", qop="auth", algorithm={algorithm}, '
             f'nonce="{new_nonce(key, now)}", opaque="{OPAQUE}"')
    if stale:
        value += ", stale=true"
    return {"WWW-Authenticate": value}


def parse_authorization(header: str) -> dict[str, str] | None:
    """The parameters of an ``Authorization: Digest …`` header (None for any other scheme)."""
    scheme, _, rest = header.strip().partition(" ")
    if scheme.lower() != "digest":
        return None
    params: dict[str, str] = {}
    for match in _PARAM.finditer(rest):
        quoted, bare = match.group(2), match.group(3)
        params[match.group(1).lower()] = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare
    return params


def expected_response(params: Mapping[str, str], password: str, method: str, algorithm: str) -> str:
    """RFC 7616 §3.4.1 with qop=auth: H(H(A1):nonce:nc:cnonce:qop:H(A2))."""
    h = HASHES[algorithm]

    def digest(text: str) -> str:
        return h(text.encode()).hexdigest()

    ha1 = digest(f"{params['username']}:{params['realm']}:{password}")
    ha2 = digest(f"{method}:{params['uri']}")
    return digest(f"{ha1}:{params['nonce']}:{params['nc']}:{params['cnonce']}:auth:{ha2}")


def configured_algorithm(config: Mapping[str, Any]) -> str:
    algorithm = str(config.get("algorithm") or "MD5").upper()
    return algorithm if algorithm in HASHES else "MD5"


def user_password(config: Mapping[str, Any], username: str, cipher: Cipher | None) -> str | None:
    """The password of ``username`` (decrypted from ``passwordCipher``), or None."""
    for entry in config.get("users") or []:
        if not hmac.compare_digest(str(entry.get("username", "")).encode(), username.encode()):
            continue
        if entry.get("password") is not None:
            return str(entry["password"])
        if entry.get("passwordCipher") and cipher is not None:
            return cipher.decrypt(str(entry["passwordCipher"]))
    return None


REQUIRED = ("username", "realm", "nonce", "uri", "response", "qop", "nc", "cnonce")


def verify(config: Mapping[str, Any], params: Mapping[str, str], *, method: str, uri: str,
           key: bytes, now: float, cipher: Cipher | None) -> str:
    """``"ok"``, ``"stale"`` (right password, old nonce) or ``"bad"``."""
    algorithm = configured_algorithm(config)
    if any(not params.get(name) for name in REQUIRED) or params["qop"] != "auth" \
            or params["realm"] != REALM or params.get("algorithm", "MD5").upper() != algorithm \
            or params["uri"] != uri:
        return "bad"
    state = nonce_state(key, params["nonce"], now)
    password = user_password(config, params["username"], cipher)
    if state == "bad" or password is None:
        return "bad"
    expected = expected_response(params, password, method, algorithm)
    if not hmac.compare_digest(expected.encode(), params["response"].lower().encode()):
        return "bad"
    return "ok" if state == "fresh" else "stale"
