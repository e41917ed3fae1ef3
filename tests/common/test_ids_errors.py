"""ids, clock and the exception tree."""

from __future__ import annotations

import asyncio

from fluxfunc_common import errors, ids
from fluxfunc_common.clock import FakeClock, iso


def test_task_ids_are_time_ordered_and_unique() -> None:
    made = [ids.task_id(1_700_000_000_000 + i) for i in range(1000)]
    assert made == sorted(made)
    assert len(set(ids.task_id() for _ in range(10_000))) == 10_000
    assert made[0].startswith("task-") and len(made[0]) == 5 + 26


def test_entity_and_instance_ids() -> None:
    assert ids.entity_id("sapi").startswith("sapi-")
    assert ids.instance_id() != ids.instance_id()


def test_error_tree_codes() -> None:
    assert issubclass(errors.FuncTimeout, errors.TaskError)
    assert errors.FuncFailed.code == 599.1 and errors.FuncFailed.status == 599
    assert errors.FuncDead.code == 599.3 and errors.FuncExpired.code == 599.4
    assert errors.QueueFull.status == 429 and errors.QueueFull.reason == "EQueueFull"
    assert errors.Unavailable.status == 503 and errors.Unavailable.reason == "ESysUnavailable"
    assert issubclass(errors.ConfigError, errors.FatalError)
    exc = errors.NotFound("no such thing", {"id": "x"})
    assert exc.message == "no such thing" and exc.detail == {"id": "x"}
    assert errors.BadRequest().message  # a default message, never empty


async def test_fake_clock() -> None:
    clock = FakeClock(100.0)
    await clock.sleep(5)
    assert clock.time() == 105.0 and clock.monotonic() == 5.0
    await asyncio.sleep(0)
    assert iso(0) == "1970-01-01T00:00:00.000+00:00"


def test_epoch_reads_numbers_and_iso_text() -> None:
    from fluxfunc_common.clock import epoch

    assert epoch(1.5) == 1.5 and epoch(2) == 2.0
    assert epoch("2024-01-01T00:00:00Z") == epoch("2024-01-01T08:00:00+08:00") == 1704067200.0
    assert epoch("2024-01-01T00:00:00") == 1704067200.0  # no offset: UTC, as the API reads it
    assert epoch(None) is None and epoch("") is None and epoch("soon") is None and epoch(True) is None
