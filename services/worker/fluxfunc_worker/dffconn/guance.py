"""``datakit`` and ``dataway`` connectors (Guance Cloud): DataFlux Func's DataKit / DataWay
helpers over the documented HTTP API — ``POST /v1/write/<category>`` with line protocol
(``precision=n``), ``POST /v1/query/raw`` for DQL. DataKit writes name their ``input``
(``source``); DataWay authenticates every request with ``?token=`` (docs/connectors.md)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fluxfunc_common.connectors.http import HttpEndpoint, Response
from fluxfunc_common.connectors.types import ConnectorConfig, ConnectorType
from fluxfunc_worker.dffconn import lineprotocol
from fluxfunc_worker.dffconn.influxdb import series_rows
from fluxfunc_worker.dffconn.pool import ConnectorPool

DEFAULT_PORTS = {ConnectorType.DATAKIT: 9529, ConnectorType.DATAWAY: 9528}
DEFAULT_SOURCE = "fluxfunc"
Answer = tuple[int, Any]  # DataFlux Func's (status code, parsed body)


def _parsed(resp: Response) -> Answer:
    try:
        return resp.status, resp.json()
    except ValueError:
        return resp.status, resp.text


def url_token(config: ConnectorConfig) -> str | None:
    """A ``?token=`` in ``url`` (DataFlux Func accepts one there)."""
    if not config.url:
        return None
    found = parse_qs(urlsplit(config.url).query).get("token")
    return found[0] if found else None


@dataclass
class GuanceClient:
    """``token`` set: DataWay (token on every request); unset: DataKit (``input=source``)."""

    endpoint: HttpEndpoint
    token: str | None
    source: str

    @classmethod
    def of(cls, config: ConnectorConfig, kind: ConnectorType) -> GuanceClient:
        if kind is ConnectorType.DATAWAY:
            token = config.token or url_token(config)
            if not token:
                raise ValueError("a dataway connector needs a `token`")
            return cls(HttpEndpoint.of(config, DEFAULT_PORTS[kind]), token, "")
        return cls(HttpEndpoint.of(config, DEFAULT_PORTS[kind]), None,
                   config.source or DEFAULT_SOURCE)

    def _query(self) -> dict[str, str]:
        return {"token": self.token} if self.token else {}

    def write(self, category: str, points: list[lineprotocol.Point]) -> Answer:
        query = self._query() or {"input": self.source}
        query["precision"] = lineprotocol.PRECISION
        return _parsed(self.endpoint.request(
            "POST", f"/v1/write/{category}", query=query, body=lineprotocol.encode(points),
            content_type="text/plain; charset=utf-8"))

    def dql(self, queries: list[dict[str, Any]]) -> Answer:
        body: dict[str, Any] = {"queries": queries, "mask_visible": True}
        if self.token:
            body["token"] = self.token
        return _parsed(self.endpoint.request(
            "POST", "/v1/query/raw", query=self._query(),
            body=json.dumps(body, ensure_ascii=False).encode(), content_type="application/json"))

    def ping(self) -> Answer:
        return _parsed(self.endpoint.request("GET", "/v1/ping", query=self._query()))


class GuanceFamily:
    def __init__(self, kind: ConnectorType) -> None:
        self.kind = kind

    def open(self, config: ConnectorConfig, connector_id: str) -> Any:
        """The client, after one ``GET /v1/ping`` (with the DataWay token): a wrong token or
        an unreachable host fails here, where the pool names the connector."""
        client = GuanceClient.of(config, self.kind)
        client.ping()
        return client

    def close(self, client: Any) -> None:
        return None

    def is_broken(self, exc: BaseException) -> bool:
        return False  # every request is its own connection: nothing to reopen




class GuanceHelper:
    """``DFF.CONN(id)`` of a datakit or dataway connector: writes return DataFlux Func's
    ``(status_code, body)``; ``query`` returns ``(status_code, {"series": [...]})``."""

    def __init__(self, pool: ConnectorPool, connector_id: str) -> None:
        self._pool = pool
        self._id = connector_id

    def check(self) -> None:
        self._pool.call(self._id, lambda c: c.ping())

    def write_by_category(self, category: str, measurement: str,
                          tags: dict[str, Any] | None = None,
                          fields: dict[str, Any] | None = None, timestamp: Any = None,
                          headers: Any = None) -> Answer:
        point = {"measurement": measurement, "tags": tags, "fields": fields or {},
                 "timestamp": timestamp}
        return self.write_by_category_many(category, [point])

    def write_by_category_many(self, category: str, data: Any, headers: Any = None) -> Answer:
        items = data if isinstance(data, list | tuple) else [data]
        points = [lineprotocol.Point.of(p) for p in items]
        answer: Answer = self._pool.call(self._id, lambda c: c.write(category, points),
                                         retry=False)
        return answer

    def write_metric(self, measurement: str, tags: dict[str, Any] | None = None,
                     fields: dict[str, Any] | None = None, timestamp: Any = None,
                     headers: Any = None) -> Answer:
        return self.write_by_category("metric", measurement, tags, fields, timestamp)

    def write_metric_many(self, data: Any, headers: Any = None) -> Answer:
        return self.write_by_category_many("metric", data)

    def write_logging(self, measurement: str, tags: dict[str, Any] | None = None,
                      fields: dict[str, Any] | None = None, timestamp: Any = None,
                      headers: Any = None) -> Answer:
        return self.write_by_category("logging", measurement, tags, fields, timestamp)

    def write_logging_many(self, data: Any, headers: Any = None) -> Answer:
        return self.write_by_category_many("logging", data)

    write_point = write_metric
    write_points = write_metric_many
    write_metrics = write_metric_many
    write_loggings = write_logging_many

    def query(self, dql: str, all_series: bool = False, dict_output: bool = False,
              raw: bool = False, **kwargs: Any) -> Answer:
        """One DQL query (``all_series``: page with ``slimit``/``soffset``, as DataFlux Func)."""
        q: dict[str, Any] = {"query": dql, **{k: v for k, v in kwargs.items() if v is not None}}
        pages = (20 if dql.strip().startswith("M::") else 5) if all_series else 1
        status, merged, series = 0, None, list[dict[str, Any]]()
        for page in range(pages):
            if all_series:
                q.update(slimit=500, soffset=500 * page)
            request = [dict(q)]
            status, body = self._pool.call(self._id, lambda c: c.dql(request))  # noqa: B023
            if not isinstance(body, dict):
                return status, body
            found = (body.get("content") or [{}])[0].get("series") or []
            merged = merged or body
            series.extend(found)
            if not all_series or len(found) < 500:
                break
        if raw:
            return status, merged
        return status, {"series": series_rows(series) if dict_output else series}
