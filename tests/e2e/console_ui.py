"""What the console's browser test stands on: a deployment (Server, worker, Beat on a private
Redis and a SQLite store), Debian's Chromium driven by Playwright (its own browsers are never
downloaded), and the screenshots every screen leaves under ``tests/e2e/console-screenshots/``."""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, expect
from tests.conftest import RedisServer
from tests.server.processes import Service, create_token, running, server, worker, write_config

from fluxfunc_common.proc.localredis import free_port

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
SHOTS = Path(__file__).resolve().parent / "console-screenshots"
# A busy CI machine runs this beside the rest of the suite: every wait is a generous deadline.
expect.set_options(timeout=20_000)
DRAFT_RUN_CAP = 4  # seconds: a looping draft run is stopped soon, yet long enough to overlap another
PASSWORDS = {"root": "root-password-0123456", "dev": "dev-password-0123456",
             "view": "view-password-0123456"}


def beat(config: Path, log_dir: Path, state_dir: Path) -> Service:
    return Service(["-m", "fluxfunc_beat", "--config", str(config)], log_dir / "beat.log",
                   env={"FLUXFUNC_STATE_DIR": str(state_dir)})


@dataclass
class Deployment:
    """The running services, their config, and an admin token for the test's own HTTP calls."""

    base: str
    config: Path
    tmp: Path
    token: str
    worker: Service
    stack: ExitStack = field(default_factory=ExitStack)

    @property
    def admin(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def api(self, method: str, path: str, body: Any = None, *, status: int = 200) -> Any:
        resp = requests.request(method, self.base + path, json=body, headers=self.admin, timeout=60)
        assert resp.status_code == status, (method, path, resp.status_code, resp.text[:500])
        return resp.json().get("data")

    def restart_worker(self) -> None:
        """A new worker process (the old one was killed by a task)."""
        self.worker.stop(5)
        self.worker = self.stack.enter_context(running(worker(self.config, self.tmp, self.tmp)))

    def wait_for(self, what: str, check: Any, within: float = 60) -> Any:
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            time.sleep(0.3)
        raise AssertionError(f"{what} not within {within} s")


@contextmanager
def deployment(tmp: Path, redis: RedisServer) -> Iterator[Deployment]:
    port = free_port()
    config = write_config(tmp / "fluxfunc.yaml", redis_url=redis.url,
                          namespace="console" + secrets.token_hex(4),
                          store_url=f"sqlite:///{tmp / 'store.db'}", port=port,
                          worker={"concurrency": 2, "max_deliveries": 1, "lease_seconds": 8,
                                  "reclaim_seconds": 1},
                          console={"draft_run_max_timeout": DRAFT_RUN_CAP, "draft_runs_per_user": 1})
    base = f"http://127.0.0.1:{port}"
    with ExitStack() as stack:
        stack.enter_context(running(server(config, tmp, tmp), ready_url=f"{base}/healthz"))
        work = stack.enter_context(running(worker(config, tmp, tmp)))
        stack.enter_context(running(beat(config, tmp, tmp)))
        d = Deployment(base, config, tmp, create_token(config), work, stack)
        d.wait_for("a worker heartbeat", lambda: d.api("GET", "/api/v1/ops/overview")["services"]["worker"])
        d.api("POST", "/api/v1/users", {"username": "root", "role": "admin", "password": PASSWORDS["root"]})
        yield d


@contextmanager
def browser(pw: Playwright) -> Iterator[Browser]:
    b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
    try:
        yield b
    finally:
        b.close()


class Console:
    """One browser context (its own cookies) on the console, with what every step needs."""

    def __init__(self, b: Browser, base: str) -> None:
        self.base = base
        self.context: BrowserContext = b.new_context(viewport={"width": 1440, "height": 900})
        self.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=base)
        self.page: Page = self.context.new_page()
        self.page.set_default_timeout(30_000)
        self.dialogs: list[str] = []  # alert/confirm/prompt: the XSS checks want none
        self.problems: list[str] = []  # page errors and CSP violations
        self.page.on("dialog", self._dialog)
        self.page.on("pageerror", lambda exc: self.problems.append(f"pageerror: {exc}"))
        self.page.on("console", self._console)

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def _console(self, msg: Any) -> None:
        if msg.type == "error" and "Content Security Policy" in msg.text:
            self.problems.append(msg.text)

    def goto(self, path: str) -> None:
        self.page.goto(f"{self.base}/console/{path}")

    def nav(self, label: str) -> None:
        nav = self.page.get_by_role("navigation", name="Screens")
        nav.get_by_role("link", name=label, exact=True).click()

    def shot(self, name: str) -> None:
        SHOTS.mkdir(exist_ok=True)
        self.page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)

    def sign_in(self, user: str, password: str | None = None) -> None:
        self.goto("")
        form = self.page.get_by_role("form", name="Sign in")
        form.get_by_label("Username").fill(user)
        form.get_by_label("Password").fill(password or PASSWORDS[user])
        form.get_by_role("button", name="Sign in").click()
        expect(self.page.get_by_role("navigation", name="Screens")).to_be_visible()

    def sign_out(self) -> None:
        self.page.locator(".usermenu > button").click()
        self.page.get_by_role("menuitem", name="Sign out", exact=True).click()
        expect(self.page.get_by_role("form", name="Sign in")).to_be_visible()

    def sign_out_everywhere(self) -> None:
        """The user menu's "Sign out everywhere…": the dialog lists the sessions it ends."""
        self.page.locator(".usermenu > button").click()
        self.page.get_by_role("menuitem", name="Sign out everywhere…").click()
        box = self.dialog()
        expect(box.get_by_role("cell", name=re.compile(r"\(this one\)"))).to_have_count(1)
        box.get_by_role("button", name="Sign out everywhere", exact=True).click()
        expect(self.page.get_by_role("form", name="Sign in")).to_be_visible()

    def dialog(self) -> Any:
        return self.page.locator("dialog[open]")

    def fill_dialog(self, fields: dict[str, str], submit: str = "Save") -> None:
        box = self.dialog()
        for name, value in fields.items():
            target = box.locator(f"[name={name}]")
            if target.evaluate("e => e.tagName") == "SELECT":
                target.select_option(value)
            else:
                target.fill(value)
        box.get_by_role("button", name=submit, exact=True).click()
        expect(box).to_have_count(0)

    def notice(self, text: str) -> None:
        expect(self.page.get_by_role("status").filter(has_text=text).first).to_be_visible()

    def close(self) -> None:
        assert not self.problems, self.problems
        self.context.close()
