"""Scripts, publishing and the func catalogue (docs/internals.md "Notifications").

``code`` of a script is its draft. ``POST /scripts/{id}/publish`` analyses the draft without
running it (:mod:`fluxfunc_common.scripts`), stores it as the published code together with
the script's funcs in one transaction, bumps ``scripts_version`` logging which script changed
(:mod:`fluxfunc_common.scriptchanges`) and announces ``scriptPublished`` so every worker drops
its copy of that script and of the scripts importing it, and tells the Beat about funcs
whose ``fixedCronExpr`` appeared, changed or went away. Publishing a script id that does not
exist yet, with code, creates it. The answer warns about each function whose queue no live
worker reads.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterable
from typing import NamedTuple, TypedDict

from aiohttp import web

from fluxfunc_common import changes, queues, queuestats, scripts
from fluxfunc_common.errors import BadRequest, Conflict
from fluxfunc_common.models import Func
from fluxfunc_common.store import Entity
from fluxfunc_server import editlocks, routing, schemas
from fluxfunc_server.access import DEVELOPER
from fluxfunc_server.appkeys import CTX
from fluxfunc_server.context import AppContext
from fluxfunc_server.handlers import crud
from fluxfunc_server.handlers.crud import EntityRow
from fluxfunc_server.handlers.reading import json_object
from fluxfunc_server.responses import ok


def _md5(code: str) -> str:
    return hashlib.md5(code.encode()).hexdigest()


async def ensure_script_set(ctx: AppContext, set_id: str) -> None:
    """Create the script set of a new script when it is missing (races are fine)."""
    if await ctx.store.find(Entity.SCRIPT_SET, set_id) is None:
        with contextlib.suppress(Conflict):
            await ctx.store.create(Entity.SCRIPT_SET, {"id": set_id, "title": set_id,
                                                       "description": None, "requirements": None})


async def prepare_script(ctx: AppContext, data: EntityRow, old: EntityRow | None) -> EntityRow:
    """Derived fields: ``scriptSetId`` (part before ``__``), draft ``codeMD5``, a title."""
    code = data.get("code")
    data["code"] = code = "" if code is None else str(code)
    data["codeMD5"] = _md5(code)
    if old is None:
        script_id = str(data["id"])
        data["scriptSetId"] = set_id = scripts.script_set_id(script_id)
        if not data.get("title"):
            data["title"] = script_id.split("__", 1)[1]
        await ensure_script_set(ctx, set_id)
    return data


async def _all_funcs(ctx: AppContext, script_id: str) -> list[Func]:
    out: list[Func] = []
    cursor = None
    while True:
        page = await ctx.store.list(Entity.FUNC, filters={"scriptId": script_id}, limit=500,
                                    cursor=cursor)
        out.extend(Func.from_row(row) for row in page.items)
        cursor = page.next_cursor
        if not cursor:
            return out


def _fixed(funcs: Iterable[Func | scripts.FuncRow]) -> dict[str, str | None]:
    return {f.id: f.options.fixed_cron_expr for f in map(Func.of, funcs)}


class ScriptEvent(TypedDict):
    """What the workers are told on the events channel when a script changes."""

    type: str  # "scriptPublished" | "scriptDeleted"
    scriptId: str


async def _announce(ctx: AppContext, event: ScriptEvent, before: list[Func],
                    after: list[scripts.FuncRow]) -> None:
    """Workers: new code version + event. Beat: the implicit fixed-cron jobs that changed."""
    pipe = ctx.redis.pipeline(transaction=False)
    # gen + which script, then the event (the same announcement an import makes)
    await changes.script_changed(pipe, ctx.keys, event["scriptId"],
                                 deleted=event["type"] == "scriptDeleted")
    changes.fixed_cron_changed(pipe, ctx.keys, _fixed(before), _fixed(after))
    await pipe.execute()


async def _delete_funcs(ctx: AppContext, op: str, script_id: str) -> None:
    """Before a script goes: its funcs leave the catalogue, workers and Beat are told."""
    before = await _all_funcs(ctx, script_id)
    for func in before:
        await ctx.store.delete(Entity.FUNC, func.id)
    await _announce(ctx, {"type": "scriptDeleted", "scriptId": script_id}, before, [])


class _Publish(NamedTuple):
    """What one publish writes, in one store transaction: the draft changes, the new script's
    row when it does not exist yet, and the code to publish."""

    draft: EntityRow
    create: EntityRow | None
    code: object


async def _plan(ctx: AppContext, script_id: str, body: schemas.PublishBody) -> _Publish:
    """The draft is replaced by ``body``; a missing script is created when ``body`` has code
    (so one call publishes a new script, as ``fluxfunc deploy`` expects)."""
    changes = body.model_dump(exclude_none=True)
    if body.code is None:
        script = await ctx.store.get(Entity.SCRIPT, script_id)  # NotFound with the usual text
        return _Publish(changes, None, script.get("code"))
    changes["codeMD5"] = _md5(body.code)
    if await ctx.store.find(Entity.SCRIPT, script_id) is not None:
        return _Publish(changes, None, body.code)
    new = schemas.parse(schemas.ScriptCreate, {"id": script_id, **body.model_dump(exclude_none=True)})
    return _Publish(changes, await prepare_script(ctx, new.model_dump(by_alias=True), None), body.code)


def _analyse(script_id: str, code: object) -> scripts.Analysis:
    if not isinstance(code, str) or not code.strip():
        raise BadRequest(f"script {script_id!r} has no draft code to publish", {"field": "code"})
    return scripts.analyse(script_id, code)


async def publish(request: web.Request) -> web.Response:
    """``POST /scripts/{id}/publish``: analyse the draft, store it as published, notify."""
    ctx = request.app[CTX]
    script_id = request.match_info["id"]
    await editlocks.check_draft_save(request, script_id)  # another user is editing it: 409
    body = schemas.parse(schemas.PublishBody, await json_object(request))
    # the code is checked before anything is written, and the draft and the publish are one
    # transaction: a publish that fails leaves the script as it was
    analysis = _analyse(script_id, body.code) if body.code is not None else None
    plan = await _plan(ctx, script_id, body)
    analysis = analysis or _analyse(script_id, plan.code)
    assert isinstance(plan.code, str)  # _analyse refuses anything else
    before = await _all_funcs(ctx, script_id)
    published = await ctx.store.publish_script(script_id, plan.code, analysis.funcs,
                                               draft=plan.draft, create=plan.create)
    await _announce(ctx, {"type": "scriptPublished", "scriptId": script_id}, before, analysis.funcs)
    live = await queuestats.live_queues(ctx.redis, ctx.keys)
    warnings = [*analysis.warnings, *queues.unconsumed(analysis.funcs, live)]
    return ok(request, {"script": published, "funcs": analysis.funcs, "warnings": warnings})


SCRIPTS = crud.Resource(
    "scripts", Entity.SCRIPT, "script", schemas.ScriptListQuery, schemas.ScriptCreate,
    schemas.ScriptUpdate, prepare=prepare_script, before_delete=_delete_funcs,
    guard=editlocks.check_draft_save)
FUNCS = crud.Resource("funcs", Entity.FUNC, "func", schemas.FuncListQuery)


def add_routes(app: web.Application) -> None:
    crud.add_resource(app, SCRIPTS)
    crud.add_resource(app, FUNCS)
    routing.post(app, f"{crud.API}/scripts/{{id}}/publish", publish, DEVELOPER)
