"""``GET/PUT /api/v1/python-packages``: the deployment's extra Python packages (admin).

``PUT`` takes ``{"packages": ["requests==2.32.3", …]}`` (or the same lines as one text),
checks every line as a PEP 508 requirement (400 naming the first bad line), stores the list
and tells the workers (:func:`fluxfunc_common.packages.announce`). Both answer the list, the
resolved set (the list plus every script set's ``requirements``) and each live worker's state:
the set its new children use, ``installing``/``ok``/``failed`` and the error of a failed
install. Script-set writes go through :func:`check_script_set` and :func:`script_set_changed`.
See docs/packages.md.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypedDict

from aiohttp import web
from pydantic import Field

from fluxfunc_common import packages
from fluxfunc_server import routing
from fluxfunc_server.access import DEVELOPER, VIEWER
from fluxfunc_server.appkeys import CTX
from fluxfunc_server.context import AppContext
from fluxfunc_server.handlers.reading import json_object
from fluxfunc_server.responses import ok
from fluxfunc_server.schemas import Body, parse

PATH = "/api/v1/python-packages"


class PackagesPut(Body):
    """The deployment-wide requirement lines (a list, or one text with a line each)."""

    packages: list[str] | str = Field(description=(
        "PEP 508 requirement lines such as `requests==2.32.3`; blank lines and `#` comments "
        "are ignored; pip options are refused (see `packages.*` in the settings)"))


class PackagesView(TypedDict):
    """The answer of both routes."""

    packages: list[str]
    resolved: packages.ResolvedView
    workers: list[dict[str, Any]]  # WorkerPackages.public()
    upToDate: bool


async def describe(ctx: AppContext) -> PackagesView:
    """The deployment list, the resolved set, each live worker's state, and whether every
    worker uses the resolved set."""
    resolved = await packages.load_resolved(ctx.store)
    states = await packages.live_worker_states(ctx.redis, ctx.keys)
    return {"packages": resolved.deployment, "resolved": resolved.public(),
            "workers": [w.public() for w in states],
            "upToDate": all(w.state == "ok" and w.hash == resolved.hash for w in states)}


async def get_packages(request: web.Request) -> web.Response:
    """``GET /api/v1/python-packages``."""
    return ok(request, await describe(request.app[CTX]))


async def put_packages(request: web.Request) -> web.Response:
    """``PUT /api/v1/python-packages``: replace the deployment-wide list."""
    ctx = request.app[CTX]
    body = parse(PackagesPut, await json_object(request))
    given = body.packages.splitlines() if isinstance(body.packages, str) else body.packages
    lines = packages.parse_lines(given)
    await packages.save_deployment(ctx.store, lines)
    await packages.announce(ctx.redis, ctx.keys)
    return ok(request, await describe(ctx))


# --- script sets ----------------------------------------------------------------------------------


def check_script_set(data: Mapping[str, object]) -> None:
    """400 when a script set's ``requirements`` has a line that is not a valid requirement."""
    text = data.get("requirements")
    if isinstance(text, str):
        packages.parse_lines(packages.split_text(text), "requirements")


async def script_set_changed(ctx: AppContext, op: str, entity_id: str) -> None:
    """A script set was written or deleted: its requirements may have changed the set."""
    await packages.announce(ctx.redis, ctx.keys)


def add_routes(app: web.Application) -> None:
    routing.get(app, PATH, get_packages, VIEWER)
    routing.add_route(app, "PUT", PATH, put_packages, DEVELOPER)
