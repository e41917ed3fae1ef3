"""The audit log (issue 16): every mutating management call recorded with who, how, what and
the result; read through ``GET /api/v1/audit`` (admin); pruned by the Beat's janitor."""

from __future__ import annotations

from typing import Any

from tests.server.accounts import make_user, origin, role_token, sign_in
from tests.server.conftest import Api

from fluxfunc_beat import janitor
from fluxfunc_common.roles import Role
from fluxfunc_common.store import AuditEntry, AuditQuery


async def _audit(api: Api, query: str = "") -> list[dict[str, Any]]:
    _, body, _ = await api.call("GET", f"/api/v1/audit{query}")
    entries: list[dict[str, Any]] = body["data"]
    return entries


async def test_mutating_calls_are_recorded_reads_are_not(api: Api) -> None:
    await api.call("POST", "/api/v1/script-sets", json={"id": "audited"})
    await api.call("PATCH", "/api/v1/script-sets/audited", json={"title": "T"})
    await api.call("GET", "/api/v1/script-sets/audited")
    await api.call("DELETE", "/api/v1/script-sets/nope", expect=404)
    entries = await _audit(api)
    assert [(e["method"], e["route"], e["entityId"], e["status"]) for e in entries] == [
        ("DELETE", "/api/v1/script-sets/{id}", "nope", 404),
        ("PATCH", "/api/v1/script-sets/{id}", "audited", 200),
        ("POST", "/api/v1/script-sets", "audited", 200),
    ]
    assert {(e["username"], e["via"]) for e in entries} == {("token:tok-test", "token")}
    assert all(e["id"].startswith("audit-") and e["time"] > 0 for e in entries)


async def test_refused_calls_are_recorded_anonymous_ones_are_not(api: Api) -> None:
    viewer = await role_token(api, Role.VIEWER)
    await api.call("POST", "/api/v1/script-sets", admin=False, headers=viewer, json={"id": "x"},
                   expect=403)
    await api.call("POST", "/api/v1/script-sets", admin=False, json={"id": "x"}, expect=401)
    entries = await _audit(api)
    assert [(e["route"], e["status"]) for e in entries] == [("/api/v1/script-sets", 403)]
    assert entries[0]["username"].startswith("token:")


async def test_sign_ins_and_session_calls_are_recorded(api: Api) -> None:
    await make_user(api, "olga", Role.DEVELOPER)
    await sign_in(api.client, "olga", "wrong password", expect=401)
    await sign_in(api.client, "olga")
    resp = await api.client.post("/api/v1/script-sets", json={"id": "olgas"}, headers=origin(api.client))
    assert resp.status == 200
    await api.client.post("/api/v1/auth/sign-out", headers=origin(api.client))
    entries = await _audit(api, "?username=olga")
    assert [(e["route"], e["via"], e["status"]) for e in entries] == [
        ("/api/v1/auth/sign-out", "session", 200),
        ("/api/v1/script-sets", "session", 200),
        ("/api/v1/auth/sign-in", "session", 200),
        ("/api/v1/auth/sign-in", "password", 401),
    ]


async def test_public_function_calls_are_not_audited(api: Api, published: dict[str, Any]) -> None:
    entry = await api.entry("async-apis")
    await api.call("POST", f"/api/v1/async/{entry}", admin=False, json={"kwargs": {"x": 1}})
    routes = {e["route"] for e in await _audit(api)}
    assert not any(r.startswith("/api/v1/async/") for r in routes)
    assert "/api/v1/async-apis" in routes


async def test_the_audit_log_pages_filters_and_is_admin_only(api: Api) -> None:
    for i in range(5):
        await api.call("POST", "/api/v1/script-sets", json={"id": f"page_{i}"})
    first = await _audit(api, "?limit=2")
    second = await _audit(api, f"?limit=2&before={first[-1]['id']}")
    assert [e["entityId"] for e in first + second] == ["page_4", "page_3", "page_2", "page_1"]
    assert len(await _audit(api, "?route=/api/v1/script-sets")) == 5
    developer = await role_token(api, Role.DEVELOPER)
    await api.call("GET", "/api/v1/audit", admin=False, headers=developer, expect=403)
    await api.call("GET", "/api/v1/audit?limit=0", expect=400)


async def test_the_janitor_prunes_past_the_retention(api: Api) -> None:
    store, now = api.ctx.store, 2_000_000_000.0
    days = api.ctx.settings.accounts.audit_retention_days
    for age_days in (days + 2, days + 1, days - 1):
        await store.add_audit(AuditEntry("", now - age_days * 86400, "ann", "session", "POST",
                                         "/api/v1/scripts", None, 200))
    assert await janitor.prune_audit(store, api.ctx.settings, now) == 2
    left = await store.list_audit(AuditQuery())
    assert [round((now - e.time) / 86400) for e in left] == [days - 1]
