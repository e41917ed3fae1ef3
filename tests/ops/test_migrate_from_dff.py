"""``fluxfunc migrate-from-dff`` against a real DataFlux Func database: a MariaDB database with
DataFlux Func's table layout (tests/fixtures/dff), migrated into a fresh deployment that a
real Server + Worker then serve — the migrated sync API answers at its old URLs with the same
result, the password env variable decrypted — and a second run changes nothing."""

from __future__ import annotations

import secrets
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pymysql
import pytest
import requests
from tests.conftest import RedisServer
from tests.server.processes import Service, create_token, running, server, worker, write_config

from fluxfunc_common.proc.localredis import free_port

pytestmark = [pytest.mark.slow, pytest.mark.mysql]

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "dff"
DFF_SECRET = "dff-secret-abc"


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


def migrate(config: Path, mysql_url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fluxfunc_common.cli", "migrate-from-dff",
                           "--mysql", mysql_url, "--dff-secret", DFF_SECRET, "--config", str(config),
                           *extra], capture_output=True, text=True, timeout=120)


EXPECTED = {"sum": 5, "region": "cn-hangzhou", "retries": 3, "passwordOk": True}


def check_first_run(out: str) -> None:
    """Every object moved, changed (and why) or skipped is listed; the cron reminder ends it."""
    for line in ("create    script set demo", "create    script demo__calc",
                 "create    env variable db_password", "create    sync api auln-plus",
                 "create    async api bat-plus", "create    cron job cron-hourly",
                 "skipped script demo__readme", "skipped connector mysql_main",
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


def test_migrate_then_serve_at_the_old_urls(tmp_path: Path, mysql_url: str,
                                            redis_server: RedisServer) -> None:
    load_dff_database(mysql_url)
    port = free_port()
    config = write_config(tmp_path / "fluxfunc.yaml", redis_url=redis_server.url,
                          namespace="dff" + secrets.token_hex(4),
                          store_url=f"sqlite:///{tmp_path / 'store.db'}", port=port)

    dry = migrate(config, mysql_url, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "create    sync api auln-plus" in dry.stdout and "dry run: nothing written" in dry.stdout

    first = migrate(config, mysql_url)
    assert first.returncode == 0, first.stdout + first.stderr
    check_first_run(first.stdout)

    second = migrate(config, mysql_url)
    assert second.returncode == 0, second.stderr
    assert "nothing to change" in second.stdout and "create " not in second.stdout

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
    assert set(sync) == {"auln-dangling", "auln-limited", "auln-plus"}
    assert sync["auln-plus"]["taskRecordLimit"] == 20
    assert [r["id"] for r in bundle.rows[Entity.ASYNC_API]] == ["bat-plus"]
    (cron,) = bundle.rows[Entity.CRON_JOB]
    assert cron["cronExpr"] == "0 * * * *" and cron["timezone"] == "Asia/Shanghai"
    assert bundle.secrets == {"env_variables/db_password": "s3cr3t-db-password"}
