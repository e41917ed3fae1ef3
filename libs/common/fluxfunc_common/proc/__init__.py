"""Process tooling: a private Redis server and child-process supervision (``fluxfunc up``, tests, benches)."""
