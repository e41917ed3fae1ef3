"""Env variables read while a script module is being built (``DFF.ENV`` at module level), so
that a changed variable reaches the script on its next call.

While :class:`~fluxfunc_worker.runtime.ScriptCache` executes a script's code, every
``DFF.ENV`` read is recorded with the answer it got. Before each run the child asks the
worker once (``env.many``) for the recorded names; when any answer differs, it drops its
modules as after a publish (a module that imported the reading script may hold its values
too), and the next import rebuilds them with the new value. Scripts that read no env variable
at module level cost nothing; the others one call per run. The worker answers from its env
cache, which an ``envVariableChanged`` event clears (docs/internals.md, Notifications).

Imported by the child process only: standard library.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

Answer = object  # the JSON answer of ``env`` (value and mask), compared as it came

_loading: list[str] = []  # the scripts whose module code is running (innermost last)
_reads: dict[str, dict[str, Answer]] = {}  # script id → env name → answer at import


def begin(script_id: str) -> None:
    """A script's module code starts running."""
    _loading.append(script_id)
    _reads.pop(script_id, None)


def end(script_id: str) -> None:
    if _loading and _loading[-1] == script_id:
        _loading.pop()


def record(name: str, answer: Answer) -> None:
    """A ``DFF.ENV`` read; kept only while a module is being built."""
    if _loading:
        _reads.setdefault(_loading[-1], {})[name] = answer


def forget(scripts: Iterable[str] | None = None) -> None:
    """The modules of ``scripts`` (None: all) were dropped: what they read is not live any more."""
    if scripts is None:
        _reads.clear()
    for script_id in scripts or ():
        _reads.pop(script_id, None)


def names() -> list[str]:
    return sorted({name for reads in _reads.values() for name in reads})


def stale(ask: Callable[[list[str]], dict[str, Answer]]) -> bool:
    """True when a variable read at import has changed since (``ask`` answers for names)."""
    wanted = names()
    if not wanted:
        return False
    now = ask(wanted)
    return any(now.get(name) != answer for reads in _reads.values() for name, answer in reads.items())
