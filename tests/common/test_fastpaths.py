"""The switch between the fast paths and their plain variants (docs/internals.md), and the
task log line's two variants writing the same line."""

from __future__ import annotations

import io

import orjson
import pytest

from fluxfunc_common.fastpaths import plain_forced, use_fast
from fluxfunc_common.logs import configure_logging
from fluxfunc_common.settings import LogSettings, Settings, load_settings


def test_the_environment_forces_the_plain_variants(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLUXFUNC_PLAIN_VARIANTS", raising=False)
    assert use_fast() and use_fast(True) and not use_fast(False) and not plain_forced()
    monkeypatch.setenv("FLUXFUNC_PLAIN_VARIANTS", "1")
    assert plain_forced() and not use_fast(True)
    assert plain_forced({"FLUXFUNC_PLAIN_VARIANTS": "true"})
    assert not plain_forced({"FLUXFUNC_PLAIN_VARIANTS": "0"})


def test_the_setting_and_the_variable_load() -> None:
    assert Settings().worker.fast_paths is True
    env = {"FLUXFUNC_PLAIN_VARIANTS": "1", "FLUXFUNC_WORKER__FAST_PATHS": "false"}
    assert load_settings(None, env).worker.fast_paths is False  # the variable is not a setting


def test_both_task_line_variants_write_the_same_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FLUXFUNC_PLAIN_VARIANTS", raising=False)
    out = io.StringIO()
    logs = configure_logging(LogSettings(level="INFO", format="json"), stream=out)
    fields = {"task_id": "t-1", "status": "success", "duration_ms": 0.5}
    logs.info_line("worker")("task", **fields)
    logs.info_line("worker", fast=False)("task", **fields)
    fast, plain = (orjson.loads(line) for line in out.getvalue().splitlines())
    assert fast.pop("timestamp")[:19] == plain.pop("timestamp")[:19]
    assert list(fast.items()) == list(plain.items())
