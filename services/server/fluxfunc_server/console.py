"""Serving the web console: the built files of ``console_dist/`` under ``/console/``.

The console is a single-page application built from ``services/server/console`` (docs/console.md)
into this package, so an installed Server serves it without Node.js. The files are public: the
data comes from the API, authorised by the session cookie. Hashed assets (``assets/…``) are
cached for a year; ``index.html`` is answered for every other path under ``/console/`` (the
console's own routes) and never cached, so a new build is picked up at the next load. Every
answer carries a Content-Security-Policy that allows only this origin; the one exception is the
``<style>`` element the code editor (CodeMirror) writes its theme into, allowed by a nonce made
for each ``index.html`` answer and handed to the page in its ``csp-nonce`` meta tag. A browser
asking for ``/`` (``Accept: text/html``) is sent to ``/console/``.
"""

from __future__ import annotations

import secrets
from pathlib import Path

from aiohttp import web

from fluxfunc_common.errors import NotFound
from fluxfunc_server import routing
from fluxfunc_server.access import PUBLIC

DIST = Path(__file__).resolve().parent / "console_dist"
PREFIX = "/console/"
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'{nonce}; img-src 'self'; "
       "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'self'; "
       "form-action 'self'; frame-ancestors 'none'")
NONCE_SLOT = '<meta name="csp-nonce" content="" />'
LONG_CACHE = "public, max-age=31536000, immutable"
NO_CACHE = "no-cache"
HEADERS = {"X-Content-Type-Options": "nosniff", "Referrer-Policy": "same-origin",
           "X-Frame-Options": "DENY"}


def asset_path(dist: Path, rel: str) -> Path | None:
    """The file ``rel`` names inside ``dist``, or None (missing, a folder, or outside it)."""
    if not rel or "\\" in rel or any(part in ("", ".", "..") for part in rel.split("/")):
        return None
    target = (dist / rel).resolve()
    if not target.is_relative_to(dist.resolve()) or not target.is_file():
        return None
    return target


def _file(path: Path, cache: str) -> web.FileResponse:
    return web.FileResponse(path, headers={**HEADERS, "Cache-Control": cache,
                                           "Content-Security-Policy": CSP.format(nonce="")})


def index_page(index: Path) -> web.Response:
    """``index.html`` with a fresh style nonce, in the page and in its policy."""
    nonce = secrets.token_urlsafe(18)
    html = index.read_text(encoding="utf-8").replace(
        NONCE_SLOT, f'<meta name="csp-nonce" content="{nonce}" />')
    return web.Response(text=html, content_type="text/html", headers={
        **HEADERS, "Cache-Control": NO_CACHE,
        "Content-Security-Policy": CSP.format(nonce=f" 'nonce-{nonce}'")})


async def console_page(request: web.Request) -> web.StreamResponse:
    """``GET /console/{path}``: a built asset, or ``index.html`` for the console's own routes."""
    rel = request.match_info.get("path", "")
    found = asset_path(DIST, rel)
    if found is not None and rel != "index.html":
        return _file(found, LONG_CACHE if rel.startswith("assets/") else NO_CACHE)
    if rel.startswith("assets/"):
        raise NotFound("No such console asset")
    index = DIST / "index.html"
    if not index.is_file():
        raise NotFound("The console is not built (npm --prefix services/server/console run build)")
    return index_page(index)


def _to_console() -> web.Response:
    return web.Response(status=302, headers={"Location": PREFIX})


async def console_bare(request: web.Request) -> web.Response:
    """``GET /console``: to ``/console/``, where relative asset paths resolve."""
    return _to_console()


async def root(request: web.Request) -> web.Response:
    """``GET /``: a browser (``Accept: text/html``) goes to the console; anything else is a 404."""
    if "text/html" in request.headers.get("Accept", ""):
        return _to_console()
    raise NotFound("No such route")


def add_routes(app: web.Application) -> None:
    routing.get(app, "/", root, PUBLIC)
    routing.get(app, "/console", console_bare, PUBLIC)
    routing.get(app, "/console/{path:.*}", console_page, PUBLIC)
