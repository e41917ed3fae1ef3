"""Legacy: DataFlux Func scripts run unchanged

The old spellings are accepted as they are: ``api_timeout``, ``fixed_crontab`` and
``delayed_crontab`` on the decorator, ``DFF.SRC`` next to ``DFF.CONN``, short content types in
``DFF.RESP``, and a non-JSON text body arriving as ``kwargs = {"text": ...}``.
"""


@DFF.API("Old-style timeout", api_timeout=20)
def old_timeout(x=1):
    return {"x": x}


@DFF.API("Old-style fixed crontab", fixed_crontab="0 3 * * *")
def nightly():
    return {"ran": _DFF_ORIGIN}


@DFF.API("Takes a plain text body")
def shout(text=""):
    """POST text/plain to /api/v1/sync/<id>/simplified → kwargs {"text": <body>}."""
    return DFF.RESP(text.upper(), content_type="text")
