"""fluxfunc server."""
