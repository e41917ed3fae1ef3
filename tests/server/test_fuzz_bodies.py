"""Property-based fuzzing of what an anonymous caller controls on the sync/async API routes:
the body (bytes, JSON of any shape and depth, forms), its content type and charset, the
format, and the kwargs/options of the query. Whatever comes in, the answer is never a 5xx
and no request keeps the event loop busy for 100 ms or more.

The loop is watched with :class:`tests.server.loopprobe.LoopHold` (CPU time of this thread
between two ticks of a 2 ms timer: a busy CI machine does not fail the bound).
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.server.conftest import Api, FakeWorker
from tests.server.loopprobe import LoopHold

pytestmark = pytest.mark.usefixtures("published")

# seconds of uninterrupted loop work allowed per request. The loop probe counts CPU time, not
# wall time, but a CPU shared with other busy processes (two cores, siblings, caches) still
# stretches it: 100 ms on a quiet machine (what the edge is built for), 2.5x that here so the
# test asserts "no body ever holds the loop", not the machine's speed.
MAX_BLOCK = 0.250

scalars = (st.none() | st.booleans() | st.integers(-2**70, 2**70)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=30)
OPTION_NAMES = ["maxWait", "idempotencyKey", "returnType", "unbox", "async", "eta", "delay",
                "queue", "bogus"]
options = st.dictionaries(st.sampled_from(OPTION_NAMES),
                          json_values | st.sampled_from([1e300, -1, 0, "raw", "jsonDumps", "x" * 300]),
                          max_size=3)


def deep_json(depth: int) -> bytes:
    return b'{"kwargs": {"k": ' + b"[" * depth + b"]" * depth + b"}}"


bodies = st.one_of(
    st.builds(lambda v: json.dumps(v).encode(), json_values),
    st.builds(lambda k, o: json.dumps({"kwargs": k, "options": o}).encode(),
              st.dictionaries(st.text(max_size=8), json_values, max_size=3), options),
    st.integers(1, 1500).map(deep_json),
    st.integers(0, 60_000).map(lambda n: b"-" + b"b" * n),  # quadratic for punycode
    st.binary(max_size=2000),
    st.text(max_size=300).map(str.encode),
)
CONTENT_TYPES = [None, "application/json", "text/plain", "application/x-www-form-urlencoded",
                 "multipart/form-data; boundary=XyZ", "application/octet-stream",
                 "application/vnd.fuzz+json", "text/html", "image/png"]
CHARSETS = [None, "utf-8", "UTF-8", "latin-1", "us-ascii", "gbk", "utf-16", "punycode", "utf-7",
            "idna", "base64", "rot13", "x-unknown", ""]
ROUTES = ["sync", "sync/s", "async", "async/simplified"]


async def one_request(api: Api, path: str, method: str, body: bytes, ctype: str | None,
                      charset: str | None, query: dict[str, str]) -> tuple[int, float]:
    headers: dict[str, str] = {}
    if ctype is not None:
        headers["Content-Type"] = ctype + (f"; charset={charset}" if charset is not None else "")
    async with LoopHold() as hold:
        resp = await api.client.request(method, path, data=body if method == "POST" else None,
                                        headers=headers, params=query)
        await resp.read()
    return resp.status, hold.worst


@pytest.fixture
async def entries(api: Api) -> dict[str, str]:
    out = {}
    for kind in ("sync", "async"):
        entry = await api.create(f"/api/v1/{kind}-apis", {"funcId": "demo__basic.echo"})
        out[kind] = entry["id"]
    return out


@settings(max_examples=200, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.data_too_large])
@given(route=st.sampled_from(ROUTES), body=bodies, ctype=st.sampled_from(CONTENT_TYPES),
       charset=st.sampled_from(CHARSETS), get=st.booleans(),
       query=st.dictionaries(st.sampled_from(["kwargs", "options", "x"]),
                             st.one_of(st.builds(json.dumps, json_values),
                                       st.builds(json.dumps, options), st.text(max_size=40)),
                             max_size=2))
async def test_no_body_makes_a_5xx_or_blocks_the_loop(
        api: Api, fake_worker: FakeWorker, entries: dict[str, str], route: str, body: bytes,
        ctype: str | None, charset: str | None, get: bool, query: dict[str, Any]) -> None:
    kind, _, fmt = route.partition("/")
    path = f"/api/v1/{kind}/{entries[kind]}" + (f"/{fmt}" if fmt else "")
    status, worst = await one_request(api, path, "GET" if get else "POST", body, ctype, charset,
                                      query)
    assert status < 500, (path, ctype, charset, body[:80], query)
    assert worst < MAX_BLOCK, f"the loop was held {worst * 1000:.0f} ms ({ctype}, {charset})"
