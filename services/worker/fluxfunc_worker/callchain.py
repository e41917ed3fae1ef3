"""The ``DFF.FUNC`` call-chain limit, enforced by the worker parent.

A task started by ``DFF.FUNC`` carries the chain of funcs that led to it (``callChain``).
The child's SDK refuses a cycle or a chain at the limit before it asks, but the child runs
user code and is not trusted: the parent builds the chain of a ``DFF.FUNC`` call itself from
the task it is serving (:func:`child_chain`), and refuses to run a task whose chain is
already too long or circular (:func:`chain_error`).

Standard library only: the child's SDK may import it.
"""

from __future__ import annotations

from collections.abc import Sequence

MAX_CALL_CHAIN = 5  # funcs in a chain before the next call (a task runs after at most 4 callers)


class CallChainError(ValueError):
    """A ``DFF.FUNC`` call that would make a cycle or exceed :data:`MAX_CALL_CHAIN`."""


def chain_error(chain: Sequence[str], func_id: str) -> str | None:
    """Why ``func_id`` may not run after ``chain``, or None."""
    if func_id in chain:
        return f"circular call refused: {' -> '.join([*chain, func_id])}"
    if len(chain) >= MAX_CALL_CHAIN:
        return f"call chain too long (limit {MAX_CALL_CHAIN}): {' -> '.join([*chain, func_id])}"
    return None


def child_chain(caller_chain: Sequence[str] | None, caller_func: str | None, func_id: str) -> list[str]:
    """The ``callChain`` of a task that ``caller_func`` (run after ``caller_chain``) starts
    with ``DFF.FUNC``; :class:`CallChainError` when it would be circular or too long. No
    caller (a call outside a task) starts a new chain."""
    if caller_func is None:
        return []
    chain = [*(caller_chain or ()), caller_func]
    error = chain_error(chain, func_id)
    if error is not None:
        raise CallChainError(error)
    return chain
