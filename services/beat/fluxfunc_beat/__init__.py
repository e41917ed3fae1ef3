"""fluxfunc beat."""
