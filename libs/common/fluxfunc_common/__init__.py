"""fluxfunc_common: what Server, Worker and Beat share (settings, envelope, protocol, store)."""

__version__ = "0.1.0"
