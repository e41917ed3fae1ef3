"""``influxdb`` connectors: DataFlux Func's InfluxDB helper over the InfluxDB 1.x HTTP API
(``/write`` with line protocol, ``/query``), with no client library (docs/connectors.md)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from fluxfunc_common.connectors.http import HttpEndpoint
from fluxfunc_common.connectors.types import ConnectorConfig
from fluxfunc_worker.dffconn import lineprotocol
from fluxfunc_worker.dffconn.pool import ConnectorPool

DEFAULT_PORT = 8086


class InfluxDBError(Exception):
    """InfluxDB answered a statement with an error."""


@dataclass
class InfluxClient:
    endpoint: HttpEndpoint
    auth: tuple[str, str] | None
    database: str | None

    @classmethod
    def of(cls, config: ConnectorConfig) -> InfluxClient:
        login = config.login()
        auth = (login, config.password or "") if login else None
        database = str(config.database) if config.database not in (None, "") else None
        return cls(HttpEndpoint.of(config, DEFAULT_PORT), auth, database)

    def write(self, points: list[lineprotocol.Point], database: str | None) -> bool:
        query = {"db": self._db(database), "precision": lineprotocol.PRECISION}
        self.endpoint.request("POST", "/write", query=query, body=lineprotocol.encode(points),
                              content_type="text/plain; charset=utf-8", auth=self.auth)
        return True

    def query(self, sql: str, params: dict[str, Any] | None, database: str | None) -> list[Any]:
        form = {"q": sql}
        db = database or self.database
        if db:
            form["db"] = db
        if params:
            form["params"] = json.dumps(params)
        body = "&".join(f"{k}={_quote(v)}" for k, v in form.items()).encode()
        answer = self.endpoint.request("POST", "/query", body=body, auth=self.auth,
                                       content_type="application/x-www-form-urlencoded").json()
        results = answer.get("results", []) if isinstance(answer, dict) else []
        for result in results:
            if isinstance(result, dict) and result.get("error"):
                raise InfluxDBError(str(result["error"]))
        if isinstance(answer, dict) and answer.get("error"):
            raise InfluxDBError(str(answer["error"]))
        return list(results)

    def _db(self, database: str | None) -> str:
        db = database or self.database
        if not db:
            raise ValueError("no database: set `database` in the connector or pass database=")
        return db


def _quote(value: str) -> str:
    from urllib.parse import quote_plus

    return quote_plus(value)


class InfluxDBFamily:
    def open(self, config: ConnectorConfig, connector_id: str) -> Any:
        """The client, after one ``SHOW DATABASES``: wrong credentials fail here, where the
        pool names the connector, rather than as a bare HTTP 401 of a later call."""
        client = InfluxClient.of(config)
        client.query("SHOW DATABASES", None, None)
        return client

    def close(self, client: Any) -> None:
        return None

    def is_broken(self, exc: BaseException) -> bool:
        return False  # every request is its own connection: nothing to reopen


def to_dicts(result: dict[str, Any]) -> dict[str, Any]:
    """DataFlux Func's ``dict_output``: each series as a list of row dicts (plus ``tags``)."""
    out: dict[str, Any] = {k: v for k, v in result.items() if k != "series"}
    out["series"] = series_rows(result.get("series") or [])
    return out


def series_rows(series: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Each series (``columns``, ``values``, ``tags``) as a list of row dicts, its tags under
    ``tags`` (``_tags``, ``__tags``, … when a column already has that name). InfluxDB's query
    answer and DataKit's DQL answer share this shape."""
    out = []
    for one in series:
        tags = one.get("tags") or {}
        rows = []
        for values in one.get("values") or []:
            row = dict(zip(one["columns"], values, strict=False))
            tags_field = "tags"
            while tags_field in row:
                tags_field = "_" + tags_field
            row[tags_field] = tags
            rows.append(row)
        out.append(rows)
    return out


def _literal(value: Any) -> str:
    if isinstance(value, str):
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    raise TypeError(f"a {type(value).__name__} cannot be a query parameter")


def format_query(sql: str, params: list[Any] | None) -> str:
    """``query2``'s ``?`` placeholders, each replaced by a quoted InfluxQL literal."""
    if not params:
        return sql
    parts = re.split(r"\?", sql)
    if len(parts) - 1 != len(params):
        raise ValueError(f"{len(parts) - 1} placeholders but {len(params)} parameters")
    out = parts[0]
    for value, rest in zip(params, parts[1:], strict=True):
        out += _literal(value) + rest
    return out


class InfluxDBHelper:
    """``DFF.CONN(id)`` of an influxdb connector (DataFlux Func's method names and shapes)."""

    def __init__(self, pool: ConnectorPool, connector_id: str, database: str | None = None) -> None:
        self._pool = pool
        self._id = connector_id
        self._database = database

    def check(self) -> None:
        self.query("SHOW DATABASES")

    def switch_database(self, database: str) -> None:
        self._database = database

    def write_point(self, measurement: str, fields: dict[str, Any],
                    tags: dict[str, Any] | None = None, timestamp: Any = None,
                    database: str | None = None) -> bool:
        point = lineprotocol.Point.of({"measurement": measurement, "fields": fields,
                                       "tags": tags, "timestamp": timestamp})
        return self.write_points([point], database=database)

    def write_points(self, points: Any, database: str | None = None) -> bool:
        items = points if isinstance(points, list | tuple) else [points]
        if not items:
            return True
        parsed = [lineprotocol.Point.of(p) for p in items]
        db = database or self._database
        return bool(self._pool.call(self._id, lambda c: c.write(parsed, db), retry=False))

    def query(self, sql: str, bind_params: dict[str, Any] | None = None,
              database: str | None = None, dict_output: bool = False) -> Any:
        db = database or self._database
        results = self._pool.call(self._id, lambda c: c.query(sql, bind_params, db))
        shaped = [to_dicts(r) if dict_output else r for r in results]
        return shaped[0] if len(shaped) == 1 else shaped

    def query2(self, sql: str, sql_params: list[Any] | None = None,
               database: str | None = None, dict_output: bool = False) -> Any:
        return self.query(format_query(sql, sql_params), database=database,
                          dict_output=dict_output)
