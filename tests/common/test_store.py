"""The SQL store: every test runs on SQLite and on MariaDB (``store_url``)."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

import pytest

from fluxfunc_common.clock import FakeClock
from fluxfunc_common.envelope import Origin, TaskResult, TaskStatus
from fluxfunc_common.errors import BadRequest, Conflict, NotFound, Unavailable
from fluxfunc_common.settings import StoreSettings
from fluxfunc_common.store import (
    CronFireStore,
    Entity,
    EntityStore,
    KvStore,
    SqlStore,
    Store,
    TaskRecord,
    TaskRecordQuery,
    TaskRecordStore,
    connect,
    open_store,
    task_record,
)
from fluxfunc_common.store.cronfires import SqlCronFires
from fluxfunc_common.store.entities import SqlEntities
from fluxfunc_common.store.kv import SqlKv
from fluxfunc_common.store.migrations import latest_version
from fluxfunc_common.store.records import SqlRecords

T0 = 1_700_000_000.0


@pytest.fixture
def store(sql_store: SqlStore) -> SqlStore:
    sql_store.clock = FakeClock(T0)
    return sql_store


def clock(store: SqlStore) -> FakeClock:
    assert isinstance(store.clock, FakeClock)
    return store.clock


def record(task_id: str, *, trigger: float, func: str = "demo__s.f", origin: Origin = Origin.DIRECT,
           origin_id: str | None = None, status: TaskStatus = TaskStatus.SUCCESS,
           queue: str = "default", **extra: Any) -> TaskRecord:
    """A task record exactly as the worker writes it."""
    return task_record(TaskResult(id=task_id, func_id=func, status=status, origin=origin,
                                  origin_id=origin_id, queue=queue, trigger_time=trigger,
                                  start_time=trigger + 0.1, end_time=trigger + 0.2, **extra))


async def all_records(store: Store, query: TaskRecordQuery) -> list[TaskRecord]:
    out: list[TaskRecord] = []
    while True:
        page = await store.list_task_records(query)
        out += page.items
        if page.next_cursor is None:
            return out
        query.cursor = page.next_cursor


# --- migrations -------------------------------------------------------------------------------


async def test_migrate_is_idempotent(store_url: str) -> None:
    store = await connect(StoreSettings(url=store_url))
    try:
        assert await store.schema_version() == 0
        assert await store.migrate() == latest_version() >= 1
        assert await store.migrate() == latest_version()
        assert await store.schema_version() == latest_version()
    finally:
        await store.close()


async def test_two_processes_migrate_at_once(store_url: str) -> None:
    a, b = await connect(StoreSettings(url=store_url)), await connect(StoreSettings(url=store_url))
    try:
        assert list(await asyncio.gather(a.migrate(), b.migrate())) == [latest_version()] * 2
        await a.create(Entity.SCRIPT_SET, {"id": "demo"})
    finally:
        await a.close()
        await b.close()


# --- entities -------------------------------------------------------------------------------------


async def test_crud(store: SqlStore) -> None:
    created = await store.create(Entity.SCRIPT_SET, {"id": "demo", "title": "Démo 🚀"})
    assert created == {"id": "demo", "title": "Démo 🚀", "createTime": T0, "updateTime": T0}
    with pytest.raises(Conflict):
        await store.create(Entity.SCRIPT_SET, {"id": "demo"})
    assert await store.find(Entity.SCRIPT_SET, "demo") == created
    assert await store.find(Entity.SCRIPT_SET, "nope") is None
    with pytest.raises(NotFound, match="script set 'nope' not found"):
        await store.get(Entity.SCRIPT_SET, "nope")

    clock(store).advance(5)
    updated = await store.update(Entity.SCRIPT_SET, "demo", {"title": None, "createTime": 1, "x": [1]})
    assert updated == {"id": "demo", "title": None, "x": [1], "createTime": T0, "updateTime": T0 + 5}
    assert await store.get(Entity.SCRIPT_SET, "demo") == updated
    with pytest.raises(NotFound):
        await store.update(Entity.SCRIPT_SET, "nope", {"title": "x"})

    await store.delete(Entity.SCRIPT_SET, "demo")
    assert await store.find(Entity.SCRIPT_SET, "demo") is None
    with pytest.raises(NotFound):
        await store.delete(Entity.SCRIPT_SET, "demo")


async def test_ids_are_case_sensitive(store: SqlStore) -> None:
    await store.create(Entity.ENV_VARIABLE, {"id": "Key"})
    await store.create(Entity.ENV_VARIABLE, {"id": "key"})
    page = await store.list(Entity.ENV_VARIABLE)
    assert [e["id"] for e in page.items] == ["Key", "key"]


async def test_list_pages_and_filters(store: SqlStore) -> None:
    for i in range(7):
        await store.create(Entity.SCRIPT, {"id": f"s{i}", "scriptSetId": "a" if i % 2 else "b"})
    seen: list[str] = []
    cursor = None
    while True:
        page = await store.list(Entity.SCRIPT, limit=3, cursor=cursor)
        seen += [str(s["id"]) for s in page.items]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == [f"s{i}" for i in range(7)]

    only_a = await store.list(Entity.SCRIPT, filters={"scriptSetId": "a"}, limit=2)
    assert [s["id"] for s in only_a.items] == ["s1", "s3"] and only_a.next_cursor == "s3"
    rest = await store.list(Entity.SCRIPT, filters={"scriptSetId": "a"}, limit=2, cursor="s3")
    assert [s["id"] for s in rest.items] == ["s5"] and rest.next_cursor is None
    assert [s["id"] for s in (await store.list(Entity.SCRIPT, filters={"id": "s4"})).items] == ["s4"]
    with pytest.raises(BadRequest):
        await store.list(Entity.SCRIPT, filters={"title": "x"})

    # the indexed column follows updates
    await store.update(Entity.SCRIPT, "s0", {"scriptSetId": "a"})
    assert len((await store.list(Entity.SCRIPT, filters={"scriptSetId": "a"})).items) == 4


async def test_changed_since(store: SqlStore) -> None:
    await store.create(Entity.CRON_JOB, {"id": "c1", "funcId": "f"})
    await store.create(Entity.CRON_JOB, {"id": "c2", "funcId": "f"})
    clock(store).advance(10)
    await store.update(Entity.CRON_JOB, "c1", {"cronExpr": "* * * * *"})
    assert [c["id"] for c in await store.changed_since(Entity.CRON_JOB, T0)] == ["c2", "c1"]
    changed = await store.changed_since(Entity.CRON_JOB, T0 + 10)
    assert [(c["id"], c["cronExpr"]) for c in changed] == [("c1", "* * * * *")]
    assert await store.changed_since(Entity.CRON_JOB, T0 + 11) == []


# --- scripts ----------------------------------------------------------------------------------


async def test_publish_script_replaces_funcs(store: SqlStore) -> None:
    await store.create(Entity.SCRIPT, {"id": "demo__a", "scriptSetId": "demo", "code": "x"})
    await store.create(Entity.SCRIPT, {"id": "demo__b", "scriptSetId": "demo"})
    assert await store.published_code("demo__a") is None
    await store.publish_script("demo__b", "pass", [{"id": "demo__b.g", "name": "g"}])

    clock(store).advance(1)
    funcs = [{"id": "demo__a.f1", "scriptId": "demo__a", "scriptSetId": "demo", "name": "f1"},
             {"id": "demo__a.f2", "scriptId": "demo__a", "scriptSetId": "demo", "name": "f2"}]
    script = await store.publish_script("demo__a", "code v1", funcs)
    assert script["publishVersion"] == 1 and script["publishTime"] == T0 + 1
    assert script["codeMD5"] == hashlib.md5(b"code v1").hexdigest() and "codeMd5" not in script
    assert script["code"] == "x" and script["updateTime"] == T0 + 1
    listed = await store.list(Entity.FUNC, filters={"scriptId": "demo__a"})
    assert [f["id"] for f in listed.items] == ["demo__a.f1", "demo__a.f2"]
    assert listed.items[0]["name"] == "f1" and listed.items[0]["createTime"] == T0 + 1

    script = await store.publish_script("demo__a", "code v2", [{**funcs[1], "title": "new"}])
    assert script["publishVersion"] == 2
    assert await store.published_code("demo__a") == ("code v2", 2)
    listed = await store.list(Entity.FUNC, filters={"scriptSetId": "demo"})
    assert [(f["id"], f.get("title")) for f in listed.items] == [("demo__a.f2", "new"), ("demo__b.g", None)]
    assert (await store.get(Entity.FUNC, "demo__b.g"))["scriptId"] == "demo__b"

    with pytest.raises(NotFound):
        await store.publish_script("missing", "x", [])
    # a func id owned by another script: nothing changes
    with pytest.raises(Conflict):
        await store.publish_script("demo__a", "code v3", [{"id": "demo__b.g"}])
    assert await store.published_code("demo__a") == ("code v2", 2)
    assert (await store.get(Entity.FUNC, "demo__a.f2"))["title"] == "new"


# --- beat --------------------------------------------------------------------------------------


async def test_claim_cron_fire_once(store: SqlStore, store_url: str) -> None:
    assert await store.claim_cron_fire("c1", 60_000, "t1") is True
    assert await store.claim_cron_fire("c1", 60_000, "t2") is False
    assert await store.claim_cron_fire("c1", 120_000, "t3") is True
    assert await store.claim_cron_fire("c2", 60_000, "t4") is True

    other = await connect(StoreSettings(url=store_url))
    try:
        claims = [s.claim_cron_fire("c9", 1_000, f"t{i}") for i in range(10) for s in (store, other)]
        assert sorted(await asyncio.gather(*claims)) == [False] * 19 + [True]
    finally:
        await other.close()
    assert await store.prune_cron_fires(100_000) == 3
    assert await store.claim_cron_fire("c1", 60_000, "t5") is True


# --- DFF.STORE ----------------------------------------------------------------------------------


async def test_kv_with_expiry(store: SqlStore) -> None:
    assert await store.kv_get("s", "k") is None
    await store.kv_set("s", "k", {"a": [1, 2.5, "ü"], "n": None})
    assert await store.kv_get("s", "k") == {"a": [1, 2.5, "ü"], "n": None}
    assert await store.kv_get("other", "k") is None
    await store.kv_set("s", "k", "short-lived", expires=10)
    assert await store.kv_get("s", "k") == "short-lived"
    clock(store).advance(10)
    assert await store.kv_get("s", "k") is None
    await store.kv_set("s", "k2", 42)
    assert await store.purge_expired_kv() == 1
    assert await store.kv_get("s", "k2") == 42
    await store.kv_delete("s", "k2")
    await store.kv_delete("s", "k2")
    assert await store.kv_get("s", "k2") is None


async def test_kv_not_exists_mget_and_patterns(store: SqlStore) -> None:
    """What DFF.STORE's set(not_exists)/mget/getall/get_pattern/keys need, on every backend."""
    assert await store.kv_set("s", "a:1", 1) is True
    assert await store.kv_set("s", "a:1", 9, not_exists=True) is False
    assert await store.kv_get("s", "a:1") == 1
    await store.kv_set("s", "a:2", [2], expires=10)
    await store.kv_set("s", "A:3", "upper")
    await store.kv_set("s", "a_%", "like chars")
    await store.kv_set("t", "a:1", "other scope")
    assert await store.kv_mget("s", ["a:1", "a:2", "zz", "a:1"]) == {"a:1": 1, "a:2": [2], "zz": None}
    assert await store.kv_mget("s", []) == {}
    assert await store.kv_items("s") == {"A:3": "upper", "a:1": 1, "a:2": [2], "a_%": "like chars"}
    assert await store.kv_items("s", "a:*") == {"a:1": 1, "a:2": [2]}  # case-sensitive everywhere
    assert await store.kv_items("s", "a_?") == {"a_%": "like chars"}  # no LIKE wildcards
    clock(store).advance(10)
    assert await store.kv_items("s", "a:?") == {"a:1": 1}
    assert await store.kv_mget("s", ["a:2"]) == {"a:2": None}
    assert await store.kv_set("s", "a:2", "again", not_exists=True) is True  # expired = missing
    assert await store.kv_get("s", "a:2") == "again"


# --- task records --------------------------------------------------------------------------------


async def test_task_records_batch_filters_paging(store: SqlStore) -> None:
    statuses = [TaskStatus.SUCCESS, TaskStatus.FAILURE, TaskStatus.TIMEOUT]
    batch = [record(f"task{i:04d}", trigger=T0 + i // 2, func=f"demo__s.f{i % 4}",
                    origin=Origin.CRON_JOB if i % 5 == 0 else Origin.SYNC_API,
                    origin_id=f"o{i % 10}", status=statuses[i % 3], queue="q" if i % 7 else "x",
                    result={"i": i})
             for i in range(1000)]
    await store.insert_task_records(batch)

    got = await store.get_task_record("task0123")
    assert got == batch[123]
    assert await store.get_task_record("nope") is None

    newest = await store.list_task_records(TaskRecordQuery(limit=3))
    assert [r["id"] for r in newest.items] == ["task0999", "task0998", "task0997"]
    every = await all_records(store, TaskRecordQuery(limit=97))
    assert [r["id"] for r in every] == [f"task{i:04d}" for i in reversed(range(1000))]

    query = TaskRecordQuery(filters={"funcId": "demo__s.f1", "status": "failure"}, limit=10)
    some = await all_records(store, query)
    expected = [r for r in batch if r["funcId"] == "demo__s.f1" and r["status"] == "failure"]
    assert [r["id"] for r in some] == [r["id"] for r in reversed(expected)]
    by_origin = await all_records(store, TaskRecordQuery(
        filters={"origin": "cronJob", "originId": "o0", "queue": "x"}, limit=5))
    assert {r["id"] for r in by_origin} == {
        r["id"] for r in batch if r["originId"] == "o0" and r["queue"] == "x" and r["origin"] == "cronJob"}

    window = await all_records(store, TaskRecordQuery(since=T0 + 10, until=T0 + 20, limit=7))
    assert [r["id"] for r in window] == [f"task{i:04d}" for i in reversed(range(20, 40))]
    with pytest.raises(BadRequest):
        await store.list_task_records(TaskRecordQuery(filters={"result": "x"}))
    with pytest.raises(BadRequest):
        await store.list_task_records(TaskRecordQuery(cursor="!!bad"))

    # a later write for the same task replaces the earlier one (queued → final)
    queued = record("late", trigger=T0 + 5000, status=TaskStatus.QUEUED)
    final = record("late", trigger=T0 + 5000, status=TaskStatus.SUCCESS, result=7)
    await store.insert_task_records([queued])
    await store.insert_task_records([final])
    assert await store.get_task_record("late") == final
    assert (await store.list_task_records(TaskRecordQuery(filters={"status": "queued"}))).items == []
    await store.insert_task_records([queued, final])  # within one batch, the last wins
    late = await store.get_task_record("late")
    assert late is not None and late["status"] == "success"
    await store.insert_task_records([])


async def test_prune_by_age_and_count_per_origin(store: SqlStore) -> None:
    batch = [record(f"a{i:03d}", trigger=T0 + i, origin_id="api-a") for i in range(100)]
    batch += [record(f"b{i:03d}", trigger=T0 + i, origin_id="api-b") for i in range(100)]
    batch += [record(f"c{i:03d}", trigger=T0 + 50 + i, origin_id="api-c") for i in range(10)]
    batch += [record(f"n{i:03d}", trigger=T0 + 50, origin_id=None) for i in range(30)]
    await store.insert_task_records(batch)

    # by age: everything triggered before T0+50 goes (50 of a, 50 of b)
    assert await store.prune_task_records(older_than=T0 + 50, keep_per_origin=1000) == 100
    # by count: 20 per origin, api-b may keep 5, api-c keeps all 10; NULL origin is one bucket
    removed = await store.prune_task_records(older_than=0, keep_per_origin=20, limits={"api-b": 5})
    assert removed == 30 + 45 + 10

    def ids(prefix: str, found: list[TaskRecord]) -> list[str]:
        return [r["id"] for r in found if r["id"].startswith(prefix)]

    left = await all_records(store, TaskRecordQuery(limit=500))
    assert ids("a", left) == [f"a{i:03d}" for i in reversed(range(80, 100))]
    assert ids("b", left) == [f"b{i:03d}" for i in reversed(range(95, 100))]
    assert len(ids("c", left)) == 10
    assert ids("n", left) == [f"n{i:03d}" for i in reversed(range(10, 30))]  # same time: id breaks ties
    assert await store.prune_task_records(older_than=0, keep_per_origin=20, limits={"api-b": 5}) == 0
    assert await store.prune_task_records(older_than=0, keep_per_origin=20, limits={"api-c": 0}) == 10


# --- tokens --------------------------------------------------------------------------------------


async def test_admin_tokens_and_access_keys(store: SqlStore) -> None:
    assert await store.admin_token_exists("h1") is False
    await store.add_admin_token("tok1", "h1", "ops")
    assert await store.admin_token_exists("h1") is True
    with pytest.raises(Conflict):
        await store.add_admin_token("tok2", "h1", "dup hash")
    await store.revoke_admin_token("tok1")
    assert await store.admin_token_exists("h1") is False
    with pytest.raises(NotFound):
        await store.revoke_admin_token("nope")

    assert await store.access_key_secret("ak") is None
    await store.add_access_key("ak", "encrypted-secret", "legacy client")
    assert await store.access_key_secret("ak") == "encrypted-secret"
    with pytest.raises(Conflict):
        await store.add_access_key("ak", "x", "y")


# --- one part alone ---------------------------------------------------------------------------------


async def test_each_part_works_alone_over_the_shared_database(store: SqlStore) -> None:
    """A part is its narrow interface over the one connection layer: built alone, it sees
    what the whole store wrote (same connection, same clock)."""
    entities: EntityStore = SqlEntities(store.db)
    kv: KvStore = SqlKv(store.db)
    records: TaskRecordStore = SqlRecords(store.db)
    fires: CronFireStore = SqlCronFires(store.db)
    await store.create(Entity.SCRIPT_SET, {"id": "alone"})
    assert (await entities.get(Entity.SCRIPT_SET, "alone"))["createTime"] == T0
    await kv.kv_set("s", "k", [1], expires=5)
    assert await store.kv_get("s", "k") == [1]
    clock(store).advance(5)  # one clock for every part
    assert await kv.kv_get("s", "k") is None and await kv.purge_expired_kv() == 1
    await records.insert_task_records([record("alone-1", trigger=T0)])
    alone = await store.get_task_record("alone-1")
    assert alone is not None and alone["status"] == "success"
    assert await fires.claim_cron_fires([("c", 1, "t")]) == [True]
    assert await store.claim_cron_fire("c", 1, "t2") is False


# --- availability and concurrency ------------------------------------------------------------------


async def test_ping(store: SqlStore) -> None:
    await store.ping()


async def test_concurrent_writers(store: SqlStore) -> None:
    await store.create(Entity.SCRIPT_SET, {"id": "shared", "n": 0})

    async def worker(i: int) -> None:
        await store.create(Entity.ENV_VARIABLE, {"id": f"v{i:02d}", "value": str(i)})
        await store.update(Entity.ENV_VARIABLE, f"v{i:02d}", {"seen": True})
        await store.update(Entity.SCRIPT_SET, "shared", {f"k{i}": i})
        await store.insert_task_records([record(f"t{i:02d}-{j}", trigger=T0 + j) for j in range(5)])
        await store.kv_set("scope", f"k{i}", i)
        assert await store.kv_get("scope", f"k{i}") == i
        assert await store.claim_cron_fire("c", i % 10, f"t{i}") in (True, False)

    await asyncio.gather(*(worker(i) for i in range(50)))
    envs = await store.list(Entity.ENV_VARIABLE, limit=100)
    assert len(envs.items) == 50 and all(e["seen"] for e in envs.items)
    shared = await store.get(Entity.SCRIPT_SET, "shared")
    assert all(shared[f"k{i}"] == i for i in range(50))  # row locks: no lost update
    assert len(await all_records(store, TaskRecordQuery(limit=1000))) == 250


async def test_unreachable_sqlite_path(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(Unavailable, match=r"cannot open SQLite database .*a-file/sub/x\.db"):
        await connect(StoreSettings(url=f"sqlite:///{blocker}/sub/x.db"))


async def test_sqlite_creates_parent_directories(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "f.db"
    async with open_store(StoreSettings(url=f"sqlite:///{path}")) as store:
        assert await store.schema_version() == latest_version()
    assert path.exists()


async def test_unreachable_mysql() -> None:
    with pytest.raises(Unavailable) as info:
        await connect(StoreSettings(url="mysql://fluxfunc:s%40cret@127.0.0.1:1/fluxfunc"))
    message = info.value.message
    assert message.startswith("database unreachable at mysql://fluxfunc@127.0.0.1:1/fluxfunc: ")
    assert "cret" not in message and "\n" not in message


async def test_ping_after_close_is_unavailable(store_url: str) -> None:
    store = await connect(StoreSettings(url=store_url))
    await store.close()
    with pytest.raises(Unavailable, match="database unreachable at"):
        await store.ping()


async def test_publish_writes_the_draft_in_the_same_transaction(store: SqlStore) -> None:
    """The draft and the publish are one write: a publish that fails leaves the draft, the
    published code and the funcs as they were, and a missing script is not created."""
    await store.create(Entity.SCRIPT, {"id": "demo__a", "scriptSetId": "demo", "code": "v1"})
    await store.create(Entity.SCRIPT, {"id": "demo__b", "scriptSetId": "demo"})
    await store.publish_script("demo__b", "pass", [{"id": "demo__b.g", "name": "g"}])
    script = await store.publish_script("demo__a", "v2", [{"id": "demo__a.f", "name": "f"}],
                                        draft={"code": "v2", "id": "other"})
    assert (script["id"], script["code"], script["publishedCode"]) == ("demo__a", "v2", "v2")

    with pytest.raises(Conflict):  # a func id owned by another script
        await store.publish_script("demo__a", "v3", [{"id": "demo__b.g"}], draft={"code": "v3"})
    script = await store.get(Entity.SCRIPT, "demo__a")
    assert (script["code"], script["publishedCode"], script["publishVersion"]) == ("v2", "v2", 1)

    with pytest.raises(Conflict):
        await store.publish_script("demo__new", "x", [{"id": "demo__b.g"}],
                                   draft={"code": "x"}, create={"scriptSetId": "demo", "code": "x"})
    assert await store.find(Entity.SCRIPT, "demo__new") is None
    created = await store.publish_script("demo__new", "x", [], draft={"code": "x"},
                                         create={"scriptSetId": "demo", "code": "x"})
    assert created["publishVersion"] == 1 and (await store.get(Entity.SCRIPT, "demo__new"))["code"] == "x"
