"""Serving the web console (docs/console.md): the built files under ``/console/``, index.html
for the console's own routes, caching, the Content-Security-Policy, ``GET /`` for a browser,
and the size budget of the committed build."""

from __future__ import annotations

import gzip
import re
from pathlib import Path

from tests.server.conftest import Api

from fluxfunc_server import console

DIST = console.DIST
BUDGET_GZIP_BYTES = 600 * 1024


def _asset(suffix: str) -> str:
    found: list[str] = sorted(p.name for p in (DIST / "assets").iterdir() if p.name.endswith(suffix))
    assert found, f"no {suffix} asset in {DIST}: build the console (docs/console.md)"
    return found[0]


async def test_index_for_console_routes_never_cached_with_csp(api: Api) -> None:
    for path in ("/console/", "/console/library", "/console/scripts/demo__x", "/console/tasks/task-1"):
        _, body, resp = await api.call("GET", path, admin=False)
        assert resp.content_type == "text/html" and '<div id="app">' in body, path
        assert resp.headers["Cache-Control"] == "no-cache"
        csp = resp.headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "script-src 'self'" in csp and "unsafe" not in csp
        nonce = re.search(r'<meta name="csp-nonce" content="([^"]+)" />', body)
        assert nonce and f"style-src 'self' 'nonce-{nonce[1]}'" in csp  # a fresh one per answer
        assert nonce[1] not in (await api.call("GET", path, admin=False))[1]
        assert resp.headers["X-Content-Type-Options"] == "nosniff"


async def test_hashed_assets_are_cached_long(api: Api) -> None:
    name = _asset(".js")
    _, body, resp = await api.call("GET", f"/console/assets/{name}", admin=False)
    assert resp.headers["Cache-Control"] == "public, max-age=31536000, immutable"
    assert "nonce" not in resp.headers["Content-Security-Policy"]
    assert "javascript" in resp.content_type and body == (DIST / "assets" / name).read_text()
    await api.call("GET", "/console/assets/nope-123.js", admin=False, expect=404)


async def test_no_file_outside_the_build_is_served(api: Api) -> None:
    for path in ("/console/../app.py", "/console/%2e%2e/app.py", "/console/assets/..%2f..%2fapp.py",
                 "/console/assets/%2e%2e/%2e%2e/console.py"):
        status, body, _ = await api.call("GET", path, admin=False, expect=None)
        assert status in (200, 404), path
        if status == 200:
            assert '<div id="app">' in body, path  # the index, never the file
    assert console.asset_path(DIST, "../console.py") is None
    assert console.asset_path(DIST, "assets/../../console.py") is None
    assert console.asset_path(DIST, "") is None


async def test_root_sends_a_browser_to_the_console(api: Api) -> None:
    _, _, resp = await api.call("GET", "/", admin=False, expect=302, allow_redirects=False,
                                headers={"Accept": "text/html,application/xhtml+xml"})
    assert resp.headers["Location"] == "/console/"
    await api.call("GET", "/", admin=False, expect=404, headers={"Accept": "application/json"})
    await api.call("HEAD", "/", admin=False)  # the load-balancer probe is unchanged
    _, _, resp = await api.call("GET", "/console", admin=False, expect=302, allow_redirects=False)
    assert resp.headers["Location"] == "/console/"


def test_the_build_has_no_external_reference_and_fits_the_budget() -> None:
    index = (DIST / "index.html").read_text()
    assert "http://" not in index and "https://" not in index and "//" not in index.replace("<!doctype", "")
    total = 0
    for path in DIST.rglob("*.js"):
        total += len(gzip.compress(path.read_bytes(), compresslevel=9))
    assert 0 < total <= BUDGET_GZIP_BYTES, f"console JavaScript is {total} bytes gzipped"
    for css in DIST.rglob("*.css"):
        text = css.read_text()
        assert "url(http" not in text and "@import" not in text, css


def test_the_console_sources_have_a_lockfile() -> None:
    sources = Path(__file__).resolve().parents[2] / "services" / "server" / "console"
    assert (sources / "package-lock.json").is_file() and (sources / "package.json").is_file()
