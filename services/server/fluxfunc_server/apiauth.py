"""API auth of sync/async API entries: ``none``, ``fixedField``, ``httpBasic``, ``httpDigest``
(:mod:`apiauth_digest`) and ``func`` (:mod:`apiauth_func`).

``apiAuth`` shapes accepted (the first is fluxfunc's own, the others DataFlux Func's):

- ``{"type": "none"}`` or absent
- ``{"type": "fixedField", "location": "header|query|body", "field": "x-key", "value": "s3cret"}``
  (stored with ``valueCipher`` instead of ``value``: encrypted with the deployment secret)
- ``{"type": "fixedField", "fields": [{"location", "field", "value"}, …]}`` (any one match passes)
- ``{"type": "httpBasic", "users": [{"username", "password"}]}`` (``passwordCipher`` also
  accepted: encrypted with the deployment secret)
- ``{"type": "httpDigest", "users": […], "algorithm": "MD5|SHA-256"}`` (users as httpBasic)
- ``{"type": "func", "funcId": "demo__auth.check"}``: a published func decides

A fixedField matched in the query or body is removed from what becomes kwargs, as in
DataFlux Func, so the secret never reaches the function. Unlike DataFlux Func, a matched
header and the ``Authorization`` header of httpBasic are also left out of
``_DFF_HTTP_REQUEST`` (the task envelope is readable in Redis by any operator).
"""

from __future__ import annotations

import base64
import binascii
import hmac
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from fluxfunc_common.crypto import Cipher
from fluxfunc_common.errors import APIAuthError
from fluxfunc_server import apiauth_digest as digest


class APIAuthFailed(APIAuthError):
    """API authentication failed."""

    def __init__(self, message: str = "API auth failed", *, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.headers = headers or {}


@dataclass
class AuthInput:
    """What a request offers for API auth; query/body are the parsed, not-yet-kwargs inputs."""

    headers: Mapping[str, str]
    query: Mapping[str, Any]
    body: Any
    strip_query: set[str] = field(default_factory=set)
    strip_body: set[str] = field(default_factory=set)
    strip_headers: set[str] = field(default_factory=set)  # lower-case names
    # who passed: "" (no API auth), "httpBasic:<user>", "httpDigest:<user>", "func" (or
    # "func:<text the auth func returned>") or "fixedField:<rule index>"
    principal: str = ""
    method: str = "GET"  # httpDigest: the request method and target (path and raw query)
    uri: str = ""
    nonce_key: bytes = b""  # httpDigest: apiauth_digest.nonce_key(settings)
    now: float = 0.0  # epoch seconds (httpDigest nonces)


def _same(given: Any, expected: Any) -> bool:
    if not isinstance(given, str) or expected is None:
        return False
    return hmac.compare_digest(given.encode(), str(expected).encode())


def _rule_value(rule: Mapping[str, Any], cipher: Cipher | None) -> Any:
    """A fixedField rule's value: ``valueCipher`` (how the API stores it) or a plain ``value``."""
    if rule.get("valueCipher") and cipher is not None:
        return cipher.decrypt(str(rule["valueCipher"]))
    return rule.get("value")


def check_fixed_field(config: Mapping[str, Any], req: AuthInput, cipher: Cipher | None = None) -> None:
    """Pass when any configured field carries its value; remember which to strip and which
    rule matched (the principal)."""
    rules = config.get("fields") or [config]
    for index, rule in enumerate(rules):
        location, name = rule.get("location"), rule.get("field")
        if not name:
            continue
        value = _rule_value(rule, cipher)
        if location == "header" and _same(req.headers.get(name), value):
            req.strip_headers.add(name.lower())
        elif location == "query" and _same(req.query.get(name), value):
            req.strip_query.add(name)
        elif location == "body" and isinstance(req.body, Mapping) and _same(req.body.get(name), value):
            req.strip_body.add(name)
        else:
            continue
        req.principal = f"fixedField:{index}"
        return
    raise APIAuthFailed("API auth failed: fixed field missing or wrong")


def _basic_credentials(headers: Mapping[str, str]) -> tuple[str, str] | None:
    scheme, _, token = headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "basic" or not token:
        return None
    try:
        user, sep, password = base64.b64decode(token.strip(), validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return (user, password) if sep else None


def check_http_basic(config: Mapping[str, Any], req: AuthInput, cipher: Cipher | None) -> None:
    challenge = {"WWW-Authenticate": 'Basic realm="fluxfunc"'}
    creds = _basic_credentials(req.headers)
    if creds is None:
        raise APIAuthFailed("API auth failed: HTTP Basic credentials required", headers=challenge)
    user, password = creds
    for entry in config.get("users") or []:
        expected = entry.get("password")
        if expected is None and entry.get("passwordCipher") and cipher is not None:
            expected = cipher.decrypt(entry["passwordCipher"])
        if _same(user, entry.get("username")) and _same(password, expected):
            req.strip_headers.add("authorization")
            req.principal = f"httpBasic:{user}"
            return
    raise APIAuthFailed("API auth failed: wrong username or password", headers=challenge)


def check_http_digest(config: Mapping[str, Any], req: AuthInput, cipher: Cipher | None) -> None:
    algorithm = digest.configured_algorithm(config)
    params = digest.parse_authorization(req.headers.get("Authorization", ""))
    verdict = "bad" if params is None else digest.verify(
        config, params, method=req.method, uri=req.uri, key=req.nonce_key, now=req.now,
        cipher=cipher)
    if verdict == "ok":
        assert params is not None
        req.strip_headers.add("authorization")
        req.principal = f"httpDigest:{params['username']}"
        return
    challenge = digest.challenge(req.nonce_key, req.now, algorithm, stale=verdict == "stale")
    message = "stale nonce" if verdict == "stale" else "HTTP Digest credentials required or wrong"
    raise APIAuthFailed(f"API auth failed: {message}", headers=challenge)


def is_func(api_auth: Mapping[str, Any] | None) -> bool:
    """Whether ``api_auth`` is checked by an auth func (:mod:`apiauth_func`, async)."""
    return (api_auth or {}).get("type") == "func"


def needs_body(api_auth: Mapping[str, Any] | None) -> bool:
    """Whether ``api_auth`` can only be checked with the body (a fixedField in the body);
    every other kind is checked before the body is read."""
    if is_func(api_auth):  # the auth func sees the whole request
        return True
    if (api_auth or {}).get("type") != "fixedField":
        return False
    assert api_auth is not None
    return any(rule.get("location") == "body" for rule in api_auth.get("fields") or [api_auth])


def check(api_auth: Mapping[str, Any] | None, req: AuthInput, cipher: Cipher | None = None) -> None:
    """Raise :class:`APIAuthFailed` (401 EAPIAuth) unless the request passes ``api_auth``."""
    kind = (api_auth or {}).get("type") or "none"
    if kind == "none":
        return
    assert api_auth is not None
    if kind == "fixedField":
        check_fixed_field(api_auth, req, cipher)
    elif kind == "httpBasic":
        check_http_basic(api_auth, req, cipher)
    elif kind == "httpDigest":
        check_http_digest(api_auth, req, cipher)
    else:  # an auth type this server does not know must never mean "open"
        raise APIAuthFailed(f"API auth type {kind!r} is not supported")
