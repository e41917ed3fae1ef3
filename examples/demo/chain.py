"""Chain: one function calling another with DFF.FUNC

``DFF.FUNC(func_id, kwargs)`` enqueues a child task and returns its task id at once
(fire-and-forget, as in DataFlux Func). ``DFF.FUNC(func_id, kwargs, wait=N)`` also waits up
to N s and returns the child's result. Chains are limited to 5 levels; cycles are refused.
"""


@DFF.API("Start a child task")
def fire(x=1, y=2):
    task_id = DFF.FUNC("demo__basic.plus", {"x": x, "y": y})
    return {"child": task_id}  # GET /api/v1/tasks/{child} for its result


@DFF.API("Call and wait for the result", timeout=20)
def add_via_child(x=1, y=2):
    result = DFF.FUNC("demo__basic.plus", {"x": x, "y": y}, wait=10)
    return {"child said": result}


@DFF.API("Refused: calls itself")
def loop():
    return DFF.FUNC("demo__chain.loop", {}, wait=5)
