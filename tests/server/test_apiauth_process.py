"""``httpDigest`` and ``func`` API auth against a real ``fluxfunc-server`` and
``fluxfunc-worker`` (docs/http-api.md "API auth"): a real HTTP Digest client
(``requests.auth.HTTPDigestAuth``), and auth funcs run by the Worker."""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from requests.auth import HTTPDigestAuth
from tests.conftest import RedisServer
from tests.server.processes import create_token, running, server, worker, write_config

from fluxfunc_common.proc.localredis import free_port

pytestmark = pytest.mark.slow

SCRIPT = '''
import time

@DFF.API("Echo")
def echo(**kwargs):
    return kwargs

@DFF.API("Auth")
def auth():
    req = _DFF_HTTP_REQUEST
    return req["headers"].get("x-pass") == "yes" or req["query"].get("token") == "t" \\
        or (isinstance(req["body"], dict) and req["body"].get("pass") == "body")

@DFF.API("Auth raises")
def auth_raises():
    raise Exception("Bad Auth Token")

@DFF.API("Auth slow", timeout=20)
def auth_slow():
    time.sleep(4)
    return True
'''


class Client:
    def __init__(self, base: str, token: str) -> None:
        self.base = base
        self.admin = {"Authorization": f"Bearer {token}"}

    def data(self, method: str, path: str, body: Any = None) -> Any:
        resp = requests.request(method, self.base + path, json=body, headers=self.admin, timeout=60)
        assert resp.status_code == 200, (resp.status_code, resp.text[:1000])
        return resp.json()["data"]

    def sync_api(self, func: str, **fields: Any) -> str:
        entry = self.data("POST", "/api/v1/sync-apis", {"funcId": f"demo__auth.{func}", **fields})
        return str(entry["id"])


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory, redis_server: RedisServer) -> Iterator[Client]:
    tmp = tmp_path_factory.mktemp("apiauth")
    port = free_port()
    config = write_config(tmp / "fluxfunc.yaml", redis_url=redis_server.url,
                          namespace="apiauth" + secrets.token_hex(4),
                          store_url=f"sqlite:///{tmp / 'store.db'}", port=port,
                          worker={"concurrency": 2}, server={"api_auth_func_timeout": 1})
    base = f"http://127.0.0.1:{port}"
    with running(server(config, tmp, tmp), ready_url=f"{base}/healthz"), \
            running(worker(config, tmp, tmp)) as worker_proc:
        client = Client(base, create_token(config))
        client.data("POST", "/api/v1/scripts", {"id": "demo__auth", "code": SCRIPT})
        client.data("POST", "/api/v1/scripts/demo__auth/publish")
        deadline = time.monotonic() + 60
        while not client.data("GET", "/api/v1/ops/overview")["services"]["worker"]:
            assert worker_proc.proc is not None and worker_proc.proc.poll() is None, worker_proc.output()
            assert time.monotonic() < deadline, worker_proc.output()
            time.sleep(0.2)
        yield client


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_http_digest_with_a_real_client(deployment: Client, algorithm: str) -> None:
    c = deployment
    users = [{"username": "ann", "password": "pw1"}, {"username": "bob", "password": "pw2"}]
    sid = c.sync_api("echo", apiAuth={"type": "httpDigest", "users": users, "algorithm": algorithm})
    url = f"{c.base}/api/v1/sync/{sid}/s"
    bare = requests.post(url, json={"a": 1}, timeout=60)
    assert bare.status_code == 401 and bare.json()["reason"] == "EAPIAuth"
    challenge = bare.headers["WWW-Authenticate"]
    assert challenge.startswith("Digest ") and f"algorithm={algorithm}" in challenge
    assert 'qop="auth"' in challenge and "stale" not in challenge
    session = requests.Session()
    session.auth = HTTPDigestAuth("ann", "pw1")
    ok = session.post(url + "?q=1", json={"a": 1}, timeout=60)
    assert ok.status_code == 200, ok.text
    assert ok.json() == {"a": 1}  # the digest covered the URI with its query
    assert session.get(url, params={"x": "y"}, timeout=60).json() == {"x": "y"}
    wrong = requests.post(url, json={}, auth=HTTPDigestAuth("ann", "pw2"), timeout=60)
    assert wrong.status_code == 401
    unknown = requests.post(url, json={}, auth=HTTPDigestAuth("eve", "pw1"), timeout=60)
    assert unknown.status_code == 401
    basic = requests.post(url, json={}, auth=("ann", "pw1"), timeout=60)  # Basic is not Digest
    assert basic.status_code == 401


def test_http_digest_through_a_definition(deployment: Client) -> None:
    c = deployment
    auth = c.data("POST", "/api/v1/api-auths", {"title": "digest", "type": "httpDigest", "config": {
        "users": [{"username": "ann", "password": "pw1"}]}})
    assert "pw1" not in str(auth)
    sid = c.sync_api("echo", apiAuthId=auth["id"])
    url = f"{c.base}/api/v1/sync/{sid}/s"
    ok = requests.post(url, json={"b": 2}, auth=HTTPDigestAuth("ann", "pw1"), timeout=60)
    assert ok.status_code == 200 and ok.json() == {"b": 2}
    assert requests.post(url, json={}, timeout=60).status_code == 401


def test_func_auth_decides_with_the_request(deployment: Client) -> None:
    c = deployment
    sid = c.sync_api("echo", apiAuth={"type": "func", "funcId": "demo__auth.auth"})
    url = f"{c.base}/api/v1/sync/{sid}/s"
    refused = requests.post(url, json={"a": 1}, timeout=60)
    assert refused.status_code == 401 and refused.json()["reason"] == "EAPIAuth"
    by_header = requests.post(url, json={"a": 1}, headers={"X-Pass": "yes"}, timeout=60)
    assert by_header.status_code == 200 and by_header.json() == {"a": 1}
    assert requests.get(url, params={"token": "t"}, timeout=60).json() == {"token": "t"}
    by_body = requests.post(url, json={"pass": "body"}, timeout=60)
    assert by_body.status_code == 200 and by_body.json() == {"pass": "body"}
    deadline = time.monotonic() + 30  # task records are written after the reply
    while not (tasks := c.data("GET", "/api/v1/task-records?origin=apiAuth&funcId=demo__auth.auth")):
        assert time.monotonic() < deadline, "no task record of the auth func"
        time.sleep(0.2)
    assert all(t["originId"] == sid for t in tasks)


@pytest.mark.parametrize(("func", "why"), [("auth_raises", "refused"), ("auth_slow", "in time")])
def test_func_auth_error_or_timeout_is_401(deployment: Client, func: str, why: str) -> None:
    c = deployment
    auth = c.data("POST", "/api/v1/api-auths", {"type": "func", "config": {
        "funcId": f"demo__auth.{func}"}})
    sid = c.sync_api("echo", apiAuthId=auth["id"])
    resp = requests.post(f"{c.base}/api/v1/sync/{sid}/s", json={}, headers={"X-Pass": "yes"},
                         timeout=60)
    assert resp.status_code == 401 and resp.json()["reason"] == "EAPIAuth", resp.text
    assert why in resp.json()["message"]
