"""``/api/v1/api-auths``: reusable API auth definitions (read: developer, to pick one for an
entry point; write: admin), the five routes of every
management resource (:mod:`crud`).

``config`` per ``type`` (the effective ``apiAuth`` is ``{"type": type, **config}``):

- ``fixedField``: ``{"fields": [{"location": "header|query|body", "field", "value"}]}``
- ``httpBasic``: ``{"users": [{"username", "password"}]}``
- ``httpDigest``: ``{"users": […], "algorithm": "MD5|SHA-256"}``
- ``func``: ``{"funcId": "<a published func>"}``

Values and passwords are stored sealed with the deployment secret (``valueCipher``,
``passwordCipher``) and never answered. On ``PATCH``, a user without ``password`` (or a field
without ``value``) keeps the one stored, as in DataFlux Func. Deleting a definition that a
sync/async API references (``apiAuthId``) is a 409 naming them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Literal, TypeVar

from aiohttp import web
from pydantic import Field

from fluxfunc_common.errors import BadRequest
from fluxfunc_common.store import Entity
from fluxfunc_common.userjson import JSONObject
from fluxfunc_server import apiauth_defs, schemas
from fluxfunc_server.access import ADMIN, DEVELOPER
from fluxfunc_server.context import AppContext
from fluxfunc_server.handlers.crud import EntityRow, Resource, add_resource
from fluxfunc_server.handlers.manage_checks import func_of

PATH = "/api/v1/api-auths"
T = TypeVar("T")
AuthType = Literal["fixedField", "httpBasic", "httpDigest", "func"]
AuthConfig = Annotated[JSONObject, Field(description=(
    "per type: fixedField {fields: [{location, field, value}]}, httpBasic/httpDigest "
    "{users: [{username, password}], algorithm (httpDigest: MD5|SHA-256)}, func {funcId}"))]


class ApiAuthListQuery(schemas.ListQuery):
    """``GET /api/v1/api-auths``: ``?limit&cursor``."""


class ApiAuthCreate(schemas.Body):
    id: Annotated[str, Field(min_length=1, max_length=191)] | None = None
    title: schemas.Title | None = None
    type: AuthType
    config: AuthConfig = Field(default_factory=dict)
    note: schemas.Text | None = None


class ApiAuthUpdate(schemas.Body):
    title: schemas.Title | None = None
    type: AuthType | None = None
    config: AuthConfig | None = None
    note: schemas.Text | None = None


def _check_config(auth_type: str, config: JSONObject) -> None:
    """400 unless ``config`` is a valid ``apiAuth`` of ``auth_type`` (secrets may be sealed)."""
    probe: JSONObject = {**config, "type": auth_type}
    if auth_type == "fixedField":
        fields = config.get("fields")
        if not isinstance(fields, list) or not fields:
            raise BadRequest("config.fields must be a non-empty list", {"field": "config.fields"})
        for rule in fields:
            schemas.parse(schemas.ApiAuthFixedField,
                          {"type": "fixedField", "value": "", **(rule if isinstance(rule, dict) else {})})
        return
    if auth_type in ("httpBasic", "httpDigest"):
        users = config.get("users")
        if isinstance(users, list):  # a user without password keeps the stored one
            probe["users"] = [{"password": "", **{k: v for k, v in u.items() if k != "passwordCipher"}}
                              if isinstance(u, dict) else u for u in users]
        model = schemas.ApiAuthHttpBasic if auth_type == "httpBasic" else schemas.ApiAuthHttpDigest
        schemas.parse(model, probe)
        return
    schemas.parse(schemas.ApiAuthFunc, probe)


def _sealed(ctx: AppContext, item: JSONObject, secret: str, previous: list[JSONObject],
            same: tuple[str, ...]) -> JSONObject:
    """``item`` with ``secret`` sealed as ``<secret>Cipher``; without it, the sealed one of
    the ``previous`` item that matches on ``same``."""
    kept = {k: v for k, v in item.items() if k not in (secret, secret + "Cipher")}
    if item.get(secret) is not None:
        return {**kept, secret + "Cipher": ctx.cipher.encrypt(str(item[secret]))}
    for old in previous:
        if all(old.get(k) == item.get(k) for k in same) and old.get(secret + "Cipher"):
            return {**kept, secret + "Cipher": old[secret + "Cipher"]}
    raise BadRequest(f"{secret} is required for a new entry",
                     {"field": f"config.{secret}", **{k: item.get(k) for k in same}})


def _items(config: object, key: str) -> list[JSONObject]:
    value = config.get(key) if isinstance(config, dict) else None
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


async def prepare(ctx: AppContext, data: EntityRow, old: EntityRow | None) -> EntityRow:
    """Validate the config of the type, seal its secrets (keeping unchanged ones)."""
    auth_type = str(data.get("type"))
    config = data.get("config") if isinstance(data.get("config"), dict) else {}
    assert isinstance(config, dict)
    _check_config(auth_type, config)
    previous_config = (old or {}).get("config") if (old or {}).get("type") == auth_type else {}
    if auth_type == "fixedField":
        fields = [_sealed(ctx, f, "value", _items(previous_config, "fields"), ("location", "field"))
                  for f in _items(config, "fields")]
        config = {**config, "fields": fields}
    elif auth_type in ("httpBasic", "httpDigest"):
        users = [_sealed(ctx, u, "password", _items(previous_config, "users"), ("username",))
                 for u in _items(config, "users")]
        config = {**config, "users": users}
    else:
        await func_of(ctx, config.get("funcId"))  # 400 when it does not exist
    if not data.get("title"):
        data["title"] = data["id"]
    return {**data, "config": config}


def present(entity: EntityRow) -> EntityRow:
    """A definition as answered: no value or password, not even sealed."""
    config = entity.get("config")
    if not isinstance(config, dict):
        return entity
    hidden = {"value", "valueCipher", "password", "passwordCipher"}
    shown: JSONObject = dict(config)
    for key in ("fields", "users"):
        if isinstance(config.get(key), list):
            shown[key] = [{k: v for k, v in item.items() if k not in hidden}
                          for item in config[key] if isinstance(item, dict)]
    return {**entity, "config": shown}


async def _before_delete(ctx: AppContext, op: str, entity_id: str) -> None:
    await apiauth_defs.refuse_referenced(ctx.store, entity_id)


RESOURCE = Resource("api-auths", Entity.API_AUTH, "API auth", ApiAuthListQuery,
                    ApiAuthCreate, ApiAuthUpdate, id_prefix="apia", prepare=prepare,
                    present=present, before_delete=_before_delete, read=DEVELOPER, write=ADMIN)


def add_routes(app: web.Application) -> None:
    """``GET/POST /api/v1/api-auths``, ``GET/PATCH/DELETE /api/v1/api-auths/{id}`` (admin)."""
    add_resource(app, RESOURCE)


_API_AUTH = {"type": "object", "properties": {
    "id": {"type": "string"}, "title": {"type": ["string", "null"]},
    "type": {"type": "string", "enum": ["fixedField", "httpBasic", "httpDigest", "func"]},
    "config": {"type": "object", "description": "as set, without values and passwords"},
    "note": {"type": ["string", "null"]}, "createTime": {"type": "number"},
    "updateTime": {"type": "number"}}}


def operations(op: Callable[..., T]) -> list[T]:
    """The operations for ``/api/openapi.json`` (``op`` is its ``Op``)."""
    tag = "management"
    return [
        op("get", PATH, "List API auth definitions (secrets masked)", tag,
           {"type": "array", "items": _API_AUTH}, query=ApiAuthListQuery, paged=True),
        op("post", PATH, "Create an API auth definition", tag, _API_AUTH, body=ApiAuthCreate),
        op("get", PATH + "/{id}", "Get one API auth definition (secrets masked)", tag, _API_AUTH),
        op("patch", PATH + "/{id}", "Change an API auth definition (a user without password, "
           "a field without value keeps the stored one)", tag, _API_AUTH, body=ApiAuthUpdate),
        op("delete", PATH + "/{id}", "Delete an API auth definition (409 while an API uses it)",
           tag, {"type": "object", "properties": {"id": {"type": "string"}}}),
    ]
