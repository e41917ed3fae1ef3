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
from typing import Any

from aiohttp import web
from multidict import MultiMapping
from pydantic import BaseModel

from fluxfunc_common.errors import BadRequest
from fluxfunc_server import peer, schemas
from fluxfunc_server.apiauth import AuthInput
from fluxfunc_server.bodies import RequestBody, parse_json
from fluxfunc_server.context import CTX
from fluxfunc_server.schemas_invoke import MAX_DELAY, OptionsModel, option_names

PLACEHOLDERS = frozenset({"INPUT_BY_CALLER", "FROM_PARAMETER"})
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
def query_dict(query: MultiMapping[str]) -> dict[str, Any]:
    """Query string → dict; a repeated name becomes a list."""
    out: dict[str, Any] = {}
    for name in query:
        if name in out:
            continue
        values = query.getall(name)
        out[name] = values[0] if len(values) == 1 else list(values)
    return out


def _without(data: Mapping[str, Any], drop: set[str]) -> dict[str, Any]:
    return {k: v for k, v in data.items() if k not in drop}


def caller_input(fmt: str, method: str, query: dict[str, Any], body: RequestBody,
                 strip_query: set[str], strip_body: set[str],
                 max_depth: int) -> tuple[dict[str, Any], dict[str, Any]]:
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
        kwargs = parse_json(query["kwargs"], "kwargs", max_depth) if "kwargs" in query else {}
        options = parse_json(query["options"], "options", max_depth) if "options" in query else {}
        return expect_dict(kwargs, "kwargs"), expect_dict(options, "options")
    if body.kind == "none":
        return {}, {}
    if body.kind != "json" or not isinstance(body.value, dict):
        raise BadRequest('The normal format takes a JSON body {"kwargs": {…}, "options": {…}}')
    data = _without(body.value, strip_body)
    return split_call_body(data)


def split_call_body(data: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``{"kwargs": {…}, "options": {…}}`` with nothing else."""
    unknown = set(data) - {"kwargs", "options"}
    if unknown:
        raise BadRequest(f"Unknown field(s): {', '.join(sorted(unknown))}",
                         {"allowed": ["kwargs", "options"]})
    return (expect_dict(data.get("kwargs") or {}, "kwargs"),
            expect_dict(data.get("options") or {}, "options"))


def simplified_body(body: RequestBody, strip: set[str]) -> dict[str, Any]:
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


def expect_dict(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadRequest(f"`{what}` must be a JSON object")
    return value


# --- options ------------------------------------------------------------------------------
def parse_options(raw: Mapping[str, Any], model: OptionsModel, now: float) -> CallOptions:
    """Validate caller options with ``model`` (its fields are the allow-list: anything else →
    400 naming what is allowed)."""
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
def merge_kwargs(fixed: Mapping[str, Any] | None, caller: Mapping[str, Any]) -> dict[str, Any]:
    """Fixed kwargs of the entry plus the caller's; a caller may not override a fixed value.
    A fixed value of ``INPUT_BY_CALLER`` only marks a caller-supplied kwarg."""
    merged: dict[str, Any] = {}
    for name, value in (fixed or {}).items():
        if isinstance(value, str) and value in PLACEHOLDERS:
            continue
        if name in caller:
            raise BadRequest(f"Cannot specify a fixed kwargs field: {name}", {"kwarg": name})
        merged[name] = value
    merged.update(caller)
    return merged


def check_signature(func: Mapping[str, Any], kwargs: Mapping[str, Any]) -> None:
    """Unknown kwargs (unless ``**kwargs``) and missing required ones → 400."""
    spec: Mapping[str, Any] = func.get("kwargsSpec") or {}
    if not func.get("varKwargs"):
        args = func.get("args") or ()
        unknown = [k for k in kwargs if k not in spec and k not in args]
        if unknown:
            known = sorted(set(args) | set(spec))
            raise BadRequest(f"Unknown kwarg(s) for {func.get('id')}: {', '.join(sorted(unknown))}",
                             {"unknown": sorted(unknown), "accepted": known})
    missing = [k for k, s in spec.items() if k not in kwargs and isinstance(s, Mapping)
               and s.get("required")]
    if missing:
        raise BadRequest(f"Missing kwarg(s) for {func.get('id')}: {', '.join(sorted(missing))}",
                         {"missing": sorted(missing)})


# --- the request as the function sees it ------------------------------------------------------
def http_request_info(request: web.Request, query: dict[str, Any], body: RequestBody,
                      auth: AuthInput | None = None) -> dict[str, Any]:
    """``_DFF_HTTP_REQUEST``: method, path, headers (lower-case names), query, body, ip —
    without credential headers (:mod:`peer`) and the API-auth secrets ``auth`` matched
    (header, query or body field); ``ip`` trusts X-Forwarded-For only from trusted proxies."""
    trusted = request.app[CTX].settings.server.trusted_networks
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

