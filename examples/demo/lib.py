"""Lib: a helper script other scripts import with ``import demo__lib``

A script with no ``@DFF.API`` function is a plain library. Importing it gives the published
version; publishing a new version reaches every worker within 2 s.
"""


def number(value):
    """``"2"`` → 2, ``"2.5"`` → 2.5, numbers unchanged (sync API query strings are text)."""
    if isinstance(value, int | float):
        return value
    text = str(value)
    return float(text) if "." in text else int(text)


GREETING = "Hello"
