"""``httpDigest`` API auth (RFC 7616) in process: signed stateless nonces, stale nonces,
tampering, the URI and algorithm bound into the response (docs/http-api.md "API auth")."""

from __future__ import annotations

import hashlib
import time

import pytest
from tests.server.conftest import Api, FakeWorker

from fluxfunc_common.settings import Settings
from fluxfunc_server import apiauth_digest as digest

pytestmark = pytest.mark.usefixtures("published")


def authorization(nonce: str, uri: str, *, password: str = "pw", method: str = "POST",
                  algorithm: str = "MD5", realm: str = digest.REALM) -> dict[str, str]:
    h = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}[algorithm]

    def d(text: str) -> str:
        return h(text.encode()).hexdigest()

    ha1, ha2 = d(f"ann:{realm}:{password}"), d(f"{method}:{uri}")
    response = d(f"{ha1}:{nonce}:00000001:c0ffee:auth:{ha2}")
    return {"Authorization": f'Digest username="ann", realm="{realm}", nonce="{nonce}", '
                             f'uri="{uri}", algorithm={algorithm}, response="{response}", '
                             f'qop=auth, nc=00000001, cnonce="c0ffee"'}


def test_nonces_are_signed_and_age() -> None:
    key, other = b"k" * 32, b"o" * 32
    nonce = digest.new_nonce(key, 1000.0)
    assert digest.nonce_state(key, nonce, 1000.0 + digest.NONCE_TTL) == "fresh"
    assert digest.nonce_state(key, nonce, 1001.0 + digest.NONCE_TTL) == "stale"
    assert digest.nonce_state(other, nonce, 1000.0) == "bad"
    issued, _, sig = nonce.partition(".")
    assert digest.nonce_state(key, f"{int(issued) + 100}.{sig}", 1200.0) == "bad"  # re-dated
    assert digest.nonce_state(key, "garbage", 1000.0) == "bad"


def test_parse_authorization() -> None:
    parsed = digest.parse_authorization('Digest username="a\\"b", qop=auth, nc=00000001')
    assert parsed == {"username": 'a"b', "qop": "auth", "nc": "00000001"}
    assert digest.parse_authorization("Basic abc") is None


async def test_fresh_stale_and_tampered(api: Api, fake_worker: FakeWorker,
                                        server_settings: Settings) -> None:
    sid = await api.entry("sync-apis", "echo", apiAuth={
        "type": "httpDigest", "users": [{"username": "ann", "password": "pw"}]})
    uri = f"/api/v1/sync/{sid}/s"
    key = digest.nonce_key(server_settings)
    fresh = digest.new_nonce(key, time.time())
    _, body, _ = await api.call("POST", uri, admin=False, json={"a": 1},
                                headers=authorization(fresh, uri))
    assert body == {"a": 1}
    seen = fake_worker.seen[0].http_request
    assert seen is not None and "authorization" not in seen["headers"]
    # stale: signed by us, too old → 401 with stale=true and a new nonce
    old = digest.new_nonce(key, time.time() - digest.NONCE_TTL - 60)
    _, body, resp = await api.call("POST", uri, admin=False, expect=401, json={},
                                   headers=authorization(old, uri))
    assert "stale=true" in resp.headers["WWW-Authenticate"] and "stale" in body["message"]
    # not ours, another URI, another method, the wrong password, another algorithm: plain 401
    for headers in (authorization(digest.new_nonce(b"x" * 32, time.time()), uri),
                    authorization(fresh, f"/api/v1/sync/{sid}"),
                    authorization(fresh, uri, method="GET"),
                    authorization(fresh, uri, password="nope"),
                    authorization(fresh, uri, algorithm="SHA-256"),
                    authorization(fresh, uri, realm="other")):
        _, _, resp = await api.call("POST", uri, admin=False, expect=401, json={}, headers=headers)
        assert "stale" not in resp.headers["WWW-Authenticate"]
    assert len(fake_worker.seen) == 1
