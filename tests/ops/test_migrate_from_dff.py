"""``fluxfunc migrate-from-dff`` against a real DataFlux Func database: a MariaDB database with
DataFlux Func's table layout (tests/fixtures/dff), migrated into a fresh deployment that a
real Server + Worker then serve — the migrated sync API answers at its old URLs with the same
result, the password env variable decrypted, the APIs with an API auth ask the same
credentials of their callers, the migrated MySQL connector (its password decrypted, stored
sealed) answers a published script's ``DFF.CONN`` and the subscriptions wait disabled — and a
second run changes nothing."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pymysql
import pytest
import requests
from tests.conftest import RedisServer
from tests.server.processes import Service, create_token, running, server, worker, write_config

from fluxfunc_common.proc.localredis import free_port
from fluxfunc_common.transfer.bundle import CONNECTOR

pytestmark = [pytest.mark.slow, pytest.mark.mysql]

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "dff"
DFF_SECRET = "dff-secret-abc"
CONN_PASSWORD = "conn-pa55"  # mysql_main's password, encrypted in data.sql


def _admin(url: str, database: str | None = None) -> pymysql.connections.Connection:
    parts = urlsplit(url)
    return pymysql.connect(host=parts.hostname, port=parts.port or 3306, user=parts.username,
                           password=parts.password or "", database=database, autocommit=True,
                           charset="utf8mb4")


@contextlib.contextmanager
def connector_user(url: str) -> Iterator[str]:
    """A MariaDB user of this test with mysql_main's password, allowed to read the DataFlux
    Func database; mysql_main pointed at it (as DataFlux Func's connector would be)."""
    parts = urlsplit(url)
    user, database = "dffc_" + secrets.token_hex(4), parts.path.strip("/")
    conn = _admin(url, database)
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE USER '{user}'@'%' IDENTIFIED BY '{CONN_PASSWORD}'")
            cur.execute(f"GRANT SELECT ON `{database}`.* TO '{user}'@'%'")
            cur.execute("UPDATE biz_main_connector SET configJSON = JSON_SET(configJSON, "
                        "'$.host', %s, '$.port', %s, '$.user', %s, '$.database', %s) "
                        "WHERE id = 'mysql_main'",
                        (parts.hostname, parts.port or 3306, user, database))
        yield user
    finally:
        with conn.cursor() as cur:
            cur.execute(f"DROP USER IF EXISTS '{user}'@'%'")
        conn.close()


def load_dff_database(url: str) -> None:
    """DataFlux Func's tables and a handful of rows (tests/fixtures/dff/*.sql)."""
    parts = urlsplit(url)
    conn = pymysql.connect(host=parts.hostname, port=parts.port or 3306, user=parts.username,
                           password=parts.password or "", database=parts.path.strip("/"),
                           autocommit=True, charset="utf8mb4")
    try:
        with conn.cursor() as cur:
            for name in ("schema.sql", "data.sql"):
                text = "\n".join(line for line in (FIXTURES / name).read_text().splitlines()
                                 if not line.startswith("--"))
                for statement in filter(str.strip, text.split(";\n")):
                    cur.execute(statement)
    finally:
        conn.close()


def migrate(config: Path, mysql_url: str, *extra: str,
            dff_secret: str | None = DFF_SECRET) -> subprocess.CompletedProcess[str]:
    secret = ["--dff-secret", dff_secret] if dff_secret else []
    env = {k: v for k, v in os.environ.items() if k != "DFF_SECRET"}
    return subprocess.run([sys.executable, "-m", "fluxfunc_common.cli", "migrate-from-dff",
                           "--mysql", mysql_url, *secret, "--config", str(config), *extra],
                          capture_output=True, text=True, timeout=120, env=env)


EXPECTED = {"sum": 5, "region": "cn-hangzhou", "retries": 3, "passwordOk": True}


def check_first_run(out: str) -> None:
    """Every object moved, changed (and why) or skipped is listed; the cron reminder ends it."""
    for line in ("create    script set demo", "create    script demo__calc",
                 "create    env variable db_password", "create    sync api auln-plus",
                 "create    async api bat-plus", "create    cron job cron-hourly",
                 "create    api auth apia-basic", "create    api auth apia-digest",
                 "create    api auth apia-token", "create    sync api auln-basic",
                 "create    sync api auln-token",
                 "skipped script demo__readme",
                 "create    connector mysql_main", "create    connector mqtt_bus",
                 "create    sync api auln-conn",
                 "skipped connector kafka_logs: type 'kafka' is not one fluxfunc has",
                 "changed connector mqtt_bus: its 2 subscription(s) created DISABLED",
                 "the subscriptions of 1 connector(s) were created DISABLED",
                 "changed sync api auln-limited: created DISABLED, its API auth 'apia-1'",
                 "1 cron job(s) were created DISABLED",
                 # an entry point whose func is gone is skipped, not a reason to stop
                 "skip      sync api auln-dangling: func demo__calc.gone is not in the imported code"):
        assert line in out, out


def first_answer(base: str, worker_proc: Service) -> requests.Response:
    """The old Auth Link URL, polled until the worker has started and answers (deadline)."""
    deadline = time.monotonic() + 60
    while True:
        resp = requests.post(f"{base}/api/v1/al/auln-plus", json={"kwargs": {"x": 2, "y": 3}},
                             timeout=60)
        if resp.status_code == 200 or time.monotonic() > deadline:
            return resp
        assert worker_proc.proc is not None and worker_proc.proc.poll() is None
        time.sleep(0.2)


def check_serving(base: str, config: Path, worker_proc: Service) -> None:
    """The migrated sync API answers at its old URLs as it did in DataFlux Func."""
    admin = {"Authorization": f"Bearer {create_token(config)}"}
    cron = requests.get(f"{base}/api/v1/cron-jobs/cron-hourly", headers=admin, timeout=30)
    assert cron.json()["data"]["isDisabled"] is True
    resp = first_answer(base, worker_proc)
    assert resp.status_code == 200, resp.text
    assert resp.json() == EXPECTED
    resp = requests.post(f"{base}/api/v1/sync/auln-plus", json={"kwargs": {"x": 2, "y": 3}},
                         timeout=60)
    assert resp.status_code == 200 and resp.json() == EXPECTED
    resp = requests.get(f"{base}/api/v1/sync/auln-plus/simplified?x=2&y=3", timeout=60)
    assert resp.status_code == 200 and resp.json()["sum"] == "23"  # query values are text
    # its API auth did not move: disabled rather than open to anyone
    assert requests.post(f"{base}/api/v1/sync/auln-limited", json={}, timeout=60).status_code != 200
    check_api_auths(base, admin)
    check_connectors(base, admin)


def check_connectors(base: str, admin: dict[str, str]) -> None:
    """mysql_main serves a published script's DFF.CONN with its decrypted password (never
    shown); mqtt_bus's subscriptions wait disabled; kafka_logs did not move."""
    resp = requests.post(f"{base}/api/v1/sync/auln-conn", json={}, timeout=60)
    assert resp.status_code == 200, resp.text
    assert resp.json() == {"rows": [{"id": "demo", "title": "Demo"}]}
    shown = requests.get(f"{base}/api/v1/connectors/mysql_main", headers=admin, timeout=30).json()
    assert shown["data"]["config"]["password"] == "******" and CONN_PASSWORD not in json.dumps(shown)
    bus = requests.get(f"{base}/api/v1/connectors/mqtt_bus", headers=admin, timeout=30).json()["data"]
    assert bus["type"] == "mqtt" and bus["config"]["clientId"] == "dff-plant"
    assert [(h["topic"], h["isDisabled"]) for h in bus["config"]["topicHandlers"]] == [
        ("plant/+/reading", True), ("plant/debug", True)]
    assert requests.get(f"{base}/api/v1/connectors/kafka_logs", headers=admin,
                        timeout=30).status_code == 404


def check_sealed(store_db: Path) -> None:
    """The raw stored row of mysql_main holds the password only sealed."""
    with contextlib.closing(sqlite3.connect(store_db)) as db:
        (data,) = db.execute("SELECT data FROM connectors WHERE id = 'mysql_main'").fetchone()
    assert CONN_PASSWORD not in data and "passwordCipher" in data, data


def check_api_auths(base: str, admin: dict[str, str]) -> None:
    """The API auths moved with their ids and credentials (passwords never shown)."""
    shown = requests.get(f"{base}/api/v1/api-auths/apia-basic", headers=admin, timeout=30).json()["data"]
    assert shown["type"] == "httpBasic" and shown["title"] == "Shop login"
    assert "open-sesame" not in json.dumps(shown)
    body = {"kwargs": {"x": 2, "y": 3}}
    url = f"{base}/api/v1/sync/auln-basic"
    ok = requests.post(url, json=body, auth=("shop", "open-sesame"), timeout=60)
    assert ok.status_code == 200 and ok.json() == EXPECTED, ok.text
    for auth in (("shop", "wrong"), ("someone", "open-sesame"), None):
        assert requests.post(url, json=body, auth=auth, timeout=60).status_code == 401, auth
    url = f"{base}/api/v1/sync/auln-token"
    assert requests.post(url, json=body, headers={"X-Token": "t0k3n"}, timeout=60).status_code == 200
    assert requests.post(url, json=body, headers={"X-Token": "nope"}, timeout=60).status_code == 401


def test_migrate_then_serve_at_the_old_urls(tmp_path: Path, mysql_url: str,
                                            redis_server: RedisServer) -> None:
    load_dff_database(mysql_url)
    with connector_user(mysql_url):
        migrate_then_serve(tmp_path, mysql_url, redis_server)


def migrate_then_serve(tmp_path: Path, mysql_url: str, redis_server: RedisServer) -> None:
    port = free_port()
    config = write_config(tmp_path / "fluxfunc.yaml", redis_url=redis_server.url,
                          namespace="dff" + secrets.token_hex(4),
                          store_url=f"sqlite:///{tmp_path / 'store.db'}", port=port)

    bare = migrate(config, mysql_url, "--dry-run", dff_secret=None)
    assert bare.returncode == 0, bare.stderr
    for line in ("create    connector mysql_main: without its password, untested",
                 "note      changed connector mysql_main: moved without its password (encrypted "
                 "with DataFlux Func's SECRET: give --dff-secret",
                 "note      connector mysql_main: set its password"):
        assert line in bare.stdout, bare.stdout
    dry = migrate(config, mysql_url, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "create    sync api auln-plus" in dry.stdout and "dry run: nothing written" in dry.stdout

    first = migrate(config, mysql_url)
    assert first.returncode == 0, first.stdout + first.stderr
    check_first_run(first.stdout)

    second = migrate(config, mysql_url)
    assert second.returncode == 0, second.stderr
    assert "nothing to change" in second.stdout and "create " not in second.stdout
    assert "update " not in second.stdout and "reminder: the subscriptions" not in second.stdout
    check_sealed(tmp_path / "store.db")

    base = f"http://127.0.0.1:{port}"
    with running(server(config, tmp_path, tmp_path), ready_url=f"{base}/healthz"), \
            running(worker(config, tmp_path, tmp_path)) as worker_proc:
        check_serving(base, config, worker_proc)


def test_older_table_names_are_read(mysql_url: str) -> None:
    """Before DataFlux Func 3 the entry points lived in biz_main_auth_link, biz_main_batch and
    biz_main_crontab_config (with ``crontab`` for the expression, ``taskInfoLimit``)."""
    from fluxfunc_common.store import Entity
    from fluxfunc_common.transfer import dff_database

    load_dff_database(mysql_url)
    parts = urlsplit(mysql_url)
    conn = pymysql.connect(host=parts.hostname, port=parts.port or 3306, user=parts.username,
                           password=parts.password or "", database=parts.path.strip("/"),
                           autocommit=True)
    try:
        with conn.cursor() as cur:
            cur.execute("RENAME TABLE biz_main_sync_api TO biz_main_auth_link, "
                        "biz_main_async_api TO biz_main_batch, "
                        "biz_main_cron_job TO biz_main_crontab_config")
            cur.execute("ALTER TABLE biz_main_crontab_config CHANGE cronExpr crontab varchar(64)")
            cur.execute("ALTER TABLE biz_main_auth_link CHANGE taskRecordLimit taskInfoLimit int")
            cur.execute("UPDATE biz_main_auth_link SET taskInfoLimit = 20 WHERE id = 'auln-plus'")
    finally:
        conn.close()
    bundle = dff_database.read(mysql_url, dff_secret=DFF_SECRET, default_timezone="UTC")
    sync = {str(r["id"]): r for r in bundle.rows[Entity.SYNC_API]}
    assert set(sync) == {"auln-basic", "auln-conn", "auln-dangling", "auln-limited", "auln-plus",
                         "auln-token"}
    assert sync["auln-plus"]["taskRecordLimit"] == 20
    assert [r["id"] for r in bundle.rows[Entity.ASYNC_API]] == ["bat-plus"]
    (cron,) = bundle.rows[Entity.CRON_JOB]
    assert cron["cronExpr"] == "0 * * * *" and cron["timezone"] == "Asia/Shanghai"
    assert bundle.secrets == {
        "env_variables/db_password": "s3cr3t-db-password",
        "api_auths/apia-basic": json.dumps({"users": [{"password": "open-sesame", "username": "shop"}]}),
        "api_auths/apia-digest": json.dumps({"users": [{"password": "digest-pass", "username": "ops"}]}),
        "api_auths/apia-token": json.dumps({"fields": [{"field": "X-Token", "location": "header",
                                                        "value": "t0k3n"}]}),
        "connectors/mysql_main": json.dumps({"password": CONN_PASSWORD})}
    assert sync["auln-basic"]["apiAuthId"] == "apia-basic" and not sync["auln-basic"]["isDisabled"]
    auths = {str(r["id"]): r for r in bundle.rows[Entity.API_AUTH]}
    assert auths["apia-basic"]["config"] == {"users": [{"username": "shop"}]}
    connectors = {str(r["id"]): r for r in bundle.rows[CONNECTOR]}
    assert set(connectors) == {"mqtt_bus", "mysql_main"}
    assert connectors["mysql_main"]["config"] == {"host": "127.0.0.1", "port": 3306, "user": "dff_conn",
                                                 "database": "dff", "charset": "utf8mb4",
                                                 "password": "******"}


def test_api_auths_without_the_dff_secret() -> None:
    """Without --dff-secret the passwords of an httpBasic auth cannot be read: the auth is
    skipped (said so) and the API using it is created disabled; a fixedField auth moves."""
    from fluxfunc_common.store import Entity
    from fluxfunc_common.transfer import dff_database

    data: dict[str, list[dict[str, object]]] = {kind: [] for kind in dff_database.TABLES}
    data["apiAuths"] = [
        {"id": "apia-b", "type": "httpBasic", "configJSON": '{"users": [{"username": "u", '
                                                            '"passwordCipher": "AESv2:x"}]}'},
        {"id": "apia-f", "type": "fixedField", "title": "F",
         "configJSON": {"fields": [{"location": "query", "name": "k", "value": "v"}]}},
        {"id": "apia-x", "type": "magic", "configJSON": "{}"}]
    data["syncAPIs"] = [{"id": "a1", "funcId": "s__m.f", "apiAuthId": "apia-b"},
                        {"id": "a2", "funcId": "s__m.f", "apiAuthId": "apia-f"}]
    bundle = dff_database.convert(data, dff_secret=None, default_timezone="UTC")
    assert [r["id"] for r in bundle.rows[Entity.API_AUTH]] == ["apia-f"]
    sync = {str(r["id"]): r for r in bundle.rows[Entity.SYNC_API]}
    assert sync["a1"]["isDisabled"] is True and "apiAuthId" not in sync["a1"]
    assert sync["a2"]["apiAuthId"] == "apia-f" and sync["a2"]["isDisabled"] is False
    assert any(n.startswith("skipped api auth apia-b: its passwords") for n in bundle.notes)
    assert any(n.startswith("skipped api auth apia-x: type 'magic'") for n in bundle.notes)
    assert bundle.secrets == {"api_auths/apia-f": json.dumps(
        {"fields": [{"field": "k", "location": "query", "value": "v"}]})}


def test_connectors_without_the_dff_secret() -> None:
    """Without --dff-secret a connector moves without its encrypted secrets (masked: the plan
    names them to set, written untested) and a note says so; a secret DataFlux Func keeps in
    clear (a DataWay token) moves; df_dataway is renamed; a kafka connector is skipped."""
    from fluxfunc_common.store import Entity
    from fluxfunc_common.transfer import dff_database

    data: dict[str, list[dict[str, object]]] = {kind: [] for kind in dff_database.TABLES}
    data["connectors"] = [
        {"id": "mysql_main", "type": "mysql", "isBuiltin": 0,
         "configJSON": '{"host": "h", "user": "u", "passwordCipher": "AESv2:Zqq9lQEUATt7RtpKrMp03Q=="}'},
        {"id": "way", "type": "df_dataway", "isBuiltin": 1,
         "configJSON": {"host": "w", "port": 9528, "token": "tkn_1"}},
        {"id": "cache", "type": "redis", "configJSON": {"host": "r", "password": None}},
        {"id": "k", "type": "kafka", "configJSON": "{}"}]
    bundle = dff_database.convert(data, dff_secret=None, default_timezone="UTC")
    rows = {str(r["id"]): r for r in bundle.rows[CONNECTOR]}
    assert rows["mysql_main"]["config"] == {"host": "h", "user": "u", "password": "******"}
    assert rows["way"]["type"] == "dataway" and rows["way"]["config"] == {"host": "w", "port": 9528,
                                                                "token": "******"}
    assert rows["cache"]["config"] == {"host": "r"}
    assert bundle.secrets == {"connectors/way": json.dumps({"token": "tkn_1"})}
    assert not bundle.rows[Entity.SCRIPT]
    for note in ("changed connector mysql_main: moved without its password (encrypted with DataFlux "
                 "Func's SECRET: give --dff-secret", "changed connector way: built into",
                 "skipped connector k: type 'kafka'"):
        assert any(n.startswith(note) for n in bundle.notes), (note, bundle.notes)
    with_secret = dff_database.convert(data, dff_secret=DFF_SECRET, default_timezone="UTC")
    assert with_secret.secrets == {"connectors/mysql_main": json.dumps({"password": CONN_PASSWORD}),
                                   "connectors/way": json.dumps({"token": "tkn_1"})}
    assert not any(n.startswith("changed connector mysql_main") for n in with_secret.notes)
