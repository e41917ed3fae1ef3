"""Script modules inside a worker child: built once from published code, kept between tasks,
and dropped on a publish — only the changed scripts and the scripts that import them.

* Code is compiled once per (script, publish version); the module objects live until a
  publish generation (``gen``) reports their script, or one they import, as changed.
* The import graph is recorded while modules are built and used: ``import demo__lib`` (or
  ``from demo__lib import x``) in a script — at module level or inside a function — goes
  through :func:`tracking_import`, which notes "this script imports that one"; a script
  loaded while another is being built (the finder, ``importlib.import_module``) is noted
  too, and so is a module-level global that is another script's module or one of its
  functions or classes.
* When the parent cannot say what changed (a worker that missed steps of the change log,
  a new child, a gap in the generations) every module is dropped, as after a full reload.

Imported by the child process only: standard library and the sdk.
"""

from __future__ import annotations

import builtins
import importlib.abc
import importlib.machinery
import linecache
import re
import sys
import types
from collections.abc import Callable, Iterable, Mapping, Sequence

from fluxfunc_worker import envwatch, sdk
from fluxfunc_worker.messages import ScriptChanges
from fluxfunc_worker.taskglobals import context_globals

SCRIPT_NAME = re.compile(r"^[A-Za-z0-9_]+__[A-Za-z0-9_]+$")

CodeFetcher = Callable[[str], "tuple[str, int] | None"]


class ScriptNotFound(Exception):
    """The script has never been published."""


def script_filename(script_id: str) -> str:
    return f"<{script_id}>"


class ScriptCache:
    """Compiled code by (script id, publish version); live modules and who imports whom."""

    def __init__(self, fetch: CodeFetcher) -> None:
        self._fetch = fetch
        self._code: dict[str, tuple[int, types.CodeType]] = {}
        self._modules: dict[str, types.ModuleType] = {}
        self._loading: list[str] = []  # scripts whose module code is running (innermost last)
        self._imports: dict[str, set[str]] = {}  # script → the scripts it imports
        self.gen: int | None = None
        self.builds = 0  # modules built (executed) by this child

    @property
    def modules(self) -> dict[str, types.ModuleType]:
        return self._modules

    def set_gen(self, gen: int | None, changed: ScriptChanges | None = None) -> None:
        """The parent's publish generation for this task. Moving on from the generation the
        parent says this child had (``changed["since"]``) drops the changed scripts and their
        importers; anything else (no ``changed``, another ``since``) drops every module."""
        if gen == self.gen:
            return
        previous, self.gen = self.gen, gen
        if changed is None or changed.get("since") != previous:
            self.drop_modules()
        else:
            self.drop(changed.get("scripts") or [])

    def drop_modules(self) -> None:
        """Forget every module (code objects stay cached by version)."""
        for name in self._modules:
            sys.modules.pop(name, None)
        self._modules.clear()
        self._imports.clear()
        envwatch.forget()

    def drop(self, scripts: Iterable[str]) -> set[str]:
        """Forget ``scripts`` and every module that imports one of them, transitively; the
        names dropped."""
        gone = self.affected(scripts)
        for name in gone:
            module = self._modules.pop(name, None)
            if module is not None and sys.modules.get(name) is module:
                del sys.modules[name]
            self._imports.pop(name, None)
        envwatch.forget(gone)
        return gone

    def affected(self, scripts: Iterable[str]) -> set[str]:
        """``scripts`` and the scripts importing any of them, directly or not."""
        importers: dict[str, set[str]] = {}
        for importer, imported in self._imports.items():
            for name in imported:
                importers.setdefault(name, set()).add(importer)
        gone = set(scripts)
        frontier = list(gone)
        while frontier:
            for importer in importers.get(frontier.pop(), ()):
                if importer not in gone:
                    gone.add(importer)
                    frontier.append(importer)
        return gone

    def imports(self, script_id: str) -> set[str]:
        """The scripts ``script_id`` was seen importing."""
        return set(self._imports.get(script_id, ()))

    def reachable(self, script_id: str) -> list[types.ModuleType]:
        """The live modules of ``script_id`` and of the scripts it imports, directly or not
        (the ones whose ``_DFF_*`` globals a run of that script may read)."""
        seen = {script_id}
        frontier = [script_id]
        while frontier:
            for name in self._imports.get(frontier.pop(), ()):
                if name not in seen:
                    seen.add(name)
                    frontier.append(name)
        return [self._modules[name] for name in seen if name in self._modules]

    def note_import(self, importer: str, imported: str) -> None:
        """``importer`` (a script module, built or being built) uses script ``imported``."""
        if importer == imported or (importer not in self._modules and importer not in self._loading):
            return
        known = self._imports.setdefault(importer, set())
        if imported in known:
            return
        known.add(imported)
        ctx = sdk.current()
        if ctx is not None and not self._loading:  # first seen inside a running function:
            ctx_globals = context_globals(ctx)  # its globals join this run's
            for module in self.reachable(imported):
                module.__dict__.update(ctx_globals)

    def module(self, script_id: str) -> types.ModuleType:
        """The live module of a script, executing its code on first use."""
        if self._loading:
            self.note_import(self._loading[-1], script_id)
        found = self._modules.get(script_id)
        if found is not None:
            return found
        if script_id in self._loading:
            raise ImportError(f"circular import of script {script_id!r}")
        code = self._compiled(script_id)
        module = _blank_module(script_id)
        self._loading.append(script_id)
        sys.modules[script_id] = module
        envwatch.begin(script_id)
        try:
            exec(code, module.__dict__)
        except BaseException:
            sys.modules.pop(script_id, None)
            self._imports.pop(script_id, None)
            raise
        finally:
            envwatch.end(script_id)
            self._loading.remove(script_id)
        self._modules[script_id] = module
        self.builds += 1
        self._note_globals(script_id, module.__dict__)
        return module

    def _note_globals(self, script_id: str, namespace: Mapping[str, object]) -> None:
        """Module-level names bound to another script's module or one of its objects."""
        for value in list(namespace.values()):
            if isinstance(value, types.ModuleType):
                owner: object = value.__name__
            else:
                owner = getattr(value, "__module__", None)
            if isinstance(owner, str) and owner in self._modules:
                self.note_import(script_id, owner)

    def _compiled(self, script_id: str) -> types.CodeType:
        fetched = self._fetch(script_id)
        if fetched is None:
            raise ScriptNotFound(f"script {script_id!r} is not published")
        source, version = fetched
        cached = self._code.get(script_id)
        if cached is not None and cached[0] == version:
            return cached[1]
        filename = script_filename(script_id)
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        code = compile(source, filename, "exec", dont_inherit=True)
        self._code[script_id] = (version, code)
        return code


    def draft(self, script_id: str, source: str) -> types.ModuleType:
        """A module built from the draft ``source`` of a script, for one draft run: its own
        object, in neither this cache nor ``sys.modules``, so the script's published module
        (and what other scripts import) stays as it was, and the scripts the draft imports are
        their published modules. Its frames show as the script's (``<script_id>``). The child
        retires after a draft run, which drops whatever else the draft code changed
        (docs/worker.md, Draft runs)."""
        filename = script_filename(script_id)
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        code = compile(source, filename, "exec", dont_inherit=True)
        module = _blank_module(script_id)
        exec(code, module.__dict__)
        return module


def _blank_module(script_id: str) -> types.ModuleType:
    """A new module object for a script: its ``DFF`` and the running task's ``_DFF_*`` globals."""
    module = types.ModuleType(script_id)
    module.__file__ = script_filename(script_id)
    module.__dict__["DFF"] = sdk.DFFApi(script_id)
    ctx = sdk.current()
    if ctx is not None:
        module.__dict__.update(context_globals(ctx))
    return module


class ScriptFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """``import demo__lib``: names shaped like a script id load published scripts."""

    def __init__(self, cache: ScriptCache) -> None:
        self.cache = cache

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if path is not None or not SCRIPT_NAME.match(fullname):
            return None
        return importlib.machinery.ModuleSpec(fullname, self, origin=script_filename(fullname))

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        try:
            return self.cache.module(spec.name)
        except ScriptNotFound as exc:
            raise ModuleNotFoundError(str(exc), name=spec.name) from None

    def exec_module(self, module: types.ModuleType) -> None:
        """Already executed by create_module (through the cache)."""


def tracking_import(cache: ScriptCache) -> Callable[..., types.ModuleType]:
    """A ``builtins.__import__`` that notes, for an ``import`` statement run by a script's
    code, which script it imports (an already built script is found in ``sys.modules``
    without asking the finder, so the statement itself is what must be seen)."""
    original = builtins.__import__

    def _import(name: str, globals: Mapping[str, object] | None = None,
                locals: Mapping[str, object] | None = None, fromlist: Sequence[str] = (),
                level: int = 0) -> types.ModuleType:
        module = original(name, globals, locals, fromlist, level)
        if level == 0 and globals is not None:
            importer = globals.get("__name__")
            if isinstance(importer, str) and SCRIPT_NAME.match(importer) and SCRIPT_NAME.match(name):
                cache.note_import(importer, name)
        return module

    return _import
