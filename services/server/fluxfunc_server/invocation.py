"""The inputs of an invocation: reading a request in the ``normal`` or ``simplified`` format,
the caller-options allow-list, merging fixed and caller kwargs, and checking them against the
func's signature before anything is enqueued.

Caller options are the fields of the models in :mod:`fluxfunc_server.schemas_invoke`
(anything else → 400):

=================  =========================================  ==============================
option             meaning                                    where
=================  =========================================  ==============================
``maxWait``        seconds to wait before answering 202       sync APIs, ``/func`` (sync)
``idempotencyKey`` same key → same task id, per caller scope  everywhere
``returnType``     ``raw`` (default) or ``jsonDumps``         sync APIs, ``/func`` (sync)
``unbox``          bare value (APIs' default) or data.result  sync APIs, ``/func`` (sync)
``async``          enqueue and answer ``data.id``             ``/func`` only (admin)
``eta``/``delay``  run not before (ISO 8601 / seconds)        ``/func``, ``/func-many``
``queue``          another queue                              ``/func``, ``/func-many``
=================  =========================================  ==============================
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass

from aiohttp import web
from multidict import MultiMapping
from pydantic import BaseModel

from fluxfunc_common.errors import BadRequest
from fluxfunc_common.models import Func, JSONObject, is_placeholder
from fluxfunc_server import peer, schemas
from fluxfunc_server.apiauth import AuthInput
from fluxfunc_server.bodies import RequestBody, parse_json
from fluxfunc_server.schemas_invoke import MAX_DELAY, OptionsModel, option_names

FORMATS = {"normal": "normal", "s": "simplified", "simplified": "simplified"}


@dataclass
class CallOptions:
    """Validated caller options."""

    max_wait: float | None = None
    idempotency_key: str | None = None
    return_type: str = "raw"
    unbox: bool | None = None
    run_async: bool = False
    eta: float | None = None
    queue: str | None = None


# --- reading requests ---------------------------------------------------------------------
Query = dict[str, str | list[str]]  # a query string: a repeated name is a list


def query_dict(query: MultiMapping[str]) -> Query:
    """Query string → dict; a repeated name becomes a list."""
    out: Query = {}
    for name in query:
        if name in out:
            continue
        values = query.getall(name)
        out[name] = values[0] if len(values) == 1 else list(values)
    return out


def _without(data: Mapping[str, object], drop: set[str]) -> JSONObject:
    return {k: v for k, v in data.items() if k not in drop}


def caller_input(fmt: str, method: str, query: Query, body: RequestBody,
                 strip_query: set[str], strip_body: set[str],
                 max_depth: int) -> tuple[JSONObject, JSONObject]:
    """(caller kwargs, raw caller options) from a sync/async API request (the body was
    depth-checked when read; the JSON of the query is checked here)."""
    if fmt == "simplified":
        if method in ("GET", "HEAD"):
            return _without(query, strip_query), {}
        return simplified_body(body, strip_body), {}
    if method in ("GET", "HEAD"):
        unknown = set(query) - {"kwargs", "options"} - strip_query
        if unknown:
            raise BadRequest(f"Unknown query parameter(s): {', '.join(sorted(unknown))}",
                             {"allowed": ["kwargs", "options"]})
        return _query_json(query, "kwargs", max_depth), _query_json(query, "options", max_depth)
    if body.kind == "none":
        return {}, {}
    if body.kind != "json" or not isinstance(body.value, dict):
        raise BadRequest('The normal format takes a JSON body {"kwargs": {…}, "options": {…}}')
    data = _without(body.value, strip_body)
    return split_call_body(data)


def _query_json(query: Query, name: str, max_depth: int) -> JSONObject:
    """The JSON object of query parameter ``name`` (``{}`` without it; given twice → 400)."""
    raw = query.get(name)
    if raw is None:
        return {}
    if not isinstance(raw, str):
        raise BadRequest(f"`{name}` is given more than once in the query")
    return expect_dict(parse_json(raw, name, max_depth), name)


def split_call_body(data: Mapping[str, object]) -> tuple[JSONObject, JSONObject]:
    """``{"kwargs": {…}, "options": {…}}`` with nothing else."""
    unknown = set(data) - {"kwargs", "options"}
    if unknown:
        raise BadRequest(f"Unknown field(s): {', '.join(sorted(unknown))}",
                         {"allowed": ["kwargs", "options"]})
    return (expect_dict(data.get("kwargs") or {}, "kwargs"),
            expect_dict(data.get("options") or {}, "options"))


def simplified_body(body: RequestBody, strip: set[str]) -> JSONObject:
    """The whole body as kwargs; text → ``{"text"}``, binary → ``{"base64"}``."""
    if body.kind == "none":
        return {}
    if body.kind == "binary":
        return {"base64": base64.b64encode(body.value).decode()}
    if body.kind == "text":
        return {"text": body.value}
    if not isinstance(body.value, dict):
        raise BadRequest("The simplified format takes a JSON object, a form, or text")
    return _without(body.value, strip)


def expect_dict(value: object, what: str) -> JSONObject:
    if not isinstance(value, dict):
        raise BadRequest(f"`{what}` must be a JSON object")
    return value


# --- options ------------------------------------------------------------------------------
def parse_options(raw: Mapping[str, object], model: OptionsModel, now: float) -> CallOptions:
    """Validate caller options with ``model`` (its fields are the allow-list: anything else →
    400 naming what is allowed)."""
    if not raw:  # the common case: no options, every field at its default (None)
        return options_from(None, now)
    allowed = option_names(model)
    unknown = set(raw) - set(allowed)
    if unknown:
        raise BadRequest(f"Option(s) not allowed here: {', '.join(sorted(unknown))}",
                         {"allowed": allowed})
    return options_from(schemas.parse(model, dict(raw), what="options"), now)


def options_from(parsed: BaseModel | None, now: float) -> CallOptions:
    """:class:`CallOptions` from validated options (``delay`` becomes an ``eta``)."""
    given = parsed.model_dump() if parsed is not None else {}
    opts = CallOptions(max_wait=given.get("max_wait"), idempotency_key=given.get("idempotency_key"),
                       return_type=given.get("return_type") or "raw", unbox=given.get("unbox"),
                       run_async=bool(given.get("run_async")), eta=given.get("eta"),
                       queue=given.get("queue"))
    if given.get("delay") is not None:
        opts.eta = now + given["delay"]
    if opts.eta is not None and opts.eta - now > MAX_DELAY:
        raise BadRequest(f"eta is more than {MAX_DELAY // 86_400} days ahead",
                         {"maxDelaySeconds": MAX_DELAY})
    return opts


# --- kwargs ---------------------------------------------------------------------------------
def merge_kwargs(fixed: Mapping[str, object] | None, caller: Mapping[str, object]) -> JSONObject:
    """Fixed kwargs of the entry plus the caller's; a caller may not override a fixed value.
    A fixed value of ``INPUT_BY_CALLER`` only marks a caller-supplied kwarg."""
    merged: JSONObject = {}
    for name, value in (fixed or {}).items():
        if is_placeholder(value):
            continue
        if name in caller:
            raise BadRequest(f"Cannot specify a fixed kwargs field: {name}", {"kwarg": name})
        merged[name] = value
    merged.update(caller)
    return merged


def check_signature(func: Func, kwargs: Mapping[str, object]) -> None:
    """Unknown kwargs (unless ``**kwargs``) and missing required ones → 400."""
    problems = func.check_kwargs(kwargs)
    if problems.unknown:
        raise BadRequest(f"Unknown kwarg(s) for {func.id}: {', '.join(problems.unknown)}",
                         {"unknown": list(problems.unknown), "accepted": sorted(problems.accepted)})
    if problems.missing:
        raise BadRequest(f"Missing kwarg(s) for {func.id}: {', '.join(problems.missing)}",
                         {"missing": list(problems.missing)})


# --- the request as the function sees it ------------------------------------------------------
def http_request_info(request: web.Request, query: Query, body: RequestBody,
                      auth: AuthInput | None, trusted: peer.Networks) -> JSONObject:
    """``_DFF_HTTP_REQUEST``: method, path, headers (lower-case names), query, body, ip —
    without credential headers (:mod:`peer`) and the API-auth secrets ``auth`` matched
    (header, query or body field); ``ip`` trusts X-Forwarded-For only from ``trusted`` proxies."""
    ip, ips = peer.client_ips(request.remote, request.headers.get("X-Forwarded-For", ""), trusted)
    hidden_headers = auth.strip_headers if auth else set()
    value = body.value
    if body.kind == "binary":
        value = {"base64": base64.b64encode(value).decode()}
    elif auth and auth.strip_body and isinstance(value, Mapping):
        value = _without(value, auth.strip_body)
    return {
        "method": request.method,
        "path": request.path,
        "url": str(request.rel_url.without_query_params(*auth.strip_query))
        if auth and auth.strip_query else request.path_qs,
        "host": request.host,
        "headers": peer.without_credentials(request.headers, hidden_headers),
        "query": _without(query, auth.strip_query) if auth else query,
        "body": value,
        "ip": ip,
        "ips": ips,
    }

