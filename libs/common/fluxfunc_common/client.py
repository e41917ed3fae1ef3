"""A small HTTP client of the Server's management API, for the commands that drive a running
deployment from outside (``fluxfunc deploy``, the demo of ``fluxfunc up``).

Where it connects: ``--url`` / ``--token`` flags, else ``$FLUXFUNC_URL`` / ``$FLUXFUNC_TOKEN``,
else what ``fluxfunc up`` left in ``./.fluxfunc/`` (``url`` and ``admin-token``), else
``http://127.0.0.1:8088`` and no token.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp

from fluxfunc_common.errors import FluxfuncError, Unavailable

DEFAULT_URL = "http://127.0.0.1:8088"
STATE_DIR = ".fluxfunc"  # ``fluxfunc up`` keeps its state here, in the working directory
URL_FILE = "url"
TOKEN_FILE = "admin-token"


class ApiError(FluxfuncError):
    """The Server answered with an error envelope."""

    def __init__(self, status: int, reason: str, message: str, detail: dict[str, Any] | None) -> None:
        super().__init__(message, detail)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class Target:
    """Which server to talk to, and with which admin token."""

    url: str
    token: str | None


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def resolve_target(url: str | None = None, token: str | None = None, *,
                   environ: Mapping[str, str] | None = None, state_dir: Path | None = None) -> Target:
    """Flags beat environment beat ``./.fluxfunc/`` beat the defaults."""
    env = os.environ if environ is None else environ
    state = state_dir or Path(STATE_DIR)
    found_url = url or env.get("FLUXFUNC_URL") or _read(state / URL_FILE) or DEFAULT_URL
    found_token = token or env.get("FLUXFUNC_TOKEN") or _read(state / TOKEN_FILE)
    return Target(found_url.rstrip("/"), found_token)


class AdminClient:
    """``async with AdminClient(target) as api: await api.call("GET", "/api/v1/funcs")``."""

    def __init__(self, target: Target, *, timeout: float = 60.0) -> None:
        self.target = target
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> AdminClient:
        headers = {"Authorization": f"Bearer {self.target.token}"} if self.target.token else {}
        self._session = aiohttp.ClientSession(self.target.url, headers=headers, timeout=self._timeout)
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._session is not None:
            await self._session.close()

    async def call(self, method: str, path: str, body: Mapping[str, Any] | None = None) -> Any:
        """``data`` of the success envelope; ApiError for an error envelope, Unavailable when the
        Server cannot be reached."""
        assert self._session is not None, "use AdminClient as an async context manager"
        try:
            async with self._session.request(method, path, json=body) as resp:
                try:
                    payload = await resp.json(content_type=None)
                except ValueError:
                    payload = None
                status = resp.status
        except (aiohttp.ClientConnectionError, TimeoutError) as exc:
            raise Unavailable(f"cannot reach the fluxfunc server at {self.target.url}: {exc} "
                              "(is it running? start one with `fluxfunc up`)") from None
        if not isinstance(payload, dict):
            raise ApiError(status, "EUnexpected", f"{method} {path}: HTTP {status} without a JSON "
                           "envelope (is this a fluxfunc server?)", None)
        if status >= 400 or not payload.get("ok", False):
            raise ApiError(status, str(payload.get("reason", "?")),
                           str(payload.get("message", "")), payload.get("detail"))
        return payload.get("data")
