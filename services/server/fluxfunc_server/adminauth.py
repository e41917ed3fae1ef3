"""API credentials: a bearer token, or DataFlux Func access-key signing; each carries a role
(:mod:`fluxfunc_common.roles`; tokens made before roles existed are ``admin``).

- ``Authorization: Bearer <token>``: the token's SHA-256 must be a stored token
  (``fluxfunc admin create-token``). A positive answer (its id and role) is cached in-process
  for half a second so the store stays off the hot path yet a revoked token stops working on
  every Server within a second; a negative one is never cached.
- Access key (what the DataFlux Func SDK sends): ``X-Dff-Ak-Id``, ``X-Dff-Ak-Timestamp``,
  ``X-Dff-Ak-Nonce``, ``X-Dff-Ak-Sign`` = hex HMAC-SHA1(secret, string to sign) where the
  string is ``METHOD&PATH?QUERY&timestamp&nonce&md5(body)`` and the body is the sorted,
  compact JSON the SDK sends (``sdk/dataflux_func_sdk.py`` ``get_sign``); a request without
  a body is signed, as the SDKs do, with the md5 of ``{}`` (the md5 of the empty body is
  accepted too). The timestamp may be 900 s off, and a nonce is accepted once: it is
  remembered (``SET NX`` on ``keys.nonce``) for 24 h, DataFlux Func's own nonce window and
  far beyond the skew, so a request signed 900 s in the future cannot be replayed either.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from typing import Any

import orjson
from aiohttp import web

from fluxfunc_common.crypto import hash_token
from fluxfunc_common.errors import ClientError, ConfigError, UserAuthError
from fluxfunc_common.logs import get_logger
from fluxfunc_common.roles import Role
from fluxfunc_server.appkeys import CTX
from fluxfunc_server.bodies import check_depth
from fluxfunc_server.context import AppContext
from fluxfunc_server.principal import Principal, Via

TOKEN_CACHE_SECONDS = 0.5  # a revoked token is refused everywhere within this (and < 1 s)
TOKEN_CACHE_MAX = 1024
SKEW_SECONDS = 900
NONCE_TTL_SECONDS = 24 * 3600  # DataFlux Func keeps nonces a day (_WEB_AK_NONCE_TTL)
EMPTY_BODY_SIGNED_AS = b"{}"  # the SDKs sign a missing body as json_dumps(body or {})
CANONICAL_MAX_BYTES = 1024 * 1024
UNKNOWN_KEY_SECRET = "not-a-key"  # signs for unknown key ids: the same work, then refused

AK_HEADERS = ("X-Dff-Ak-Id", "X-Dff-Ak-Timestamp", "X-Dff-Ak-Nonce", "X-Dff-Ak-Sign")
log = get_logger("server.auth")


def sends_api_credentials(request: web.Request) -> bool:
    """Whether the request carries a bearer token or access-key headers."""
    return bool(request.headers.get("Authorization") or request.headers.get("X-Dff-Ak-Id")
                or request.headers.get("X-Dff-Ak-Sign"))


async def api_principal(request: web.Request) -> Principal:
    """The token or access key the request authenticates with, else UserAuthError."""
    header = request.headers.get("Authorization", "")
    if header:
        return await _check_bearer(request.app[CTX], header)
    if request.headers.get("X-Dff-Ak-Id") or request.headers.get("X-Dff-Ak-Sign"):
        return await _check_access_key(request, request.app[CTX])
    raise UserAuthError("authentication required: sign in, or send `Authorization: Bearer "
                        "<token>` or DataFlux Func access-key headers")


async def _check_bearer(ctx: AppContext, header: str) -> Principal:
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise UserAuthError("the Authorization header must be `Bearer <token>`")
    digest = hash_token(token)
    now = time.monotonic()
    cache = ctx.token_cache  # token hash → (monotonic expiry of the positive answer, principal)
    cached = cache.get(digest)
    if cached is not None and cached[0] > now:
        return cached[1]
    found = await ctx.store.find_admin_token(digest)
    if found is None:
        cache.pop(digest, None)
        raise UserAuthError("invalid token")
    principal = Principal(f"token:{found.id}", Role(found.role), Via.TOKEN)
    if len(cache) >= TOKEN_CACHE_MAX:
        cache.clear()
    cache[digest] = (now + TOKEN_CACHE_SECONDS, principal)
    return principal


async def _check_access_key(request: web.Request, ctx: AppContext) -> Principal:
    ak_id, timestamp, nonce, sign = (request.headers.get(h, "").strip() for h in AK_HEADERS)
    if not (ak_id and timestamp and nonce and sign):
        raise UserAuthError("access-key signing needs X-Dff-Ak-Id, -Timestamp, -Nonce and -Sign")
    try:
        sent_at = int(timestamp)
    except ValueError:
        raise UserAuthError("X-Dff-Ak-Timestamp must be epoch seconds") from None
    if abs(ctx.clock.time() - sent_at) > SKEW_SECONDS:
        raise UserAuthError("X-Dff-Ak-Timestamp is too far from the server time (max 900 s)")
    # An unknown key id and a wrong signature get the same answer after the same work, so
    # the answer never tells which key ids exist; the body is only hashed until the
    # signature is verified (parsed at most for the canonical form, bounded).
    secret, role = await _secret(ctx, ak_id)
    body = await request.read()
    text_to_sign = f"{request.method.upper()}&{request.raw_path}&{timestamp}&{nonce}&"
    valid = any(hmac.compare_digest(sign.lower(), _sign(secret or UNKNOWN_KEY_SECRET, text_to_sign + md5))
                for md5 in body_digests(body, ctx.settings.server.max_json_depth))
    if not (valid and secret is not None):
        raise UserAuthError("invalid access-key signature")
    if not await ctx.redis.set(ctx.keys.nonce(ak_id, nonce), b"1", nx=True, ex=NONCE_TTL_SECONDS):
        raise UserAuthError("access-key nonce already used")
    return Principal(f"ak:{ak_id}", Role(role), Via.ACCESS_KEY)


async def _secret(ctx: AppContext, ak_id: str) -> tuple[str | None, str]:
    """The key's secret and role; None for an unknown key (or one whose secret cannot be
    decrypted, which is logged: the caller is told nothing more than for a wrong signature)."""
    found = await ctx.store.access_key(ak_id)
    if found is None:
        return None, Role.VIEWER.value
    encrypted, role = found
    try:
        return ctx.cipher.decrypt(encrypted), role
    except ConfigError:
        log.warning("access key secret cannot be decrypted (was `secret` changed?)", ak_id=ak_id)
        return None, role


def _sign(secret: str, text: str) -> str:
    return hmac.new(secret.encode(), text.encode(), hashlib.sha1).hexdigest()


def body_digests(body: bytes, max_depth: int) -> list[str]:
    """md5 hex of the body as sent, and of its sorted compact JSON form (as the SDK signs);
    for an empty body also the md5 of ``{}``, which is what the SDKs sign then.

    The SDK signs the exact bytes it sends; re-serialising covers clients that sign the
    canonical form but send the body differently formatted (only for bodies up to
    :data:`CANONICAL_MAX_BYTES` nested at most ``max_depth`` deep: this runs before the
    signature is known to be good).
    """
    out = [hashlib.md5(body).hexdigest()]
    if not body.strip():
        out.append(hashlib.md5(EMPTY_BODY_SIGNED_AS).hexdigest())
        return out
    if len(body) <= CANONICAL_MAX_BYTES:
        try:
            parsed: Any = orjson.loads(body)
            check_depth(parsed, max_depth, "body")
        except (orjson.JSONDecodeError, ClientError):
            return out
        for ascii_only in (True, False):
            canon = json.dumps(parsed, sort_keys=True, separators=(",", ":"), ensure_ascii=ascii_only)
            digest = hashlib.md5(canon.encode()).hexdigest()
            if digest not in out:
                out.append(digest)
    return out


def sign_request(ak_id: str, secret: str, method: str, path_qs: str, body: bytes = b"", *,
                 timestamp: int | None = None, nonce: str | None = None) -> dict[str, str]:
    """The headers a DataFlux Func SDK client sends (used by tests and tooling)."""
    import secrets as _secrets

    ts = str(int(time.time()) if timestamp is None else timestamp)
    nonce = nonce or _secrets.token_hex(16)
    text = f"{method.upper()}&{path_qs}&{ts}&{nonce}&{hashlib.md5(body or EMPTY_BODY_SIGNED_AS).hexdigest()}"
    return {"X-Dff-Ak-Id": ak_id, "X-Dff-Ak-Timestamp": ts, "X-Dff-Ak-Nonce": nonce,
            "X-Dff-Ak-Sign": _sign(secret, text)}
