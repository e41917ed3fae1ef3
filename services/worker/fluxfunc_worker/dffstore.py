"""``DFF.STORE``, child side: persistent JSON values in the SQL store, with DataFlux Func's
method names, argument order and return shapes (its worker's ``FuncStoreHelper``).

Every key lives in a scope, the calling script's id unless ``scope=`` names another. A value
with ``expires`` (or DataFlux Func's other spelling ``expire``) seconds is hidden from reads
once expired and purged by the Beat janitor. Keys and scopes are at most
:data:`MAX_NAME` characters (DataFlux Func: 256; the store's index bounds it here).

Departures from DataFlux Func, where its code is plainly broken: ``keys`` lists the scope's
keys only (DataFlux Func lists every scope's), and patterns are globs matched exactly
(``*``, ``?``, ``[…]``), case-sensitive on every database.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Unpack

from fluxfunc_worker.dffparams import StoreArgs, StoreMethod, UserJSON
from fluxfunc_worker.messages import JSONObject

MAX_NAME = 191

Rpc = Callable[..., Any]  # sdk's call(method, **params): the parent's JSON answer
ScopeOf = Callable[[str | None], str]


class StoreNameTooLong(ValueError):
    """A key or scope longer than :data:`MAX_NAME`."""


def _name(value: Any, what: str) -> str:
    text = str(value)
    if len(text) > MAX_NAME:
        raise StoreNameTooLong(f"`{what}` is too long: at most {MAX_NAME} characters")
    return text


class StoreHelper:
    """``DFF.STORE``: see the module docstring; ``DFF.STORE(key)`` is ``get``."""

    def __init__(self, rpc: Rpc, scope_of: ScopeOf) -> None:
        self._rpc = rpc
        self._scope_of = scope_of

    def _scope(self, scope: str | None) -> str:
        return _name(self._scope_of(scope), "scope")

    def _call(self, method: StoreMethod, scope: str | None, **params: Unpack[StoreArgs]) -> Any:
        return self._rpc(method, scope=self._scope(scope), **params)

    def __call__(self, key: str, scope: str | None = None) -> UserJSON:
        return self.get(key, scope=scope)

    def set(self, key: str, value: UserJSON, scope: str | None = None, expires: float | None = None,
            not_exists: bool = False, expire: float | None = None) -> None:
        """Write a JSON value; with ``not_exists`` only when the key is missing (or expired)."""
        self._call("store.set", scope, key=_name(key, "key"), value=value,
                   expires=expires or expire, not_exists=bool(not_exists))

    def mset(self, key_values: Mapping[str, UserJSON], scope: str | None = None, expires: float | None = None,
             not_exists: bool = False, expire: float | None = None) -> None:
        values = {_name(k, "key"): v for k, v in key_values.items()}
        self._call("store.mset", scope, values=values, expires=expires or expire,
                   not_exists=bool(not_exists))

    def get(self, key: str, scope: str | None = None) -> UserJSON:
        """The value, or None when missing or expired."""
        return self._call("store.get", scope, key=_name(key, "key"))

    def mget(self, keys: str | list[str], scope: str | None = None) -> JSONObject:
        """``{key: value}`` for every key asked (None for a missing one); ``{}`` for no keys."""
        names = [keys] if isinstance(keys, str) else list(keys or [])
        if not names:
            return {}
        found: JSONObject = self._call("store.mget", scope, keys=[_name(k, "key") for k in names])
        return found

    def getall(self, scope: str | None = None) -> JSONObject:
        """Every live key of the scope with its value."""
        found: JSONObject = self._call("store.getall", scope, pattern="*")
        return found

    def get_pattern(self, pattern: str = "*", scope: str | None = None) -> JSONObject:
        """``{key: value}`` of the scope's live keys matching the glob ``pattern``."""
        found: JSONObject = self._call("store.getall", scope, pattern=str(pattern))
        return found

    def keys(self, pattern: str = "*", scope: str | None = None) -> list[str]:
        """The scope's live keys matching the glob ``pattern``."""
        found: list[str] = self._call("store.keys", scope, pattern=str(pattern))
        return found

    def delete(self, key: str, scope: str | None = None) -> None:
        self._call("store.delete", scope, key=_name(key, "key"))
