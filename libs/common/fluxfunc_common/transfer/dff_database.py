"""Reading a DataFlux Func database (MySQL) for ``fluxfunc migrate-from-dff``.

Tables read: ``biz_main_script_set``, ``biz_main_script``, ``biz_main_env_variable``,
``biz_main_connector``, ``biz_main_api_auth``, ``biz_main_sync_api``
(older: ``biz_main_auth_link``), ``biz_main_async_api`` (older: ``biz_main_batch``) and
``biz_main_cron_job`` (older: ``biz_main_crontab_config``). Funcs are not read: they are
derived again from each script's published code. Password env variables, the passwords of
API auths and the secrets of connectors are decrypted with DataFlux Func's ``SECRET``
(:mod:`.dff_cipher`); an API whose API auth moved keeps it (``apiAuthId``,
:mod:`.dff_api_auth`); connectors of the types fluxfunc has move with their subscriptions
disabled (:mod:`.dff_connectors`). Nothing is written to that database.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pymysql
import pymysql.cursors

from fluxfunc_common.errors import BadRequest, ConfigError, Unavailable
from fluxfunc_common.store import Entity
from fluxfunc_common.store.mysql import MysqlTarget
from fluxfunc_common.transfer import dff_api_auth, dff_cipher, dff_connectors
from fluxfunc_common.transfer import dff_convert as conv
from fluxfunc_common.transfer.bundle import Bundle

# each kind's table, newest name first
TABLES: dict[str, tuple[str, ...]] = {
    "scriptSets": ("biz_main_script_set",),
    "scripts": ("biz_main_script",),
    "envVariables": ("biz_main_env_variable",),
    "connectors": ("biz_main_connector",),
    "apiAuths": ("biz_main_api_auth",),
    "syncAPIs": ("biz_main_sync_api", "biz_main_auth_link"),
    "asyncAPIs": ("biz_main_async_api", "biz_main_batch"),
    "cronJobs": ("biz_main_cron_job", "biz_main_crontab_config"),
}


def _target(url: str) -> MysqlTarget:
    try:
        return MysqlTarget.parse(url, what="--mysql")
    except ConfigError as exc:
        raise BadRequest(exc.message) from None


@contextmanager
def _connect(url: MysqlTarget) -> Iterator[Any]:
    try:
        conn = pymysql.connect(host=url.host, port=url.port, user=url.user, password=url.password,
                               database=url.database, charset="utf8mb4", connect_timeout=10,
                               cursorclass=pymysql.cursors.DictCursor)
    except pymysql.MySQLError as exc:
        raise Unavailable(f"cannot open the DataFlux Func database {url.safe_url}: {exc}") from None
    try:
        yield conn
    finally:
        conn.close()


def _rows(conn: Any, tables: set[str], kind: str) -> list[dict[str, object]]:
    """The rows of the first table of ``kind`` that exists, ordered by id (none: [])."""
    for table in TABLES[kind]:
        if table in tables:
            with conn.cursor() as cur:
                cur.execute(f"SELECT * FROM `{table}` ORDER BY id")
                return list(cur.fetchall())
    return []


def read(url: str, *, dff_secret: str | None, default_timezone: str) -> Bundle:
    """The bundle of everything movable in a DataFlux Func database."""
    where = _target(url)
    with _connect(where) as conn:
        with conn.cursor() as cur:
            cur.execute("SHOW TABLES")
            tables = {str(next(iter(r.values()))) for r in cur.fetchall()}
        if "biz_main_script_set" not in tables:
            raise BadRequest(f"{where.safe_url} is not a DataFlux Func database "
                             "(no biz_main_script_set table)")
        data = {kind: _rows(conn, tables, kind) for kind in TABLES}
    return convert(data, dff_secret=dff_secret, default_timezone=default_timezone)


def _password(row: dict[str, object], dff_secret: str | None) -> str | None:
    if row.get("autoTypeCasting") != "password" or dff_secret is None:
        return None
    return dff_cipher.decrypt(str(row.get("valueTEXT") or ""), dff_secret, str(row["id"]))


def convert(data: dict[str, list[dict[str, object]]], *, dff_secret: str | None,
            default_timezone: str) -> Bundle:
    """DataFlux Func table rows by kind → a bundle."""
    bundle = Bundle()
    for row in data["scriptSets"]:
        bundle.add(Entity.SCRIPT_SET, conv.script_set_row(row))
    for row in data["scripts"]:
        script = conv.script_row(row, bundle)
        if script is not None:
            bundle.add(Entity.SCRIPT, script)
    for row in data["envVariables"]:
        bundle.add(Entity.ENV_VARIABLE, conv.env_variable_row(row, bundle, _password(row, dff_secret)))
    auths: set[str] = set()
    for row in data["apiAuths"]:
        auth = dff_api_auth.api_auth_row(row, bundle, dff_secret)
        if auth is not None:
            bundle.add(Entity.API_AUTH, auth)
            auths.add(str(auth["id"]))
    for kind, key in ((Entity.SYNC_API, "syncAPIs"), (Entity.ASYNC_API, "asyncAPIs")):
        for row in data[key]:
            bundle.add(kind, conv.api_row(row, kind, bundle, frozenset(auths)))
    for row in data["cronJobs"]:
        cron = conv.cron_job_row(row, bundle, default_timezone)
        if cron is not None:
            bundle.add(Entity.CRON_JOB, cron)
    for row in data["connectors"]:
        dff_connectors.add_from_database(row, bundle, dff_secret)
    return bundle
