"""Which fluxfunc instance a command talks to: one discovery rule for every subcommand.

``--config PATH``, else ``$FLUXFUNC_CONFIG``, else ``.fluxfunc/config.yaml`` (what
``fluxfunc up`` writes) in the working directory or the nearest folder above it, like git
finds ``.git/``. When none of them names a file the command stops with an error that says
how to point at an instance: it never falls back to a default database or Redis.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from fluxfunc_common.errors import ConfigError
from fluxfunc_common.settings import DEFAULT_FILE, Settings, load_settings

STATE_DIR = ".fluxfunc"  # ``fluxfunc up`` keeps its state here, in the working directory
CONFIG_FILE = "config.yaml"


@dataclass(frozen=True)
class Instance:
    """The config file a command uses and how it was found."""

    config: Path
    found_by: str  # "--config", "$FLUXFUNC_CONFIG" or ".fluxfunc/ above the working directory"

    @property
    def state_dir(self) -> Path | None:
        """The ``.fluxfunc/`` folder when the config is the one ``fluxfunc up`` wrote."""
        parent = self.config.parent
        return parent if parent.name == STATE_DIR else None


def find_state_dir(start: Path | None = None) -> Path | None:
    """The nearest ``.fluxfunc/`` holding a ``config.yaml``, from ``start`` upward."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / STATE_DIR / CONFIG_FILE).is_file():
            return folder / STATE_DIR
    return None


def guidance(cwd: Path | None = None) -> str:
    """The error text when no instance is found: every way to name one."""
    hint = ""
    if (Path(cwd or Path.cwd()) / DEFAULT_FILE).is_file():
        hint = f" (./{DEFAULT_FILE} is not read implicitly: pass --config {DEFAULT_FILE})"
    return ("no fluxfunc instance found: pass --config PATH, set FLUXFUNC_CONFIG, or run inside "
            f"a folder (or below one) where `fluxfunc up` keeps {STATE_DIR}/{CONFIG_FILE}{hint}")


def find_instance(explicit: str | None = None, environ: Mapping[str, str] | None = None,
                  cwd: Path | None = None) -> Instance:
    """Apply the discovery rule; ConfigError with :func:`guidance` when nothing is found."""
    env = os.environ if environ is None else environ
    if explicit:
        return Instance(Path(explicit), "--config")
    if env.get("FLUXFUNC_CONFIG"):
        return Instance(Path(env["FLUXFUNC_CONFIG"]), "$FLUXFUNC_CONFIG")
    state = find_state_dir(cwd)
    if state is None:
        raise ConfigError(guidance(cwd))
    return Instance(state / CONFIG_FILE, f"{STATE_DIR}/ found from the working directory")


def load_instance(explicit: str | None = None, environ: Mapping[str, str] | None = None,
                  cwd: Path | None = None) -> tuple[Settings, Instance]:
    """The settings of the instance the discovery rule finds, and where they came from."""
    instance = find_instance(explicit, environ, cwd)
    return load_settings(instance.config, environ), instance


def _where(url: str) -> str:
    """A URL without its password: ``redis://:pw@h:1/0`` → ``redis://h:1/0``."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        return url
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


def describe(settings: Settings, instance: Instance) -> str:
    """One line naming the instance: config file, Redis (namespace) and store."""
    redis = (f"sentinel {settings.redis.sentinel.service}" if settings.redis.sentinel
             else _where(settings.redis.url))
    return (f"instance: {instance.config.resolve()} ({instance.found_by}); redis {redis} "
            f"namespace {settings.redis.namespace}; store {_where(settings.store.url)}")


CONFIG_HELP = ("config file of the instance (default: $FLUXFUNC_CONFIG, else .fluxfunc/config.yaml "
               "in this folder or the nearest one above)")


def announce(settings: Settings, instance: Instance, *, machine_readable: bool = False) -> None:
    """Print :func:`describe` as the command's first line (to stderr when stdout is data)."""
    print(describe(settings, instance), file=sys.stderr if machine_readable else sys.stdout,
          flush=True)
