"""fluxfunc worker."""
