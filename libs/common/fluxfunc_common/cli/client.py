"""A small HTTP client of the Server's management API, for the commands that drive a running
deployment from outside (``fluxfunc deploy``, the demo of ``fluxfunc up``).

Where it connects: ``--url`` / ``--token`` flags, else ``$FLUXFUNC_URL`` / ``$FLUXFUNC_TOKEN``,
else the instance the discovery rule of :mod:`fluxfunc_common.cli.instance` finds (``--config``,
``$FLUXFUNC_CONFIG``, ``.fluxfunc/`` searched upward): the ``url`` and ``admin-token`` that
``fluxfunc up`` left there, or ``server.host``/``server.port`` of the config. Nothing found is an
error, never a guessed address.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp

from fluxfunc_common.cli.instance import STATE_DIR, find_instance, guidance
from fluxfunc_common.errors import ConfigError, FluxfuncError, Unavailable
from fluxfunc_common.settings import load_settings

__all__ = ["STATE_DIR", "TOKEN_FILE", "URL_FILE", "AdminClient", "ApiError", "Target", "resolve_target"]

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
    """Which server to talk to, with which admin token, and where that came from."""

    url: str
    token: str | None
    found_by: str = ""


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def _config_url(config: Path, environ: Mapping[str, str]) -> str:
    server = load_settings(config, environ).server
    host = "127.0.0.1" if server.host in ("0.0.0.0", "::") else server.host
    return f"http://{host}:{server.port}"


def resolve_target(url: str | None = None, token: str | None = None, *, config: str | None = None,
                   environ: Mapping[str, str] | None = None, state_dir: Path | None = None,
                   cwd: Path | None = None) -> Target:
    """Flags beat environment beat the discovered instance; ConfigError when none is named."""
    env = os.environ if environ is None else environ
    found_url = url or env.get("FLUXFUNC_URL")
    found_token = token or env.get("FLUXFUNC_TOKEN")
    found_by = "--url" if url else "$FLUXFUNC_URL" if found_url else ""
    if not (found_url and found_token):
        state = state_dir
        if state is None:
            try:
                instance = find_instance(config, env, cwd)
            except ConfigError:
                if found_url:
                    return Target(found_url.rstrip("/"), found_token, found_by)
                raise ConfigError(f"{guidance(cwd)}; or pass --url and --token") from None
            state = instance.state_dir
            if state is None and not found_url:
                found_url, found_by = _config_url(instance.config, env), instance.found_by
        if state is not None:
            if not found_url and (found_url := _read(state / URL_FILE)):
                found_by = str(state.resolve())
            found_token = found_token or _read(state / TOKEN_FILE)
    if not found_url:
        raise ConfigError(f"{state_dir or STATE_DIR}/{URL_FILE} is missing: is `fluxfunc up` running "
                          "there? Or pass --url")
    return Target(found_url.rstrip("/"), found_token, found_by)


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
