"""Subcommands of the umbrella ``fluxfunc`` CLI, one module each."""
