"""The accounts part of the store on SQLite and MariaDB: users, roles on tokens and access
keys (existing ones admin), the audit log's keyset paging, filters and bounded pruning."""

from __future__ import annotations

import pytest

from fluxfunc_common.clock import FakeClock
from fluxfunc_common.errors import Conflict, NotFound
from fluxfunc_common.store import AuditEntry, AuditQuery, CredentialKind, SqlStore

T0 = 1_700_000_000.0


@pytest.fixture
def store(sql_store: SqlStore) -> SqlStore:
    sql_store.clock = FakeClock(T0)
    return sql_store


async def test_users(store: SqlStore) -> None:
    assert await store.count_users() == 0
    user = await store.add_user("ann", "admin", "scrypt$hash")
    assert user.created == T0 and user.last_sign_in is None and not user.disabled
    with pytest.raises(Conflict):
        await store.add_user("ann", "viewer", "x")
    await store.add_user("bob", "viewer", "h2")
    changed = await store.update_user("bob", role="developer", disabled=True, last_sign_in=T0 + 5)
    assert (changed.role, changed.disabled, changed.last_sign_in) == ("developer", True, T0 + 5)
    assert (await store.update_user("bob", disabled=False)).disabled is False
    assert [u.username for u in await store.list_users()] == ["ann", "bob"]
    await store.delete_user("bob")
    assert await store.find_user("bob") is None
    with pytest.raises(NotFound):
        await store.delete_user("bob")
    with pytest.raises(NotFound):
        await store.update_user("bob", role="admin")


async def test_tokens_and_access_keys_carry_a_role(store: SqlStore) -> None:
    await store.add_admin_token("t1", "hash1", "old style")  # as before roles: admin
    await store.add_admin_token("t2", "hash2", "reader", "viewer")
    found = await store.find_admin_token("hash2")
    assert found is not None and (found.id, found.role) == ("t2", "viewer")
    assert [c.role for c in await store.list_credentials(CredentialKind.TOKEN)] == ["admin", "viewer"]
    await store.revoke_admin_token("t2")
    assert await store.find_admin_token("hash2") is None
    await store.add_access_key("ak1", "sealed", "k", "developer")
    assert await store.access_key("ak1") == ("sealed", "developer")
    assert await store.access_key("nope") is None


def _entry(time: float, username: str = "ann", route: str = "/api/v1/scripts") -> AuditEntry:
    return AuditEntry("", time, username, "session", "POST", route, "s1", 200)


async def test_audit_is_newest_first_with_keyset_paging_and_filters(store: SqlStore) -> None:
    for i in range(7):
        await store.add_audit(_entry(T0 + i, "ann" if i % 2 else "bob",
                                     "/api/v1/scripts" if i < 4 else "/api/v1/users"))
    page = await store.list_audit(AuditQuery(limit=3))
    assert [e.time for e in page] == [T0 + 6, T0 + 5, T0 + 4]
    rest = await store.list_audit(AuditQuery(limit=10, before=page[-1].id))
    assert [e.time for e in rest] == [T0 + 3, T0 + 2, T0 + 1, T0]
    assert {e.username for e in await store.list_audit(AuditQuery(username="ann"))} == {"ann"}
    by_route = await store.list_audit(AuditQuery(route="/api/v1/users"))
    assert [e.time for e in by_route] == [T0 + 6, T0 + 5, T0 + 4]
    assert page[0].entity_id == "s1" and page[0].status == 200 and page[0].via == "session"


async def test_audit_pruning_is_bounded(store: SqlStore) -> None:
    for i in range(5):
        await store.add_audit(_entry(T0 + i))
    assert await store.prune_audit(T0 + 4, batch=3) == 3
    assert await store.prune_audit(T0 + 4, batch=3) == 1
    assert await store.prune_audit(T0 + 4, batch=3) == 0
    assert [e.time for e in await store.list_audit(AuditQuery())] == [T0 + 4]
