"""State: DFF.ENV, DFF.CACHE (Redis) and DFF.STORE (SQL)

- ``DFF.ENV(name)``: an env variable managed through ``/api/v1/env-variables``; its
  ``valueType`` converts it (``integer``, ``json``…). Password values are masked in print logs.
- ``DFF.CACHE``: Redis-backed ``get/set(key, value, expires=)/delete/incr``, scoped to this
  script unless ``scope=`` is given; values come back as text, as in DataFlux Func.
- ``DFF.STORE``: SQL-backed persistent key/value (any JSON value), same scoping.
"""


@DFF.API("Count visits")
def visit(page="home"):
    """DFF.CACHE.incr: a counter shared by every worker (expires after an hour)."""
    count = DFF.CACHE.incr(f"visits:{page}")
    if count == 1:
        DFF.CACHE.set(f"first:{page}", "yes", expires=3600)
    return {"page": page, "visits": count, "first": DFF.CACHE.get(f"first:{page}")}


@DFF.API("Remember a value")
def remember(key="colour", value="blue"):
    """DFF.STORE.set / get: survives restarts (it lives in the database)."""
    DFF.STORE.set(key, {"value": value})
    return DFF.STORE.get(key)


@DFF.API("Forget a value")
def forget(key="colour"):
    DFF.STORE.delete(key)
    DFF.CACHE.delete(f"visits:{key}")
    return {"forgotten": key, "now": DFF.STORE.get(key)}


@DFF.API("Read an env variable")
def setting(name="GREETING", default="Hello"):
    """Create it first: POST /api/v1/env-variables {"id": "GREETING", "valueType": "string",
    "value": "Bonjour"}"""
    value = DFF.ENV(name)
    print("the value of", name, "is", value)  # a password value shows as *****
    return {"name": name, "value": default if value is None else value}
