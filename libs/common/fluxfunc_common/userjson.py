"""The type of JSON objects whose content is the user's, not ours: call kwargs, the request a
function sees (``_DFF_HTTP_REQUEST``), the ``apiAuth``/``throttling`` objects of an entry point
(docs/http-api.md). Code passes them on, or reads them defensively (``isinstance``)."""

JSONObject = dict[str, object]
