"""Options: the other @DFF.API options

``queue`` (run on a named queue: start a worker with ``--queues slow``), ``retries`` (re-run
after an exception, with backoff), ``expires`` (drop a run that waited too long),
``cache_result`` (answer identical sync calls from a cache for N s), ``timeout`` (hard limit:
the child is killed), ``category`` and ``tags`` (catalogue only).
"""

import random
import time


@DFF.API("Cached for 60 s", cache_result=60, category="demo", tags=["cache"])
def cached_time(label="now"):
    """The same kwargs within 60 s get the same answer without running again."""
    return {"label": label, "computedAt": time.time()}


@DFF.API("Flaky, retried", retries=3, timeout=5)
def flaky(chance=0.5):
    """Fails at random; the worker retries it up to 3 times before giving up."""
    if random.random() < float(chance):
        raise RuntimeError("unlucky this time")
    return {"ok": True}


@DFF.API("On its own queue", queue="slow", timeout=120, expires=600)
def on_slow_queue(seconds=1):
    """Needs a worker consuming ``slow``: fluxfunc-worker --queues slow."""
    time.sleep(float(seconds))
    return {"slept": float(seconds)}


@DFF.API("Times out", timeout=1)
def too_slow():
    """Over its 1 s timeout the child process is killed: 599 EFuncTimeout."""
    time.sleep(30)
