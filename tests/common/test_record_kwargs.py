"""The kwargs a task record keeps (fluxfunc_common.recordkwargs): secrets masked as print
output masks them, the size capped, and the record's JSON round trip through the store
(SQLite and MariaDB: ``store_url``)."""

from __future__ import annotations

import orjson
import pytest

from fluxfunc_common.envelope import TaskResult, TaskStatus
from fluxfunc_common.recordkwargs import (
    MASK,
    MAX_KWARGS_BYTES,
    PREVIEW_CHARS,
    Masker,
    capped,
    masked,
    record_kwargs,
)
from fluxfunc_common.store import SqlStore, TaskRecordQuery, task_record


def test_secrets_are_masked_in_strings_keys_and_nested_values() -> None:
    kwargs = {"dsn": "mysql://root:hunter2@db/x", "hunter2": 1, "deep": [{"p": "hunter2"}, 42],
              "pin": 4711, "flag": True, "none": None, "plain": "nothing secret"}
    out = masked(kwargs, ["hunter2", "4711", ""])
    assert out == {"dsn": f"mysql://root:{MASK}@db/x", MASK: 1, "deep": [{"p": MASK}, 42],
                   "pin": MASK, "flag": True, "none": None, "plain": "nothing secret"}
    assert kwargs["dsn"] == "mysql://root:hunter2@db/x", "the caller's kwargs are not changed"


def test_the_longest_secret_is_masked_first_and_regex_characters_are_plain() -> None:
    assert masked({"a": "abcdef"}, ["abc", "abcdef"]) == {"a": MASK}
    assert masked({"a": "x.*y", "b": "xzzy"}, [".*"]) == {"a": f"x{MASK}y", "b": "xzzy"}


def test_no_secrets_and_small_kwargs_are_kept_as_they_are() -> None:
    kwargs = {"name": "x", "n": [1, 2, {"k": None}]}
    assert masked(kwargs, []) == kwargs
    assert record_kwargs(kwargs, Masker([])) == (kwargs, False)


def test_large_kwargs_are_capped_value_by_value() -> None:
    big = "x" * (MAX_KWARGS_BYTES + 10)
    kept, cut = capped({"small": 1, "big": big, "list": list(range(10))})
    assert cut
    assert kept["small"] == 1 and kept["list"] == list(range(10))
    assert isinstance(kept["big"], str) and kept["big"].endswith(f"… ({len(big) + 2} bytes)")
    assert len(kept["big"]) < PREVIEW_CHARS + 40
    assert len(orjson.dumps(kept)) <= MAX_KWARGS_BYTES


def test_too_many_kwargs_are_left_out_beyond_the_cap() -> None:
    many = {f"k{i:05d}": "v" * 100 for i in range(2000)}
    kept, cut = capped(many)
    assert cut and 0 < len(kept) < len(many)
    assert list(kept) == list(many)[:len(kept)], "the first ones are kept, in order"
    assert len(orjson.dumps(kept)) <= MAX_KWARGS_BYTES


def test_a_secret_is_masked_before_the_cap_cuts_it() -> None:
    secret = "s3cr3t-" * 3
    value = "y" * (PREVIEW_CHARS - 5) + secret + "z" * MAX_KWARGS_BYTES
    kept, cut = record_kwargs({"v": value}, Masker([secret]))
    assert cut and "s3cr3t" not in str(kept)


@pytest.fixture
def store(sql_store: SqlStore) -> SqlStore:
    return sql_store


async def test_kwargs_round_trip_through_the_store(store: SqlStore) -> None:
    record = task_record(TaskResult(id="t-kwargs-1", func_id="demo__kw.f", status=TaskStatus.SUCCESS,
                                    origin_id="o-kwargs", trigger_time=1_700_000_000.0))
    record["kwargs"], record["kwargsTruncated"] = {"name": "ü", "n": [1, {"x": None}]}, True
    await store.insert_task_records([record])
    found = await store.get_task_record("t-kwargs-1")
    assert found is not None and found["kwargs"] == {"name": "ü", "n": [1, {"x": None}]}
    assert found["kwargsTruncated"] is True
    page = await store.list_task_records(TaskRecordQuery(filters={"originId": "o-kwargs"}))
    assert [r.get("kwargs") for r in page.items] == [{"name": "ü", "n": [1, {"x": None}]}]
