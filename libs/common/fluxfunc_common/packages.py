"""Extra Python packages: the requirement lines, the resolved set and each worker's state.

The deployment-wide list (``PUT /api/v1/python-packages``) is kept in the store's key-value
table (scope :data:`SCOPE`); each script set may add lines in its ``requirements`` field. The
resolved set is the union of both, sorted and de-duplicated; its :attr:`ResolvedSet.list_hash`
names it across the deployment, and each worker installs it into a local folder keyed by
:func:`folder_hash` (the lines plus the worker's Python version and platform). Changes are
announced by bumping ``keys.python_packages_version``; each worker publishes its state under
``keys.python_packages_status`` (see docs/packages.md).
"""

from __future__ import annotations

import hashlib
import importlib
import platform
import re
import sys
from collections.abc import Iterable, Sequence
from typing import Any, Literal, TypedDict

import redis.asyncio as aioredis
from pydantic import BaseModel, ConfigDict, Field

from fluxfunc_common.errors import BadRequest
from fluxfunc_common.heartbeat import list_services
from fluxfunc_common.keys import Keys
from fluxfunc_common.store import Entity, Store
from fluxfunc_common.store.kv import INTERNAL_SCOPE

SCOPE = INTERNAL_SCOPE  # store key-value scope of fluxfunc's own values
KEY = "python-packages"
MAX_LINES = 500
MAX_LINE = 1000
STATUS_TTL_SECONDS = 30  # a worker's status key outlives it by at most this long
ERROR_LINES = 20  # the last lines of a failed install that are reported


_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9._-]*[A-Za-z0-9])?"
_VERSION = r"(?:===|==|~=|!=|<=|>=|<|>)\s*[A-Za-z0-9.*+!_-]+"
# PEP 508 without packaging: name, extras, then versions or a URL, then a marker
STRICT = re.compile(rf"^(?P<name>{_NAME})\s*(?:\[\s*{_NAME}(?:\s*,\s*{_NAME})*\s*\])?\s*"
                    rf"(?:\(?\s*{_VERSION}(?:\s*,\s*{_VERSION})*\s*\)?|@\s*\S+)?\s*(?:;\s*\S.*)?$")


def _requirement_name(text: str) -> str:
    """The project name of a PEP 508 line, checked by ``packaging`` (or the copy pip vendors;
    the images have pip), else by :data:`STRICT`; ValueError when it is not one."""
    for module in ("packaging.requirements", "pip._vendor.packaging.requirements"):
        try:
            parser = importlib.import_module(module).Requirement
        except ImportError:
            continue
        try:
            return str(parser(text).name)
        except Exception as exc:  # packaging's InvalidRequirement
            raise ValueError(f"not a PEP 508 requirement: {exc}") from None
    found = STRICT.match(text)
    if found is None:
        raise ValueError("not a PEP 508 requirement")
    return found["name"]


def normalize_name(name: str) -> str:
    """PEP 503 normalised project name (``Foo_Bar`` → ``foo-bar``)."""
    out = "".join("-" if c in "._-" else c for c in name.lower())
    while "--" in out:
        out = out.replace("--", "-")
    return out


def check_line(line: str) -> str:
    """One requirement line, stripped; ValueError naming what is wrong with it."""
    text = line.strip()
    if not text:
        raise ValueError("empty line")
    if len(text) > MAX_LINE:
        raise ValueError(f"longer than {MAX_LINE} characters")
    if text.startswith("-"):
        raise ValueError("pip options are not accepted here (set packages.index_url or "
                         "packages.offline in the settings instead)")
    name = _requirement_name(text)
    if normalize_name(name).startswith("fluxfunc"):
        raise ValueError(f"{name} would replace fluxfunc itself")
    return text


def split_text(text: str | None) -> list[str]:
    """The lines of a requirements text, without blank lines and ``#`` comments."""
    out = []
    for raw in (text or "").splitlines():
        line = raw.split(" #", 1)[0].strip()
        if line and not line.startswith("#"):
            out.append(line)
    return out


def parse_lines(lines: Iterable[str], where: str = "packages") -> list[str]:
    """Checked, de-duplicated lines in their given order; BadRequest naming the first bad one."""
    out: list[str] = []
    for number, raw in enumerate(lines, 1):
        if not isinstance(raw, str):
            raise BadRequest(f"invalid {where}: line {number} is not a string")
        if not raw.strip() or raw.strip().startswith("#"):
            continue
        try:
            line = check_line(raw)
        except ValueError as exc:
            raise BadRequest(f"invalid {where}: line {number} ({raw.strip()[:80]!r}): {exc}",
                             {"line": number}) from None
        if line not in out:
            out.append(line)
    if len(out) > MAX_LINES:
        raise BadRequest(f"invalid {where}: more than {MAX_LINES} requirement lines")
    return out


def list_hash(lines: Sequence[str]) -> str:
    """The identity of a set of lines, the same on every machine (empty set → ``""``)."""
    if not lines:
        return ""
    return hashlib.sha256("\n".join(sorted(lines)).encode()).hexdigest()[:16]


def folder_hash(lines: Sequence[str]) -> str:
    """The name of this machine's folder for ``lines``: the lines, Python version, platform."""
    key = "\n".join([*sorted(lines), f"python={sys.version_info.major}.{sys.version_info.minor}",
                     f"platform={sys.platform}-{platform.machine()}"])
    return hashlib.sha256(key.encode()).hexdigest()[:32]


class Model(BaseModel):
    model_config = ConfigDict(frozen=True)


class ResolvedView(TypedDict):
    """The API's form of a :class:`ResolvedSet` (camelCase, with its hash)."""

    hash: str
    lines: list[str]
    deployment: list[str]
    scriptSets: dict[str, list[str]]
    ignored: list[str]


class ResolvedSet(Model):
    """The deployment list plus every script set's requirements."""

    lines: list[str] = Field(default_factory=list)
    deployment: list[str] = Field(default_factory=list)
    script_sets: dict[str, list[str]] = Field(default_factory=dict)
    ignored: list[str] = Field(default_factory=list, description=(
        "script-set lines left out because they are not valid requirements"))

    @property
    def hash(self) -> str:
        return list_hash(self.lines)

    def public(self) -> ResolvedView:
        """The API's form (camelCase)."""
        return {"hash": self.hash, "lines": self.lines, "deployment": self.deployment,
                "scriptSets": self.script_sets, "ignored": self.ignored}


def resolve(deployment: Sequence[str], script_sets: Iterable[tuple[str, str | None]]) -> ResolvedSet:
    """Union of the deployment list and the script sets' requirement texts; a bad script-set
    line (stored before it was checked) is left out and listed in ``ignored``."""
    lines = list(deployment)
    per_set: dict[str, list[str]] = {}
    ignored: list[str] = []
    for set_id, text in script_sets:
        for line in split_text(text):
            try:
                checked = check_line(line)
            except ValueError as exc:
                ignored.append(f"{set_id}: {line[:80]}: {exc}")
                continue
            per_set.setdefault(set_id, []).append(checked)
            if checked not in lines:
                lines.append(checked)
    return ResolvedSet(lines=sorted(lines), deployment=list(deployment), script_sets=per_set,
                       ignored=ignored)


async def load_deployment(store: Store) -> list[str]:
    value = await store.kv_get(SCOPE, KEY)
    if isinstance(value, list):
        return [str(v) for v in value]
    return []


async def save_deployment(store: Store, lines: Sequence[str]) -> None:
    await store.kv_set(SCOPE, KEY, list(lines))


async def load_resolved(store: Store) -> ResolvedSet:
    """The resolved set as the store holds it now."""
    deployment = await load_deployment(store)
    sets: list[tuple[str, str | None]] = []
    cursor: str | None = None
    while True:
        page = await store.list(Entity.SCRIPT_SET, limit=1000, cursor=cursor)
        for item in page.items:
            text = item.get("requirements")
            sets.append((str(item["id"]), text if isinstance(text, str) else None))
        cursor = page.next_cursor
        if not cursor:
            break
    return resolve(deployment, sets)


async def announce(redis: aioredis.Redis, keys: Keys) -> None:
    """Tell every worker the list may have changed (they poll this counter)."""
    await redis.incr(keys.python_packages_version())


State = Literal["installing", "ok", "failed"]


class WorkerPackages(Model):
    """One worker's package-set state, as it publishes it."""

    instance: str = ""
    host: str = ""
    state: State = "ok"
    hash: str = Field(default="", description="list hash of the set its new children use")
    wanted: str = Field(default="", description="list hash of the set it was asked to install")
    folder: str | None = None
    error: str | None = None
    lines: int = 0
    update_time: float = 0.0

    def public(self) -> dict[str, Any]:
        """The API's form (camelCase)."""
        data = self.model_dump()
        data["updateTime"] = data.pop("update_time")
        return data

    def summary(self) -> str:
        """One line for ``fluxfunc streams``."""
        text = f"{self.state} {self.hash or '(none)'}"
        if self.wanted != self.hash:
            text += f" (wanted {self.wanted or '(none)'})"
        if self.error:
            text += ": " + self.error.strip().splitlines()[-1][:200]
        return text


async def worker_states(redis: aioredis.Redis, keys: Keys,
                        instances: Sequence[str]) -> list[WorkerPackages]:
    """The published states of these (live) workers; a worker with none yet is ``installing``."""
    if not instances:
        return []
    raws = await redis.mget([keys.python_packages_status(i) for i in instances])
    out = []
    for instance, raw in zip(instances, raws, strict=True):
        try:
            out.append(WorkerPackages.model_validate_json(raw) if raw else
                       WorkerPackages(instance=instance, state="installing"))
        except ValueError:
            out.append(WorkerPackages(instance=instance, state="failed", error="unreadable status"))
    return out


async def live_worker_states(redis: aioredis.Redis, keys: Keys) -> list[WorkerPackages]:
    """The state of every live worker (a heartbeat says it is alive), host filled in."""
    live = [s for s in await list_services(redis, keys) if s.get("role") == "worker"]
    states = await worker_states(redis, keys, [str(s.get("instance")) for s in live])
    return [state if state.host else state.model_copy(update={"host": str(svc.get("host") or "")})
            for svc, state in zip(live, states, strict=True)]


def status_rows(states: Sequence[WorkerPackages]) -> list[list[str]]:
    """``fluxfunc streams``: one line per worker, its package set and state."""
    return [[f"{s.instance} ({s.host})" if s.host else s.instance, s.summary()] for s in states]


def shadowing(top_level: Iterable[str]) -> list[str]:
    """Top-level names that would shadow a standard-library module or fluxfunc's own."""
    return sorted(n for n in set(top_level)
                  if n in sys.stdlib_module_names or n.lower().startswith("fluxfunc"))
