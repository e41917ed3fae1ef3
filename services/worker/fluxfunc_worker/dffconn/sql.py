"""``mysql`` and ``postgresql`` connectors: DataFlux Func's SQL helper methods.

``query(sql, sql_params=None)`` answers a list of dicts, ``non_query`` the affected row count;
``start_trans()`` opens a transaction on a connection of its own, which ``trans_query`` /
``trans_non_query`` use and ``commit`` / ``rollback`` end (and close). Parameters are
DataFlux Func's ``?`` placeholders, bound by the driver (:mod:`.sqlparams`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fluxfunc_common.connectors import clients
from fluxfunc_common.connectors.types import ConnectorConfig
from fluxfunc_worker.dffconn.pool import ConnectorError, ConnectorPool
from fluxfunc_worker.dffconn.sqlparams import QuoteIdent, bind, mysql_ident, postgresql_ident

Rows = list[dict[str, Any]]


class MysqlFamily:
    ident: QuoteIdent = staticmethod(mysql_ident)

    def open(self, config: ConnectorConfig, connector_id: str) -> Any:
        return clients.open_mysql(config)

    def close(self, client: Any) -> None:
        client.close()

    def is_broken(self, exc: BaseException) -> bool:
        import pymysql

        if isinstance(exc, pymysql.err.InterfaceError):
            return True
        # 2006 server has gone away, 2013 lost connection, 2055 lost connection (SSL)
        return isinstance(exc, pymysql.err.OperationalError) and bool(exc.args) \
            and exc.args[0] in (2006, 2013, 2055)


class PostgresqlFamily:
    ident: QuoteIdent = staticmethod(postgresql_ident)

    def open(self, config: ConnectorConfig, connector_id: str) -> Any:
        return clients.open_postgresql(config)

    def close(self, client: Any) -> None:
        client.close()

    def is_broken(self, exc: BaseException) -> bool:
        import psycopg

        return isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError))


@dataclass
class Transaction:
    """What ``start_trans()`` returns: pass it back to ``trans_*``, ``commit``, ``rollback``."""

    conn: Any
    open: bool = True


def _execute(conn: Any, sql: str, sql_params: object, ident: QuoteIdent) -> tuple[Rows, int]:
    bound, values = bind(sql, sql_params, ident)
    with conn.cursor() as cur:
        cur.execute(bound, values)
        rows = [dict(row) for row in cur.fetchall()] if cur.description else []
        return rows, int(cur.rowcount)


class SqlHelper:
    """``DFF.CONN(id)`` of a SQL connector."""

    def __init__(self, pool: ConnectorPool, connector_id: str,
                 family: MysqlFamily | PostgresqlFamily) -> None:
        self._pool = pool
        self._id = connector_id
        self._family = family

    def _run(self, sql: str, sql_params: object, *, retry: bool) -> tuple[Rows, int]:
        def action(conn: Any) -> tuple[Rows, int]:
            try:
                result = _execute(conn, sql, sql_params, self._family.ident)
                conn.commit()
                return result
            except Exception:
                conn.rollback()
                raise

        return self._pool.call(self._id, action, retry=retry)

    def check(self) -> None:
        self.query("SELECT 1")

    def query(self, sql: str, sql_params: object = None) -> Rows:
        return self._run(sql, sql_params, retry=True)[0]

    def non_query(self, sql: str, sql_params: object = None) -> int:
        return self._run(sql, sql_params, retry=False)[1]

    def start_trans(self) -> Transaction:
        entry = self._pool.entry(self._id)
        try:
            return Transaction(self._family.open(entry.config, self._id))
        except Exception as exc:
            from fluxfunc_common.connectors.testing import explain

            raise ConnectorError(f"connector {self._id!r}: {explain(exc)}") from None

    def _trans(self, trans_conn: Transaction, sql: str, sql_params: object) -> tuple[Rows, int]:
        if not isinstance(trans_conn, Transaction) or not trans_conn.open:
            raise ConnectorError("transaction not started (or already ended): call start_trans()")
        return _execute(trans_conn.conn, sql, sql_params, self._family.ident)

    def trans_query(self, trans_conn: Transaction, sql: str, sql_params: object = None) -> Rows:
        return self._trans(trans_conn, sql, sql_params)[0]

    def trans_non_query(self, trans_conn: Transaction, sql: str, sql_params: object = None) -> int:
        return self._trans(trans_conn, sql, sql_params)[1]

    def _end(self, trans_conn: Transaction | None, commit: bool) -> None:
        if not trans_conn or not trans_conn.open:
            return
        trans_conn.open = False
        try:
            if commit:
                trans_conn.conn.commit()
            else:
                trans_conn.conn.rollback()
        finally:
            trans_conn.conn.close()

    def commit(self, trans_conn: Transaction | None) -> None:
        self._end(trans_conn, True)

    def rollback(self, trans_conn: Transaction | None) -> None:
        self._end(trans_conn, False)
