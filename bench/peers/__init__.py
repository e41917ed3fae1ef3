"""Helpers of ``bench/compare.py``: one adapter module per system, the peer HTTP front, the
throughput driver and the fallback load generator. Each module runs as a script in a
subprocess (peers in ``bench/.venv-peers``, fluxfunc in the project's venv)."""
