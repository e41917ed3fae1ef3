"""The switch between the hot-path tricks and their plain variants.

Three places trade clarity for speed on the per-task path, each behind one small interface
with a plain implementation (docs/internals.md, "Fast paths and their plain variants"):

* the worker's Redis *lane* (``fluxfunc_common.lane``) vs. ordinary redis-py pipelines;
* the worker's *zygote* (``fluxfunc_worker.zygote``) vs. spawning fresh child interpreters;
* the hand-rolled JSON task line (``fluxfunc_common.logs``) vs. structlog's processor chain.

The setting ``worker.fast_paths`` (default true) selects the fast variants;
``FLUXFUNC_PLAIN_VARIANTS=1`` in the environment forces the plain ones everywhere, including in
parts built without settings (tests), so the whole suite can run once on the plain variants.
Each fast variant also falls back to its plain one by itself when its precondition fails.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

PLAIN_VARIANTS_ENV = "FLUXFUNC_PLAIN_VARIANTS"
_YES = frozenset({"1", "true", "yes", "on"})


def plain_forced(environ: Mapping[str, str] | None = None) -> bool:
    """True when ``FLUXFUNC_PLAIN_VARIANTS`` asks for the plain variants."""
    env = os.environ if environ is None else environ
    return env.get(PLAIN_VARIANTS_ENV, "").strip().lower() in _YES


def use_fast(setting: bool = True) -> bool:
    """Whether a fast path may be used: the setting allows it and the environment does not
    force the plain variants."""
    return setting and not plain_forced()
