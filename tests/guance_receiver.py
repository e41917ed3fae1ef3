"""A local stand-in for DataKit and DataWay (no DataKit binary is available here): an aiohttp
app that checks every request against the documented HTTP API and keeps what it received.

- ``POST /v1/write/<category>``: ``Content-Type: text/plain``, ``precision`` one of the
  documented units, a body of valid line protocol (parsed strictly below, independently of
  the code under test), the timestamps' digits matching the precision; DataKit mode wants
  ``?input=``, DataWay mode ``?token=`` equal to the expected token (else 401).
- ``POST /v1/query/raw``: ``Content-Type: application/json``, ``{"queries": [{"query": DQL}]}``
  (DataWay: ``token`` in the query string and the body); answers the written points of the
  DQL's measurement (``M::name`` / ``L::name``) as one series.
- ``GET /v1/ping``.

Every violation is answered with a 400 and kept in :attr:`Receiver.violations`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

CATEGORIES = {"metric": "M", "logging": "L", "object": "O", "custom_object": "CO",
              "keyevent": "E", "tracing": "T", "rum": "R", "security": "S", "network": "N"}
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
PRECISIONS = {"n": 19, "u": 16, "ms": 13, "s": 10}  # digits of a present-day timestamp
_FIELD = re.compile(r'"(?:[^"\\]|\\.)*"|-?\d+i|-?\d+u|-?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?'
                    r"|t|T|true|True|TRUE|f|F|false|False|FALSE")


class ProtocolError(ValueError):
    pass


@dataclass
class Received:
    category: str
    measurement: str
    tags: dict[str, str]
    fields: dict[str, object]
    timestamp: int


def _split(text: str, sep: str) -> list[str]:
    """Split on unescaped ``sep`` outside double quotes."""
    parts, cur, quoted, i = [], "", False, 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text):
            cur += text[i:i + 2]
            i += 2
            continue
        if ch == '"':
            quoted = not quoted
        if ch == sep and not quoted:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
        i += 1
    if quoted:
        raise ProtocolError(f"unterminated string in {text!r}")
    return [*parts, cur]


def _unescape(text: str) -> str:
    return re.sub(r"\\(.)", r"\1", text)


def _value(raw: str) -> object:
    if not _FIELD.fullmatch(raw):
        raise ProtocolError(f"bad field value {raw!r}")
    if raw.startswith('"'):
        return _unescape(raw[1:-1])
    if raw.endswith(("i", "u")):
        return int(raw[:-1])
    if raw[0] in "tTfF":
        return raw[0] in "tT"
    return float(raw)


def _pair(item: str) -> tuple[str, str]:
    key, eq, value = item.partition("=") if "\\=" not in item else _escaped_pair(item)
    if not eq or not key or not value:
        raise ProtocolError(f"bad key=value {item!r}")
    return key, value


def _escaped_pair(item: str) -> tuple[str, str, str]:
    match = re.match(r"((?:[^=\\]|\\.)+)=(.*)", item, re.S)
    if not match:
        raise ProtocolError(f"bad key=value {item!r}")
    return match.group(1), "=", match.group(2)


def parse_line(text: str, category: str, precision: str) -> Received:
    """One line of line protocol, strictly."""
    sections = _split(text, " ")
    if len(sections) != 3:
        raise ProtocolError(f"want `measurement[,tags] fields timestamp`: {text!r}")
    head, fields_text, stamp = sections
    series = _split(head, ",")
    if not series[0]:
        raise ProtocolError(f"no measurement: {text!r}")
    tags = dict(_pair(t) for t in series[1:])
    fields = {_unescape(k): _value(v) for k, v in (_pair(f) for f in _split(fields_text, ","))}
    if not stamp.isdigit() or len(stamp) != PRECISIONS[precision]:
        raise ProtocolError(f"timestamp {stamp!r} is not in precision {precision!r}")
    return Received(category, _unescape(series[0]),
                    {_unescape(k): _unescape(v) for k, v in tags.items()}, fields, int(stamp))


@dataclass
class Receiver:
    """``token`` set: DataWay mode; unset: DataKit mode."""

    token: str | None = None
    received: list[Received] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    queries: list[dict[str, object]] = field(default_factory=list)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._guard])
        app.router.add_get("/v1/ping", self._ping)
        app.router.add_post("/v1/write/{category}", self._write)
        app.router.add_post("/v1/query/raw", self._query)
        return app

    @web.middleware
    async def _guard(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if self.token is not None and request.query.get("token") != self.token:
            self.violations.append(f"{request.method} {request.path}: wrong or missing token")
            return web.json_response({"error_code": "dataway.tokenNotFound"}, status=401)
        try:
            return await handler(request)
        except (ProtocolError, ValueError, KeyError, TypeError) as exc:
            self.violations.append(f"{request.method} {request.path}: {exc}")
            return web.json_response({"error_code": "datakit.badRequest",
                                      "message": str(exc)}, status=400)

    async def _ping(self, request: web.Request) -> web.Response:
        return web.json_response({"content": {"version": "protocol-checking-receiver"}})

    async def _write(self, request: web.Request) -> web.Response:
        category = request.match_info["category"]
        if category not in CATEGORIES:
            raise ProtocolError(f"unknown category {category!r}")
        if request.content_type != "text/plain":
            raise ProtocolError(f"Content-Type {request.content_type!r}, want text/plain")
        if self.token is None and not request.query.get("input"):
            raise ProtocolError("a DataKit write names its ?input=")
        precision = request.query.get("precision", "n")
        if precision not in PRECISIONS:
            raise ProtocolError(f"unknown precision {precision!r}")
        lines = [x for x in (await request.text()).split("\n") if x.strip()]
        if not lines:
            raise ProtocolError("empty body")
        self.received.extend(parse_line(x, category, precision) for x in lines)
        return web.json_response({})

    async def _query(self, request: web.Request) -> web.Response:
        if request.content_type != "application/json":
            raise ProtocolError(f"Content-Type {request.content_type!r}, want application/json")
        body = json.loads(await request.text())
        if self.token is not None and body.get("token") != self.token:
            raise ProtocolError("a DataWay query carries its token in the body too")
        queries = body["queries"]
        if not isinstance(queries, list) or not queries or not isinstance(queries[0]["query"], str):
            raise ProtocolError('want {"queries": [{"query": "<DQL>"}]}')
        self.queries.extend(queries)
        return web.json_response({"content": [self._series(q["query"]) for q in queries]})

    def _series(self, dql: str) -> dict[str, object]:
        match = re.match(r"\s*([A-Z]+)::`?([^`:\s]+)`?", dql)
        if not match:
            raise ProtocolError(f"not a DQL query: {dql!r}")
        found = [r for r in self.received
                 if CATEGORIES[r.category] == match.group(1) and r.measurement == match.group(2)]
        if not found:
            return {"series": None}
        names = sorted({k for r in found for k in r.fields})
        values = [[r.timestamp // 10**6, *(r.fields.get(k) for k in names)] for r in found]
        return {"series": [{"name": match.group(2), "columns": ["time", *names],
                            "values": values}]}
