"""Draft runs inside a child (docs/worker.md, Draft runs): the draft is a module object of its
own — the published module of the script stays in the cache and in ``sys.modules``, the
draft's imports get published modules — and the child retires after the run."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import pytest

from fluxfunc_worker import sdk
from fluxfunc_worker.messages import RunMessage
from fluxfunc_worker.modcache import ScriptCache
from fluxfunc_worker.runtime import Runner

PUBLISHED = {
    "t__app": 'VERSION = "published"\n\n@DFF.API("F")\ndef f():\n    return VERSION\n',
    "t__lib": 'STATE = "clean"\n',
}
DRAFT = ('import t__lib\nt__lib.STATE = "changed"\nVERSION = "draft"\n\n'
         '@DFF.API("F")\ndef f():\n    print("from the draft")\n    return [VERSION, t__lib.STATE]\n')


class Backend:
    """The child's RPC to its worker: only ``script.draft`` is asked here."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def call(self, method: str, params: dict[str, Any]) -> object:
        self.calls.append((method, params))
        return DRAFT


@pytest.fixture
def cache() -> Iterator[ScriptCache]:
    made = ScriptCache(lambda sid: (PUBLISHED[sid], 1))
    try:
        yield made
    finally:
        for sid in PUBLISHED:
            sys.modules.pop(sid, None)


def test_the_draft_is_a_module_of_its_own(cache: ScriptCache) -> None:
    published = cache.module("t__app")
    lib = cache.module("t__lib")
    draft = cache.draft("t__app", DRAFT)
    assert draft is not published and draft.__name__ == "t__app"
    assert draft.VERSION == "draft" and published.VERSION == "published"
    assert cache.modules["t__app"] is published and sys.modules["t__app"] is published
    assert draft.t__lib is lib  # the draft's import is the published module


def _message(draft: str | None) -> RunMessage:
    message: RunMessage = {
        "type": "run", "id": "task-1", "func": "t__app.f", "kwargs": {}, "origin": "draft",
        "originId": "alice", "triggerTime": None, "cronExpr": None, "httpRequest": None,
        "callChain": [], "traceId": None, "queue": "default", "attempt": 1, "eta": None,
        "timeout": 5}
    if draft is not None:
        message["draft"] = draft
    return message


def test_a_draft_run_runs_the_draft_and_retires_its_child(cache: ScriptCache,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    backend = Backend()
    monkeypatch.setattr(sdk, "backend", backend)
    monkeypatch.setattr("fluxfunc_worker.runtime.envwatch.stale", lambda answers: False)
    runner = Runner(cache)
    cache.module("t__lib")  # (no script finder in this process: the draft finds it loaded)
    report, result = runner.run(_message("md5-of-the-draft"))
    assert report["status"] == "success" and result == b'["draft","changed"]'
    assert report.get("retire") == "draft"  # type: ignore[typeddict-item]
    assert report["printLogs"] == "from the draft\n"
    assert backend.calls == [("script.draft", {"scriptId": "t__app", "md5": "md5-of-the-draft"})]
    report, result = runner.run(_message(None))  # (the worker never sends it to this child)
    assert report["status"] == "success" and result == b'"published"'
    assert "retire" not in report
