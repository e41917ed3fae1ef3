"""The HTTP connectors (``influxdb``, ``datakit``, ``dataway``): one endpoint built from a
config (``url``, or ``protocol``/``host``/``port``) and plain blocking requests with the
standard library (no extra client: docs/connectors.md)."""

from __future__ import annotations

import base64
import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

from fluxfunc_common.connectors.types import ConnectorConfig


class HttpStatusError(Exception):
    """The server answered with an HTTP error status."""

    def __init__(self, status: int, body: str) -> None:
        denied = " (not authorized)" if status in (401, 403) else ""
        super().__init__(f"HTTP {status}{denied}: {body[:300]}")
        self.status = status
        self.body = body


@dataclass(frozen=True)
class Response:
    status: int
    text: str

    def json(self) -> object:
        return json.loads(self.text) if self.text.strip() else None


@dataclass(frozen=True)
class HttpEndpoint:
    """``base`` is ``scheme://host:port`` (no trailing slash)."""

    base: str
    timeout: float

    @classmethod
    def of(cls, config: ConnectorConfig, default_port: int) -> HttpEndpoint:
        if config.url:
            parts = urlsplit(config.url)
            return cls(f"{parts.scheme or 'http'}://{parts.netloc}", config.connect_timeout())
        scheme = (config.protocol or ("https" if config.use_ssl else "http")).lower()
        host = config.host or "127.0.0.1"
        return cls(f"{scheme}://{host}:{config.port or default_port}", config.connect_timeout())

    def request(self, method: str, path: str, *, query: dict[str, str] | None = None,
                body: bytes | None = None, content_type: str | None = None,
                auth: tuple[str, str] | None = None) -> Response:
        """One request; an HTTP status of 400 or more raises :class:`HttpStatusError`."""
        url = self.base + path + (f"?{urlencode(query)}" if query else "")
        req = urllib.request.Request(url, data=body, method=method)
        if content_type:
            req.add_header("Content-Type", content_type)
        if auth is not None:
            pair = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
            req.add_header("Authorization", f"Basic {pair}")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                return Response(resp.status, resp.read().decode("utf-8", "replace"))
        except urllib.error.HTTPError as exc:
            raise HttpStatusError(exc.code, exc.read().decode("utf-8", "replace")) from None
