"""How fast the web console's screens are usable on loopback (docs/console.md).

Starts a Server, a worker and a Beat (private ``redis-server``, SQLite) as the console's browser
test does, and drives Debian's Chromium (headless, ``/usr/bin/chromium``) through Playwright.
Each round uses a new browser context (an empty cache, no cookies) and measures, from the start
of the navigation:

- ``sign-in``: ``/console/`` until the sign-in form is visible (cold cache);
- ``overview``: after pressing "Sign in", until the overview's services table is filled;
- ``reload``: a reload of the overview with a warm cache, until the table is filled again;
- ``editor``: opening a script, until the editor (its chunk loaded on first use) shows the code;
- ``records``: the task-record screen, until its table is filled (with ``--records`` calls done
  first), and the server time of its list call (``reqCost``).

Usage: ``.venv/bin/python bench/console.py [--rounds 5] [--records 2000] [--json PATH]``
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path[:] = [str(Path(__file__).resolve().parent.parent),
               *(p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent)]

import requests  # noqa: E402
from playwright.sync_api import Page, expect, sync_playwright  # noqa: E402
from tests.conftest import RedisServer  # noqa: E402
from tests.e2e.console_ui import PASSWORDS, Console, Deployment, browser, deployment  # noqa: E402

SCRIPT = "@DFF.API('Plus')\ndef plus(x, y=1):\n    return x + y\n"


def since(start: float) -> float:
    return round((time.perf_counter() - start) * 1000, 1)


def seed(d: Deployment, records: int) -> None:
    d.api("POST", "/api/v1/scripts/bench__console/publish", {"code": SCRIPT})
    calls = [{"funcId": "bench__console.plus", "kwargs": {"x": i}} for i in range(records)]
    for at in range(0, len(calls), 1000):
        d.api("POST", "/api/v1/func-many", {"calls": calls[at:at + 1000]})
    wanted = min(records, 500)
    d.wait_for("the task records", lambda: len(d.api("GET", "/api/v1/task-records?limit=500")) >= wanted,
               within=300)


def one_round(c: Console, d: Deployment) -> dict[str, float]:
    page: Page = c.page
    out: dict[str, float] = {}
    start = time.perf_counter()
    c.goto("")
    expect(page.get_by_role("form", name="Sign in")).to_be_visible()
    out["sign-in"] = since(start)
    form = page.get_by_role("form", name="Sign in")
    form.get_by_label("Username").fill("root")
    form.get_by_label("Password").fill(PASSWORDS["root"])
    start = time.perf_counter()
    form.get_by_role("button", name="Sign in").click()
    expect(page.get_by_test_id("services").locator("tbody tr").first).to_be_visible()
    out["overview"] = since(start)
    start = time.perf_counter()
    page.reload()
    expect(page.get_by_test_id("services").locator("tbody tr").first).to_be_visible()
    out["reload"] = since(start)
    start = time.perf_counter()
    c.goto("scripts/bench__console")
    expect(page.locator(".code .cm-line").first).to_be_visible()
    out["editor"] = since(start)
    start = time.perf_counter()
    c.nav("Task records")
    expect(page.get_by_test_id("task-records").locator("tbody a").first).to_be_visible()
    out["records"] = since(start)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    redis = RedisServer()
    redis.start()
    try:
        with tempfile.TemporaryDirectory(prefix="fluxfunc-bench-console-") as tmp, \
                deployment(Path(tmp), redis) as d, sync_playwright() as pw, browser(pw) as b:
            seed(d, args.records)
            rounds = []
            for _ in range(args.rounds):
                c = Console(b, d.base)
                rounds.append(one_round(c, d))
                c.close()
            cost = [requests.get(f"{d.base}/api/v1/task-records?limit=50", headers=d.admin,
                                 timeout=30).json()["reqCost"] for _ in range(20)]
    finally:
        redis.stop()
    result = {name: statistics.median(r[name] for r in rounds) for name in rounds[0]}
    result["recordsReqCostMs"] = round(statistics.median(cost), 2)
    load = os.getloadavg()[0]
    print(f"median of {args.rounds} rounds, ms (load {load:.2f}, {args.records} task records):")
    for name, value in result.items():
        print(f"  {name:18} {value}")
    if args.json:
        args.json.write_text(json.dumps({"rounds": rounds, "median": result, "load": load}, indent=2))


if __name__ == "__main__":
    main()
