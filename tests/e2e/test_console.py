"""The web console in a real browser (Debian's Chromium, headless, driven by Playwright) against
a real Server, worker and Beat, through the UI only (docs/console.md): an admin makes the users;
a developer writes a script with real keystrokes (and sees a ``DFF.`` completion), publishes
it through the diff dialog, binds a sync API with ``INPUT_BY_CALLER`` and copies its curl
example (which the test then runs over HTTP), reads the call's task record, schedules a cron
job every 2 s and sees its next fires and then its fires, stores a password env variable,
and requeues a dead letter from the overview; a viewer finds every editing control disabled;
the audit screen lists the developer's actions. HTML in a title, a printed line and a result
stays text, and a screenshot of every screen is left in ``tests/e2e/console-screenshots/``."""

from __future__ import annotations

import json
import re
import shlex
import threading
from pathlib import Path

import pytest
import requests
from playwright.sync_api import Browser, expect, sync_playwright
from tests.conftest import RedisServer
from tests.e2e.console_ui import DRAFT_RUN_CAP, PASSWORDS, Console, Deployment, browser, deployment

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

XSS = "<img src=x onerror=alert(1)>"
PREAMBLE = """import os
import time


@DFF.API('Crash once')
def crash(pid, marker):
    if not os.path.exists(marker):
        open(marker, 'w').close()
        os.kill(pid, 9)
    return 'survived'


@DFF.API('Sleepy', timeout=120)
def sleepy():
    time.sleep(100)


@DFF.API('Tick')
def tick():
    print('tick')
    return 'tick'


@DFF.API('Spin')
def spin():
    print('spinning')
    while True:
        time.sleep(0.05)


"""
# Typed key by key: the editor indents after ``:`` and closes brackets and quotes itself.
TYPED = ["@DFF.", "API('Hello')", "\n", "def hello(name, times=1):", "\n", "print('hi', name)", "\n",
         "return {'name': name, 'times': times}"]


def test_console_end_to_end(tmp_path: Path, redis_server: RedisServer) -> None:
    with deployment(tmp_path, redis_server) as d, sync_playwright() as pw, browser(pw) as b:
        anonymous(b, d)
        admin = Console(b, d.base)
        admin.sign_in("root")
        make_users(admin)
        dev = Console(b, d.base)
        dev.sign_in("dev")
        write_and_publish(dev, d)
        draft_runs(dev, d)
        editing_lock(dev, admin)
        sync_api_and_record(dev, d)
        cancel_a_running_task(dev, d)
        cron_job(dev, d)
        env_variable(dev)
        dead_letter(dev, d)
        other_screens(dev)
        viewer(b, d)
        cross_origin_is_refused(dev, d)
        audit(admin)
        wrong_passwords_are_throttled(b, d)
        for c in (dev, admin):
            assert not c.dialogs, c.dialogs
            c.close()


def anonymous(b: Browser, d: Deployment) -> None:
    """An unauthenticated browser sees only the sign-in screen; ``/`` leads to the console."""
    c = Console(b, d.base)
    c.page.goto(d.base + "/")
    expect(c.page).to_have_url(re.compile(r"/console/$"))
    c.goto("library")
    expect(c.page.get_by_role("form", name="Sign in")).to_be_visible()
    expect(c.page.get_by_role("navigation", name="Screens")).to_have_count(0)
    c.shot("01-sign-in")
    c.close()


def make_users(admin: Console) -> None:
    admin.nav("Users & tokens")
    for name, role in (("dev", "developer"), ("view", "viewer")):
        admin.page.get_by_role("button", name="New user").click()
        admin.fill_dialog({"username": name, "role": role, "password": PASSWORDS[name]}, submit="Create")
        expect(admin.page.get_by_role("cell", name=name, exact=True)).to_be_visible()
    tokens = admin.page.get_by_role("region", name="API tokens")
    tokens.get_by_role("button", name="New").click()
    admin.fill_dialog({"name": "ci-reader", "role": "viewer"}, submit="Create")
    shown = admin.page.locator("code.secret").inner_text()
    token = shown.rsplit(": ", 1)[1]  # shown once
    expect(tokens.get_by_role("row").filter(has_text="ci-reader")).to_contain_text("viewer")
    admin.shot("11-users-tokens")
    assert requests.get(f"{admin.base}/api/v1/auth/me", headers={"Authorization": f"Bearer {token}"},
                        timeout=30).json()["data"]["role"] == "viewer"


def write_and_publish(dev: Console, d: Deployment) -> None:
    page = dev.page
    dev.nav("Scripts")
    page.get_by_role("button", name="New script set").click()
    dev.fill_dialog({"id": "e2e", "title": "E2E"})
    page.get_by_role("button", name="New script", exact=True).click()
    dev.fill_dialog({"id": "demo", "title": XSS})
    expect(page).to_have_url(re.compile(r"/console/scripts/e2e__demo$"))
    code = page.locator(".code .cm-content")
    code.click()
    page.evaluate("text => navigator.clipboard.writeText(text)", PREAMBLE)
    page.keyboard.press("Control+v")  # the helper functions, pasted
    page.keyboard.type(TYPED[0], delay=20)
    popup = page.locator(".cm-tooltip-autocomplete")
    expect(popup.get_by_text("API", exact=True)).to_be_visible()
    expect(popup.get_by_text("RESP", exact=True)).to_be_visible()
    dev.shot("03-editor-completion")
    for chunk in TYPED[1:]:
        if chunk == "\n":
            page.keyboard.press("Escape")  # no completion is open to take the Enter
            page.keyboard.press("Enter")
        else:
            page.keyboard.type(chunk, delay=10)
    page.keyboard.press("Control+s")
    expect(page.get_by_role("status").filter(has_text="Draft saved")).to_be_visible()
    draft = d.api("GET", "/api/v1/scripts/e2e__demo")["code"]
    assert draft.endswith("@DFF.API('Hello')\ndef hello(name, times=1):\n    print('hi', name)\n"
                          "    return {'name': name, 'times': times}"), draft
    dev.shot("03-editor")
    page.get_by_role("button", name="Publish…").click()
    box = dev.dialog()
    expect(box.locator(".cm-mergeView")).to_be_visible()
    expect(box.get_by_text("def hello(name, times=1):").first).to_be_visible()
    dev.shot("03-publish-diff")
    box.get_by_role("button", name="Publish", exact=True).click()
    expect(box.get_by_text("Published version 1.")).to_be_visible()
    dev.shot("03-publish-done")
    box.get_by_role("button", name="Close", exact=True).click()
    funcs = d.api("GET", "/api/v1/funcs?scriptId=e2e__demo")
    assert {f["name"] for f in funcs} == {"crash", "sleepy", "tick", "spin", "hello"}
    dev.nav("Scripts")
    expect(page.get_by_text(XSS).first).to_be_visible()  # the title, as text
    page.get_by_role("button", name=re.compile("E2E")).first.click()
    page.get_by_role("button", name=re.compile("e2e__demo")).click()
    expect(page.get_by_text("hello(name, times=1)", exact=True)).to_be_visible()
    dev.shot("02-library")


def draft_runs(dev: Console, d: Deployment) -> None:
    """The Run panel: a function of the draft with kwargs (Ctrl-Enter), its result and printed
    output; a looping one stopped at ``console.draft_run_max_timeout``; a draft that does not
    compile marks its line; the draft run's task record shows its kwargs."""
    page = dev.page
    dev.goto("scripts/e2e__demo")
    panel = page.get_by_role("region", name="Run the draft")
    func = panel.get_by_label("Function")
    expect(func.locator("option")).to_have_count(5)  # the draft's @DFF.API functions, from the Server
    func.select_option(label="hello(name, times=1)")
    kwargs = panel.get_by_label("kwargs (JSON)")
    expect(kwargs).to_have_value(re.compile(r'"name": null,\s*"times": 1'))  # from the signature
    kwargs.fill('{"name": "console", "times": 3}')
    kwargs.press("Control+Enter")
    result = panel.get_by_test_id("run-result")
    expect(result.get_by_test_id("run-status")).to_have_text("Succeeded")
    expect(result.get_by_test_id("run-value")).to_contain_text('"name": "console"')
    expect(result.get_by_test_id("run-output")).to_have_text("hi console")
    task_id = result.locator("code").inner_text()
    dev.shot("04-run-panel")
    too_many_runs(dev, d)
    func.select_option(label="spin()")
    panel.get_by_role("button", name="Run", exact=True).click()
    expect(result.get_by_test_id("run-status")).to_have_text("Timed out: stopped at its time limit")
    expect(result.get_by_test_id("run-error")).to_contain_text(f"timeout of {DRAFT_RUN_CAP} s")
    expect(result.get_by_test_id("run-output")).to_contain_text("spinning")
    dev.shot("04-run-panel-timeout")
    code = page.locator(".code .cm-content")
    code.click()
    page.keyboard.press("Control+End")
    page.keyboard.type("\ndef broken(:", delay=10)
    page.keyboard.press("Control+Enter")  # saves, then the Server refuses the draft: nothing runs
    expect(panel.get_by_test_id("compile-error")).to_contain_text("does not compile: line")
    expect(page.locator(".code .cm-problem-line")).to_contain_text("def broken(:")
    dev.shot("04-run-panel-syntax-error")
    page.get_by_role("button", name="Reset draft").click()
    dev.dialog().get_by_role("button", name="Yes").click()
    expect(panel.get_by_test_id("compile-error")).to_have_count(0)
    expect(page.locator(".code .cm-problem-line")).to_have_count(0)
    d.wait_for("the draft run's task record", lambda: requests.get(
        f"{d.base}/api/v1/task-records/{task_id}", headers=d.admin, timeout=30).status_code == 200)
    dev.goto(f"tasks/{task_id}")
    expect(page.get_by_test_id("task-kwargs")).to_contain_text('"name": "console"')
    expect(page.get_by_test_id("task-kwargs")).to_contain_text('"times": 3')
    expect(page.get_by_test_id("task-output")).to_have_text("hi console")
    dev.shot("07-task-detail-draft")
    dev.nav("Overview")  # leaving the editor releases its lock


def too_many_runs(dev: Console, d: Deployment) -> None:
    """With one draft run of the developer's under way (``console.draft_runs_per_user`` is 1
    here), the panel's run is refused: "Too many runs at once"."""
    cookies = {c["name"]: c["value"] for c in dev.context.cookies()}
    answers: list[requests.Response] = []
    other = threading.Thread(target=lambda: answers.append(requests.post(
        f"{d.base}/api/v1/scripts/e2e__demo/draft-run", json={"funcName": "spin"}, cookies=cookies,
        headers={"Origin": d.base}, timeout=120)))
    other.start()
    try:
        d.wait_for("the other draft run running", lambda: any(
            q["queue"] == "default" and q["pending"] > 0
            for q in d.api("GET", "/api/v1/ops/overview")["queues"]))
        panel = dev.page.get_by_role("region", name="Run the draft")
        panel.get_by_role("button", name="Run", exact=True).click()
        expect(panel.get_by_test_id("run-problem")).to_contain_text("Too many runs at once")
        dev.shot("04-run-panel-too-many")
    finally:
        other.join(120)
    assert answers and answers[0].status_code == 200 and answers[0].json()["data"]["status"] == "timeout"


def editing_lock(dev: Console, admin: Console) -> None:
    """The developer holds the lock; the admin sees who, and takes it over explicitly."""
    dev.goto("scripts/e2e__demo")
    expect(dev.page.locator(".code .cm-content")).to_have_attribute("contenteditable", "true")
    admin.goto("scripts/e2e__demo")
    banner = admin.page.get_by_role("alert").filter(has_text="dev is editing this script")
    expect(banner).to_be_visible()
    expect(admin.page.locator(".code .cm-content")).to_have_attribute("contenteditable", "false")
    admin.shot("03-editor-locked")
    banner.get_by_role("button", name="Take over").click()
    expect(banner).to_have_count(0)
    expect(admin.page.locator(".code .cm-content")).to_have_attribute("contenteditable", "true")
    admin.nav("Overview")  # leaving releases the lock


def sync_api_and_record(dev: Console, d: Deployment) -> None:
    page = dev.page
    dev.nav("Sync APIs")
    page.get_by_role("button", name="New sync API").click()
    box = dev.dialog()
    box.locator("[name=funcId]").select_option("e2e__demo.hello")
    expect(box.locator("[name=kwargs]")).to_have_value(re.compile('"name": "INPUT_BY_CALLER"'))
    dev.fill_dialog({"note": "hello from the console"})
    row = page.get_by_role("row").filter(has_text="e2e__demo.hello")
    row.get_by_role("button", name="Copy curl").click()
    curl = page.evaluate("navigator.clipboard.readText()")
    dev.shot("05-sync-apis")
    args = shlex.split(curl)
    url, body = args[args.index("-X") + 2], json.loads(args[args.index("-d") + 1])
    assert body == {"kwargs": {"name": "<name>", "times": "<times>"}}, curl
    resp = requests.post(url, json={"kwargs": {"name": XSS, "times": 2}}, timeout=60)
    assert resp.status_code == 200 and resp.json() == {"name": XSS, "times": 2}, resp.text
    row.get_by_role("link", name="Records").click()
    records = page.get_by_test_id("task-records").locator("tbody a")
    apply = page.get_by_role("button", name="Apply")

    def listed() -> bool:
        apply.click()  # the worker writes records in batches: ask again until it is there
        return records.count() > 0

    d.wait_for("the call's task record", listed)
    dev.shot("07-task-records")
    records.first.click()
    expect(page.get_by_test_id("task-output")).to_have_text(f"hi {XSS}")
    expect(page.get_by_test_id("task-kwargs")).to_contain_text('"times": 2')
    expect(page.get_by_test_id("task-result")).to_contain_text(XSS)
    dev.shot("07-task-detail")


def cancel_a_running_task(dev: Console, d: Deployment) -> None:
    task = d.api("POST", "/api/v1/func/e2e__demo.sleepy", {"options": {"async": True}})["id"]
    d.wait_for("the task running", lambda: d.api("GET", f"/api/v1/tasks/{task}")["status"] == "running")
    dev.goto(f"tasks/{task}")
    expect(dev.page.locator("dd.status-running")).to_be_visible()
    dev.page.get_by_role("button", name="Cancel task").click()
    dev.notice("Cancelled (was running)")
    d.wait_for("the task cancelled", lambda: d.api("GET", f"/api/v1/tasks/{task}")["status"] == "cancelled")


def cron_job(dev: Console, d: Deployment) -> None:
    page = dev.page
    dev.nav("Cron jobs")
    page.get_by_role("button", name="New cron job").click()
    dev.fill_dialog({"funcId": "e2e__demo.tick", "cronExpr": "*/2 * * * * *"})
    expect(page.get_by_test_id("next-fires").locator("li")).to_have_count(5)
    fires = page.get_by_test_id("last-fires").locator("tbody td.status-success")
    refresh = page.get_by_role("heading", name="Last fires").get_by_role("button", name="Refresh")

    def fired() -> bool:
        refresh.click()
        return fires.count() > 0

    d.wait_for("a recorded cron fire", fired)
    dev.shot("06-cron-jobs")
    row = page.get_by_role("row").filter(has_text="e2e__demo.tick")
    row.get_by_role("button", name="Run now").click()
    dev.notice("Ran cron-")
    row.get_by_role("button", name="Disable").click()
    expect(row.get_by_role("cell", name="disabled")).to_be_visible()


def env_variable(dev: Console) -> None:
    page = dev.page
    dev.nav("Env variables")
    page.get_by_role("button", name="New env variable").click()
    dev.fill_dialog({"id": "e2e_secret", "valueType": "password", "value": "s3cret-value-42"})
    row = page.get_by_role("row").filter(has_text="e2e_secret")
    expect(row.get_by_test_id("masked")).to_be_visible()
    assert "s3cret-value-42" not in page.content()
    dev.shot("08-env-variables")
    page.get_by_role("button", name="New env variable").click()
    dev.fill_dialog({"id": "e2e_gone", "valueType": "integer", "value": "42"})
    gone = page.get_by_role("row").filter(has_text="e2e_gone")
    expect(gone).to_contain_text("42")
    gone.get_by_role("button", name="Delete").click()
    dev.dialog().get_by_role("button", name="Yes").click()  # the console's own confirm, no window.confirm
    expect(gone).to_have_count(0)


def dead_letter(dev: Console, d: Deployment) -> None:
    """A task kills its worker; the next worker dead-letters it (max_deliveries 1); the
    developer requeues it from the overview and it runs (the second run survives)."""
    marker = d.tmp / "crashed"
    task = d.api("POST", "/api/v1/func/e2e__demo.crash",
                 {"kwargs": {"pid": d.worker.proc.pid, "marker": str(marker)},  # type: ignore[union-attr]
                  "options": {"async": True}})["id"]
    d.wait_for("the worker killed by its task", lambda: d.worker.proc.poll() is not None)  # type: ignore[union-attr]
    d.restart_worker()
    d.wait_for("the dead letter", lambda: d.api("GET", "/api/v1/ops/overview")["deadLetters"] > 0)
    dev.nav("Overview")
    row = dev.page.get_by_test_id("dead-letters").get_by_role("row").filter(has_text=task)
    expect(row).to_be_visible()
    dev.shot("09-overview-dead-letter")
    row.get_by_role("button", name="Requeue").click()
    expect(row).to_have_count(0)
    d.wait_for("the requeued task", lambda: d.api("GET", f"/api/v1/tasks/{task}").get("result") == "survived")
    dev.shot("09-overview")


def other_screens(dev: Console) -> None:
    dev.nav("Functions")
    expect(dev.page.get_by_role("article", name="e2e__demo.hello")).to_contain_text("sync sapi-")
    dev.shot("10-functions")
    dev.nav("Async APIs")
    expect(dev.page.get_by_role("button", name="New async API")).to_be_enabled()
    dev.shot("05-async-apis")


def viewer(b: Browser, d: Deployment) -> None:
    v = Console(b, d.base)
    v.sign_in("view")
    page = v.page
    expect(page.get_by_role("link", name="Users & tokens")).to_have_count(0)
    v.nav("Scripts")
    expect(page.get_by_role("button", name="New script set")).to_be_disabled()
    for button in page.get_by_role("button", name=re.compile("^(Rename|Delete)$")).all():
        expect(button).to_be_disabled()
    v.goto("scripts/e2e__demo")
    expect(page.locator(".code .cm-content")).to_have_attribute("contenteditable", "false")
    for name in ("Save draft", "Publish…", "Reset draft"):
        expect(page.get_by_role("button", name=name)).to_be_disabled()
    v.shot("03-editor-viewer")
    for screen, new in (("Sync APIs", "New sync API"), ("Cron jobs", "New cron job"),
                        ("Env variables", "New env variable")):
        v.nav(screen)
        expect(page.get_by_role("button", name=new)).to_be_disabled()
        editing = re.compile("^(Edit|Delete|Disable|Enable|Run now)$")
        for button in page.get_by_role("button", name=editing).all():
            expect(button).to_be_disabled()
    resp = page.request.post(f"{d.base}/api/v1/script-sets", data={"id": "nope"},
                             headers={"Origin": d.base})
    assert resp.status == 403, resp.text()
    page.locator(".usermenu > button").click()
    page.get_by_role("menuitem", name="Change password").click()
    box = v.dialog()
    box.get_by_label("Current password").fill(PASSWORDS["view"])
    box.get_by_label("New password").fill(PASSWORDS["view"] + "-2")
    box.get_by_role("button", name="Change").click()
    v.notice("Password changed")
    v.sign_out_everywhere()
    v.close()


def cross_origin_is_refused(dev: Console, d: Deployment) -> None:
    resp = dev.page.request.post(f"{d.base}/api/v1/script-sets", data={"id": "evil"},
                                 headers={"Origin": "http://evil.example"})
    assert resp.status == 403, resp.text()


def audit(admin: Console) -> None:
    admin.nav("Audit")
    form = admin.page.get_by_role("form", name="Filters")
    form.get_by_label("User").fill("dev")
    form.get_by_role("button", name="Apply").click()
    table = admin.page.get_by_test_id("audit")
    expect(table.get_by_role("row").filter(has_text="/api/v1/script-sets").first).to_be_visible()
    expect(table.get_by_role("row").filter(has_text="/publish").first).to_be_visible()
    admin.shot("11-audit")


def wrong_passwords_are_throttled(b: Browser, d: Deployment) -> None:
    """Last: the throttle also counts per client address, and every browser here is 127.0.0.1."""
    c = Console(b, d.base)
    c.goto("")
    form = c.page.get_by_role("form", name="Sign in")
    error = form.get_by_role("alert")
    for _ in range(10):
        form.get_by_label("Username").fill("dev")
        form.get_by_label("Password").fill("wrong-password")
        form.get_by_role("button", name="Sign in").click()
        expect(error).to_be_visible()
    expect(error).to_contain_text("429")
    c.shot("01-sign-in-throttled")
    c.close()
