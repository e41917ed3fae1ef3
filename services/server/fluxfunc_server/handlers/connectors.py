"""Connectors over HTTP (admin): ``GET/POST /api/v1/connectors``,
``GET/PATCH/DELETE /api/v1/connectors/{id}``, ``POST /api/v1/connectors/{id}/test``.

The body is DataFlux Func's: ``{id, type, title, description, config, isDisabled}`` plus
``skipTest``. Saving tests the connection first (unless ``skipTest``): a failure is a 400
saying what failed and nothing is saved. Secrets in ``config`` (``password``, ``secretKey``,
``token``) are sealed with the deployment secret and answered as ``"******"``; a PATCH whose
config leaves a secret out (or sends ``"******"``) keeps the stored one. Every change bumps
``keys.connectors_version()`` so workers drop their cached config (docs/connectors.md).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Literal, TypeVar

from aiohttp import web
from pydantic import Field

from fluxfunc_common import changes
from fluxfunc_common.connectors.sealing import masked, seal, unseal
from fluxfunc_common.connectors.testing import ConnectionTestFailed, probe
from fluxfunc_common.connectors.types import (
    MASK,
    SECRET_FIELDS,
    ConnectorConfig,
    ConnectorType,
    StoredConnector,
)
from fluxfunc_common.errors import BadRequest
from fluxfunc_server import routing, schemas
from fluxfunc_server.access import ADMIN, DEVELOPER
from fluxfunc_server.appkeys import CTX
from fluxfunc_server.context import AppContext
from fluxfunc_server.handlers.crud import API
from fluxfunc_server.handlers.reading import json_object
from fluxfunc_server.responses import ok

PATH = f"{API}/connectors"
T = TypeVar("T")
ConnectorId = Annotated[str, Field(pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$", max_length=64)]
TypeName = Literal["mysql", "postgresql", "redis", "mqtt", "amqp", "nats", "memcached",
                   "influxdb", "datakit", "dataway"]
Text = Annotated[str, Field(max_length=5000)]


class ConnectorCreate(schemas.Body):
    id: ConnectorId
    type: TypeName
    title: Annotated[str, Field(max_length=256)] | None = None
    description: Text | None = None
    config: dict[str, object] = Field(default_factory=dict)
    is_disabled: bool = False
    skip_test: bool = Field(default=False, description="save without testing the connection")


class ConnectorUpdate(schemas.Body):
    title: Annotated[str, Field(max_length=256)] | None = None
    description: Text | None = None
    config: dict[str, object] | None = Field(
        default=None, description="the whole config; a secret left out or sent as ****** is kept")
    is_disabled: bool | None = None
    skip_test: bool = False


def public(connector: StoredConnector) -> dict[str, object]:
    """The API's form: secrets masked."""
    return {**connector.as_json(), "config": masked(connector.config)}


async def _test(kind: ConnectorType, config: ConnectorConfig) -> None:
    try:
        await probe(kind, config)
    except ConnectionTestFailed as exc:
        raise BadRequest(str(exc), {"field": "config"}) from None


async def _changed(ctx: AppContext) -> None:
    pipe = ctx.redis.pipeline(transaction=False)
    changes.connectors_changed(pipe, ctx.keys)  # as an import announces it
    await pipe.execute()


async def list_connectors(request: web.Request) -> web.Response:
    found = await request.app[CTX].store.list_connectors()
    return ok(request, [public(c) for c in found])


async def get_connector(request: web.Request) -> web.Response:
    found = await request.app[CTX].store.get_connector(request.match_info["id"])
    return ok(request, public(found))


async def create(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    body = schemas.parse(ConnectorCreate, await json_object(request))
    kind = ConnectorType(body.type)
    config = schemas.parse(ConnectorConfig, body.config, what="config")
    if not body.skip_test:
        await _test(kind, config)
    saved = await ctx.store.create_connector(StoredConnector(
        id=body.id, type=kind, title=body.title, description=body.description,
        config=seal(config, ctx.cipher), isDisabled=body.is_disabled))
    await _changed(ctx)
    return ok(request, public(saved))


def _merged(old: ConnectorConfig, new: dict[str, object]) -> ConnectorConfig:
    """``new`` with each secret it leaves out (or masks) taken from ``old``."""
    kept = old.model_dump(by_alias=True)
    merged = {k: v for k, v in new.items() if v != MASK}
    for name in SECRET_FIELDS:
        if name not in merged and kept.get(name):
            merged[name] = kept[name]
    return schemas.parse(ConnectorConfig, merged, what="config")


async def update(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    body = schemas.parse(ConnectorUpdate, await json_object(request))
    current = await ctx.store.get_connector(request.match_info["id"])
    changes: dict[str, object] = {}
    if body.config is not None:
        config = _merged(unseal(current.config, ctx.cipher), body.config)
        if not body.skip_test:
            await _test(current.type, config)
        changes["config"] = seal(config, ctx.cipher)
    for name in ("title", "description", "is_disabled"):
        if name in body.model_fields_set:
            changes[name] = getattr(body, name)
    saved = await ctx.store.replace_connector(current.model_copy(update=changes))
    await _changed(ctx)
    return ok(request, public(saved))


async def delete(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    connector_id = request.match_info["id"]
    await ctx.store.delete_connector(connector_id)
    await _changed(ctx)
    return ok(request, {"id": connector_id})


async def test(request: web.Request) -> web.Response:
    """``POST /api/v1/connectors/{id}/test``: the stored config, tested now."""
    ctx = request.app[CTX]
    found = await ctx.store.get_connector(request.match_info["id"])
    await _test(found.type, unseal(found.config, ctx.cipher))
    return ok(request, {"id": found.id, "ok": True})


def add_routes(app: web.Application) -> None:
    routing.get(app, PATH, list_connectors, DEVELOPER)
    routing.post(app, PATH, create, ADMIN)
    routing.get(app, PATH + "/{id}", get_connector, DEVELOPER)
    routing.add_route(app, "PATCH", PATH + "/{id}", update, ADMIN)
    routing.add_route(app, "DELETE", PATH + "/{id}", delete, ADMIN)
    routing.post(app, PATH + "/{id}/test", test, ADMIN)


_CONNECTOR = {"type": "object", "properties": {
    "id": {"type": "string"}, "type": {"type": "string"}, "title": {"type": ["string", "null"]},
    "description": {"type": ["string", "null"]}, "config": {"type": "object"},
    "isDisabled": {"type": "boolean"}, "createTime": {"type": "number"},
    "updateTime": {"type": "number"}}}


def operations(op: Callable[..., T]) -> list[T]:
    """The operations for ``/api/openapi.json`` (``op`` is its ``Op``)."""
    tag = "management"
    return [
        op("get", PATH, "List connectors (secrets masked)", tag, {"type": "array", "items": _CONNECTOR}),
        op("post", PATH, "Create a connector (tests the connection unless skipTest)", tag,
           _CONNECTOR, body=ConnectorCreate),
        op("get", PATH + "/{id}", "Get one connector (secrets masked)", tag, _CONNECTOR),
        op("patch", PATH + "/{id}", "Change a connector (tests a new config unless skipTest)", tag,
           _CONNECTOR, body=ConnectorUpdate),
        op("delete", PATH + "/{id}", "Delete a connector", tag,
           {"type": "object", "properties": {"id": {"type": "string"}}}),
        op("post", PATH + "/{id}/test", "Test a stored connector's connection", tag,
           {"type": "object", "properties": {"id": {"type": "string"}, "ok": {"type": "boolean"}}}),
    ]
