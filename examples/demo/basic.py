"""Basic: exported functions, sync and async, print capture, task context

Only functions decorated with ``@DFF.API`` can be called; everything else in the module is
private. ``def`` and ``async def`` both work. ``print`` output is captured per task and kept
in the task record (``GET /api/v1/tasks/{id}`` → ``printLogs``).
"""

import asyncio

import demo__lib  # another published script of this set (examples/demo/lib.py)


@DFF.API("Plus", category="math", tags=["example"])
def plus(x, y=1):
    """Add two numbers: POST /api/v1/func/demo__basic.plus {"kwargs": {"x": 1, "y": 2}}"""
    x, y = demo__lib.number(x), demo__lib.number(y)
    print(f"adding {x} and {y}")
    return {"sum": x + y}


@DFF.API("Wait a little, asynchronously", timeout=10)
async def slow_echo(text="hi", seconds=0.2):
    """An ``async def`` function: runs on the child's own event loop."""
    await asyncio.sleep(float(seconds))
    return {"echo": text, "slept": float(seconds)}


@DFF.API("Who am I")
def whoami(**kwargs):
    """The task context globals injected into every run (and any kwargs: ``**kwargs``)."""
    request = _DFF_HTTP_REQUEST or {}
    return {
        "taskId": _DFF_TASK_ID,
        "funcId": _DFF_FUNC_ID,
        "origin": _DFF_ORIGIN,            # syncAPI | asyncAPI | direct | cronJob | child
        "originId": _DFF_ORIGIN_ID,
        "triggerTime": _DFF_TRIGGER_TIME,
        "cronExpr": _DFF_CRON_EXPR,       # set for cron runs
        "method": request.get("method"),  # set for calls through a sync/async API
        "kwargs": kwargs,
    }


@DFF.API("Fail on purpose")
def fail(message="boom"):
    """Raises: a sync caller gets 599 EFuncFailed with this traceback in ``detail``."""
    raise ValueError(message)


def helper_not_exported():
    """Not decorated, so not callable over HTTP (404)."""
    return "private"
