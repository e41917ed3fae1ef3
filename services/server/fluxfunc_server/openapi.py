"""``GET /api/openapi.json``: an OpenAPI 3.1 document of every route of the HTTP API.

Request bodies and query strings come from the very pydantic models that validate them
(:mod:`fluxfunc_server.schemas` for management and ops, :mod:`fluxfunc_server.schemas_invoke`
for the invocation bodies and caller options). The ``simplified`` call format, whose body is
any object (or a form, or text), is described as such. Every answer is the DataFlux Func
envelope; errors share one schema.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Required, TypedDict

import orjson
from aiohttp import web
from pydantic import BaseModel, ConfigDict
from pydantic.json_schema import models_json_schema

from fluxfunc_common import __version__
from fluxfunc_server import openapi_accounts as accounts_ops
from fluxfunc_server import routing, schemas
from fluxfunc_server import schemas_invoke as call
from fluxfunc_server import schemas_out as out
from fluxfunc_server.access import PUBLIC, Rule
from fluxfunc_server.appkeys import OPENAPI
from fluxfunc_server.handlers import api_auths, draft_run
from fluxfunc_server.handlers import connectors as conns
from fluxfunc_server.handlers import python_packages as pkgs
from fluxfunc_server.handlers import resources as res
from fluxfunc_server.handlers import transfer as xfer

REF = "#/components/schemas/{model}"
Security = list[dict[str, list[str]]]
ADMIN: Security = [{"bearerAuth": []}, {"accessKey": []}, {"sessionCookie": []}]
JSONSchema = Mapping[str, object]  # a JSON Schema (pydantic's output, or written out here)

# The OpenAPI objects this document uses.
Parameter = TypedDict("Parameter", {"name": str, "in": str, "required": bool,
                                    "schema": JSONSchema, "description": str}, total=False)


class MediaType(TypedDict):
    schema: JSONSchema


class Response(TypedDict, total=False):
    description: Required[str]
    content: dict[str, MediaType]


class RequestBody(TypedDict):
    required: bool
    content: dict[str, MediaType]


class Operation(TypedDict, total=False):
    summary: str
    tags: list[str]
    operationId: str
    parameters: list[Parameter]
    responses: dict[str, Response]
    security: Security
    requestBody: RequestBody


class Document(TypedDict):
    openapi: str
    info: dict[str, str]
    paths: dict[str, dict[str, Operation]]
    components: dict[str, Mapping[str, object]]


class AnyKwargs(BaseModel):
    """``simplified`` format: the whole JSON body (or form, or text) is the kwargs."""

    model_config = ConfigDict(extra="allow")


# --- the route table -----------------------------------------------------------------------------


@dataclass
class Op:
    """One operation of the document."""

    method: str
    path: str
    summary: str
    tag: str
    data: JSONSchema | None = None  # of ``data`` in the success envelope
    body: type[BaseModel] | None = None
    query: type[BaseModel] | None = None
    auth: Security | None = None  # None: as the route's declared access says
    paged: bool = False
    raw: Mapping[str, JSONSchema] | None = None  # a non-envelope success response (type → schema)
    extra_query: list[Parameter] = field(default_factory=list)


def _ref(model: type[BaseModel]) -> JSONSchema:
    return {"$ref": REF.format(model=model.__name__)}


def _list(model: type[BaseModel]) -> JSONSchema:
    return {"type": "array", "items": _ref(model)}


def _crud(path: str, tag: str, what: str, entity: type[BaseModel], query: type[BaseModel],
          create: type[BaseModel] | None = None, update: type[BaseModel] | None = None) -> list[Op]:
    base = f"/api/v1/{path}"
    ops = [Op("get", base, f"List {what}s", tag, _list(entity), query=query, paged=True),
           Op("get", base + "/{id}", f"Get one {what}", tag, _ref(entity))]
    if create is not None:
        ops.append(Op("post", base, f"Create a {what}", tag, _ref(entity), body=create))
    if update is not None:
        ops += [Op("patch", base + "/{id}", f"Change a {what} (merge)", tag, _ref(entity), body=update),
                Op("delete", base + "/{id}", f"Delete a {what}", tag, _ref(out.Deleted))]
    return ops


_JSON_QUERY: list[Parameter] = [
    {"name": "kwargs", "in": "query", "required": False, "schema": {"type": "string"},
     "description": "normal format: kwargs as JSON text"},
    {"name": "options", "in": "query", "required": False, "schema": {"type": "string"},
     "description": "normal format: caller options as JSON text"},
]
_ANY = {"description": "any JSON value"}


def _invocation() -> list[Op]:
    ops: list[Op] = []
    for prefix, sync in (("sync", True), ("async", False), ("al", True), ("bat", False)):
        legacy = " (legacy alias)" if prefix in ("al", "bat") else ""
        kind = "sync" if sync else "async"
        for suffix in ("", "/{format}"):
            path = f"/api/v1/{prefix}/{{id}}{suffix}"
            summary = (f"Call a {kind} API{legacy}: " +
                       ("run and answer the bare return value" if sync else "enqueue, data.id = task id"))
            raw = {"application/json": _ANY} if sync else None
            data = None if sync else _ref(out.TaskId)
            auth: list[dict[str, list[str]]] = [{}, {"apiFixedField": []}, {"apiBasic": []},
                                                {"apiDigest": []}]
            body = (call.SyncCallBody if sync else call.AsyncCallBody) if not suffix else AnyKwargs
            ops.append(Op("get", path, summary, "invocation", data, auth=auth, raw=raw,
                          extra_query=_JSON_QUERY))
            ops.append(Op("post", path, summary, "invocation", data, body=body, auth=auth, raw=raw))
    ops += [
        Op("post", "/api/v1/func/{func_id}", "Call a func directly: data.result or data.id",
           "invocation", {"type": "object"}, body=call.FuncCallBody),
        Op("post", "/api/v1/func-many", "Enqueue many calls: data.ids", "invocation",
           {"type": "object", "properties": {"ids": {"type": "array", "items": {"type": "string"}}}},
           body=call.FuncManyBody),
        Op("post", "/api/v1/cron/{id}", "Run a cron job now", "invocation", _ref(out.CronRun)),
        Op("get", "/api/v1/tasks/{task_id}", "A task's status and result (?wait=N long-polls, max 60)",
           "tasks", _ref(out.TaskRecord),
           extra_query=[{"name": "wait", "in": "query", "required": False,
                         "schema": {"type": "number", "minimum": 0, "maximum": 60}}]),
        Op("post", "/api/v1/tasks/{task_id}/cancel", "Cancel a queued or running task", "tasks",
           _ref(out.TaskRecord)),
    ]
    return ops


def operations() -> list[Op]:
    """Every operation of the HTTP API, in document order."""
    s = schemas
    ops = _invocation()
    ops += _crud("script-sets", "management", "script set", out.ScriptSet, s.ScriptSetListQuery,
                 s.ScriptSetCreate, s.ScriptSetUpdate)
    ops += _crud("scripts", "management", "script", out.Script, s.ScriptListQuery,
                 s.ScriptCreate, s.ScriptUpdate)
    ops += [Op("post", "/api/v1/scripts/{id}/publish",
               "Publish the draft: compile, extract @DFF.API funcs, notify workers", "management",
               _ref(out.PublishResult), body=s.PublishBody), *draft_run.operations(Op)]
    ops += _crud("funcs", "management", "func", out.Func, s.FuncListQuery)
    ops += _crud("sync-apis", "management", "sync API", out.SyncApi, s.EntryListQuery,
                 s.SyncApiCreate, s.SyncApiUpdate)
    ops += _crud("async-apis", "management", "async API", out.AsyncApi, s.EntryListQuery,
                 s.AsyncApiCreate, s.AsyncApiUpdate)
    ops += _crud("cron-jobs", "management", "cron job", out.CronJob, s.EntryListQuery,
                 s.CronJobCreate, s.CronJobUpdate)
    ops.append(Op("get", "/api/v1/cron-jobs/{id}/next", "Next fire times of a cron job",
                  "management", _ref(out.NextFires), query=s.NextFiresQuery))
    ops += _crud("env-variables", "management", "env variable", out.EnvVariable,
                 s.EnvVariableListQuery, s.EnvVariableCreate, s.EnvVariableUpdate)
    ops += [
        Op("get", "/api/v1/task-records", "List task records (newest first)", "management",
           _list(out.TaskRecord), query=s.TaskRecordListQuery, paged=True),
        Op("get", "/api/v1/task-records/{id}", "Get one task record", "management",
           _ref(out.TaskRecord)),
        Op("get", "/api/v1/ops/overview", "Services, queues, dead letters, Beat leadership", "ops",
           _ref(out.Overview)),
        Op("get", "/api/v1/ops/dead-letters", "Dead letters, oldest first", "ops",
           _list(out.DeadLetter), query=s.DeadLetterQuery),
        Op("post", "/api/v1/ops/dead-letters/{entry}/requeue", "Put a dead letter back on its queue",
           "ops", _ref(out.Requeued)),
        *(op for kind in ("tokens", "access-keys") for op in (
            Op("get", f"/api/v1/admin/{kind}", f"List {kind} (never their secrets)", "admin",
               _list(out.Credential)),
            Op("post", f"/api/v1/admin/{kind}/{{id}}/revoke", f"Revoke one of the {kind}", "admin",
               _ref(out.Revoked)))),
        *_resources(),
        *xfer.operations(Op),  # export / import
        *conns.operations(Op),  # connectors
        *api_auths.operations(Op),  # reusable API auth definitions
        *accounts_ops.operations(Op),  # sign-in, users, audit, editing locks
        Op("get", pkgs.PATH, "The extra Python packages: the list, the resolved set, each live "
           "worker's install state (docs/packages.md)", "packages", {"type": "object"}),
        Op("put", pkgs.PATH, "Replace the deployment-wide package list (every worker installs it)",
           "packages", {"type": "object"}, body=pkgs.PackagesPut),
        Op("get", "/metrics", "Prometheus metrics", "ops",
           raw={"text/plain": {"type": "string"}}),
        Op("get", "/healthz", "Liveness: 200 while the process runs", "ops", _ref(out.Status)),
        Op("get", "/readyz", "Readiness: Redis and the store answer, the store takes a write",
           "ops", _ref(out.Status)),
        Op("head", "/", "Load-balancer probe", "ops", raw={}),
        Op("get", "/", "A browser (Accept: text/html) is redirected to /console/; else 404", "console",
           raw={}),
        Op("get", "/console", "Redirect to /console/", "console", raw={}),
        Op("get", "/console/{path}", "The web console: a built asset (cached a year) or index.html "
           "for the console's own routes (docs/console.md)", "console",
           raw={"text/html": {"type": "string"}}),
        Op("get", "/api/v1/do/ping", "DataFlux Func SDK check: answers `pong` (verifies access-key "
           "headers when sent)", "ops", {"type": "string", "const": "pong"}),
        Op("post", "/api/v1/do/echo", "DataFlux Func SDK check: answers the query and JSON body it got",
           "ops", {"type": "object", "properties": {"query": {"type": "object"}, "body": {}}},
           body=AnyKwargs),
        Op("get", "/api/openapi.json", "This document", "ops",
           raw={"application/json": {"type": "object"}}),
    ]
    return ops


def _resources() -> list[Op]:
    """The resource directory (docs/resources.md)."""
    query, binary = res.PathQuery, {"application/octet-stream": {"type": "string", "format": "binary"}}
    return [
        Op("get", "/api/v1/resources", "List a folder of the resource directory", "resources",
           {"type": "array", "items": {"type": "object"}}, query=query),
        Op("post", "/api/v1/resources", "Upload files (multipart/form-data, field `files`, streamed)",
           "resources", {"type": "array", "items": {"type": "object"}}, query=query),
        Op("get", "/api/v1/resources/download", "Download a file (streamed, Range honoured)",
           "resources", query=query, raw=binary),
        Op("post", "/api/v1/resources/operate", "mkdir, move, delete, zip or unzip", "resources",
           {"type": "object", "properties": {"path": {"type": "string"}}}, body=res.Operation),
        Op("get", "/api/v1/resources/large-data/{name}", "DFF.RESP_LARGE_DATA data, served once",
           "resources", raw=binary),
    ]


# --- building the document -------------------------------------------------------------------------


def _envelope(data: JSONSchema | None, paged: bool) -> JSONSchema:
    props: dict[str, JSONSchema] = {
        "ok": {"type": "boolean", "const": True},
        "error": {"type": "number"},
        "message": {"type": "string"},
        "data": data if data is not None else {},
        "traceId": {"type": "string"},
        "reqCost": {"type": "number"},
    }
    required = ["ok", "error", "message", "data", "traceId"]
    if paged:
        props["pageInfo"] = _ref(out.PageInfo)
        required.append("pageInfo")
    return {"type": "object", "required": required, "properties": props}


ERROR_SCHEMA: JSONSchema = {
    "type": "object",
    "required": ["ok", "error", "reason", "message", "detail", "traceId"],
    "properties": {
        "ok": {"type": "boolean", "const": False},
        "error": {"type": "number", "description": "HTTP status, or status.sub (e.g. 599.1)"},
        "reason": {"type": "string", "description": "EClientBadRequest, EUserAuth, EFuncFailed, …"},
        "message": {"type": "string"},
        "detail": {"type": "object", "description": "e.g. pydantic `errors` for a 400"},
        "traceId": {"type": "string"},
    },
}


def _parameters(op: Op, components: dict[str, JSONSchema]) -> list[Parameter]:
    params: list[Parameter] = [{"name": name, "in": "path", "required": True, "schema": _path_schema(name)}
              for name in re.findall(r"{(\w+)}", op.path)]
    if op.query is not None:
        schema = op.query.model_json_schema(ref_template=REF)
        components.update(schema.pop("$defs", {}))
        required = set(schema.get("required", []))
        for name, prop in schema.get("properties", {}).items():
            prop = {k: v for k, v in prop.items() if k != "title"}
            params.append({"name": name, "in": "query", "required": name in required,
                           "schema": prop, **({"description": prop["description"]}
                                              if "description" in prop else {})})
    params += op.extra_query
    return params


def _path_schema(name: str) -> JSONSchema:
    if name == "format":
        return {"type": "string", "enum": ["normal", "s", "simplified"]}
    if name == "entry":
        return {"type": "string", "pattern": r"^\d+-\d+$"}
    return {"type": "string"}


def _responses(op: Op) -> dict[str, Response]:
    error: Response = {"description": "error envelope", "content": {
        "application/json": {"schema": {"$ref": REF.format(model="ErrorEnvelope")}}}}
    if op.raw is not None:
        ok: Response = {"description": "OK"}
        if op.raw:
            ok["content"] = {ctype: {"schema": schema} for ctype, schema in op.raw.items()}
    else:
        ok = {"description": "OK", "content": {"application/json": {
            "schema": _envelope(op.data, op.paged)}}}
    responses: dict[str, Response] = {"200": ok}
    if op.path.startswith("/api/v1/sync") or op.path.startswith("/api/v1/al") \
            or op.path.startswith("/api/v1/func/"):
        responses["202"] = {"description": "still running after maxWait: data.id, Location header",
                            "content": {"application/json": {"schema": _envelope(_ref(out.TaskId), False)}}}
    if op.method != "head":
        responses["default"] = error
    return responses


def _security(op: Op, rules: Mapping[tuple[str, str], Rule]) -> Security:
    """What the operation documents: its own ``auth`` or the access its route declares (a
    documented operation without a route fails the Server's start)."""
    if op.auth is not None:
        return op.auth
    rule = rules.get((op.method.upper(), op.path))
    if rule is None:
        raise LookupError(f"documented but not routed: {op.method.upper()} {op.path}")
    return ADMIN if rule.access.role is not None else []


def build_document(rules: Mapping[tuple[str, str], Rule]) -> Document:
    """The whole OpenAPI document (built once per process); ``rules`` are the routes'
    declared access, (method, path) → rule."""
    ops = operations()
    models: list[type[BaseModel]] = [m for op in ops for m in (op.body,) if m is not None]
    models += out.RESPONSE_MODELS
    unique = list(dict.fromkeys(models))
    _, defs = models_json_schema([(m, "validation") for m in unique], ref_template=REF)
    components: dict[str, JSONSchema] = dict(defs.get("$defs", {}))
    components["ErrorEnvelope"] = ERROR_SCHEMA
    paths: dict[str, dict[str, Operation]] = {}
    for op in ops:
        item: Operation = {
            "summary": op.summary, "tags": [op.tag],
            "operationId": f"{op.method}_{re.sub(r'[^A-Za-z0-9]+', '_', op.path).strip('_') or 'root'}",
            "parameters": _parameters(op, components),
            "responses": _responses(op),
            "security": _security(op, rules),
        }
        if op.body is not None:
            item["requestBody"] = {"required": op.method == "post" and op.body not in
                                   (schemas.PublishBody, call.SyncCallBody, call.AsyncCallBody,
                                    AnyKwargs, call.FuncCallBody),
                                   "content": {"application/json": {"schema": _ref(op.body)}}}
        paths.setdefault(op.path, {})[op.method] = item
    return {
        "openapi": "3.1.0",
        "info": {"title": "fluxfunc", "version": __version__,
                 "description": "Python functions as HTTP endpoints and cron jobs (DataFlux Func "
                                "compatible). Every JSON answer is the DataFlux Func envelope."},
        "paths": paths,
        "components": {"schemas": components, "securitySchemes": SECURITY_SCHEMES},
    }


SECURITY_SCHEMES: dict[str, dict[str, str]] = {
    "bearerAuth": {"type": "http", "scheme": "bearer",
                   "description": "token from `fluxfunc admin create-token` (with a role)"},
    "sessionCookie": {"type": "apiKey", "in": "cookie", "name": "fluxfunc_session",
                      "description": "console session from POST /api/v1/auth/sign-in"},
    "accessKey": {"type": "apiKey", "in": "header", "name": "X-Dff-Ak-Sign",
                  "description": "DataFlux Func access-key signing: also X-Dff-Ak-Id, "
                                 "X-Dff-Ak-Timestamp, X-Dff-Ak-Nonce; sign = hex HMAC-SHA1(secret, "
                                 "METHOD&PATH?QUERY&timestamp&nonce&md5(body))"},
    "apiFixedField": {"type": "apiKey", "in": "header", "name": "X-Api-Key",
                      "description": "an entry's fixedField API auth (header, query or body field)"},
    "apiBasic": {"type": "http", "scheme": "basic", "description": "an entry's httpBasic API auth"},
    "apiDigest": {"type": "http", "scheme": "digest",
                  "description": "an entry's httpDigest API auth (RFC 7616, MD5 or SHA-256)"},
}

async def openapi_json(request: web.Request) -> web.Response:
    return web.Response(body=request.app[OPENAPI], content_type="application/json")


def add_routes(app: web.Application) -> None:
    """The document's route; added after every other route, whose access it documents."""
    routing.get(app, "/api/openapi.json", openapi_json, PUBLIC)
    app[OPENAPI] = orjson.dumps(build_document(routing.rules(app)))
