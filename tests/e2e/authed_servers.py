"""Private servers that check a password, for the connector acceptance tests: the shared ones
of this machine let anyone in (Mosquitto anonymous, NATS without users, InfluxDB without auth,
PostgreSQL ``trust`` on 127.0.0.1, Redis without ``requirepass``), so a wrong password would
not be refused by them. Each runs on a free port with its files in a temp directory removed
afterwards; a context manager yields ``(port, user, password)``."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import redis_server_binary

from fluxfunc_common.proc.localredis import free_port

START_SECONDS = 60.0  # a loaded machine: initdb and influxd may take a while


@dataclass(frozen=True)
class Authed:
    port: int
    user: str
    password: str
    database: str = ""


def _listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True
    return False


@contextlib.contextmanager
def _process(argv: Sequence[str], port: int, log: Path, **popen: object) -> Iterator[None]:
    """Run ``argv`` until it listens on ``port``; always stopped (SIGTERM, then SIGKILL)."""
    with log.open("ab") as out:
        proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=out,  # type: ignore[call-overload]
                                stderr=subprocess.STDOUT, **popen)
    try:
        deadline = time.monotonic() + START_SECONDS
        while not _listening(port):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{argv[0]} did not start on {port}: "
                                   f"{log.read_text(errors='replace')[-1500:]}")
            time.sleep(0.05)
        yield
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


@contextlib.contextmanager
def _tmp(prefix: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@contextlib.contextmanager
def redis_with_password() -> Iterator[Authed]:
    """redis-server with ``requirepass`` (the default user's password)."""
    with _tmp("fluxfunc-authredis-") as tmp:
        port, password = free_port(), "redis-pw-h1"
        argv = [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(tmp),
                "--save", "", "--appendonly", "no", "--requirepass", password]
        with _process(argv, port, tmp / "log"):
            yield Authed(port, "", password)


@contextlib.contextmanager
def mosquitto_with_password() -> Iterator[Authed]:
    """Mosquitto with ``allow_anonymous false`` and a ``password_file`` (mosquitto_passwd)."""
    with _tmp("fluxfunc-authmqtt-") as tmp:
        port, user, password = free_port(), "fluxfunc", "mqtt-pw-h1"
        passwords = tmp / "passwords"
        subprocess.run([shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd", "-b", "-c",
                        str(passwords), user, password], check=True, capture_output=True, timeout=30)
        tmp.chmod(0o755)  # mosquitto started as root reads it as the user `mosquitto`
        passwords.chmod(0o644)
        conf = tmp / "mosquitto.conf"
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous false\npersistence false\n"
                        f"password_file {passwords}\n")
        binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        with _process([binary, "-c", str(conf)], port, tmp / "log"):
            yield Authed(port, user, password)


@contextlib.contextmanager
def nats_with_password() -> Iterator[Authed]:
    """nats-server with ``--user`` / ``--pass``."""
    with _tmp("fluxfunc-authnats-") as tmp:
        port, user, password = free_port(), "fluxfunc", "nats-pw-h1"
        binary = shutil.which("nats-server") or "/usr/sbin/nats-server"
        argv = [binary, "-a", "127.0.0.1", "-p", str(port), "--user", user, "--pass", password]
        with _process(argv, port, tmp / "log"):
            yield Authed(port, user, password)


def _influx_query(port: int, statement: str, auth: tuple[str, str] | None = None) -> None:
    body = urllib.parse.urlencode({"q": statement}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/query", data=body, method="POST")
    if auth is not None:
        import base64

        request.add_header("Authorization", "Basic " + base64.b64encode(
            f"{auth[0]}:{auth[1]}".encode()).decode())
    with urllib.request.urlopen(request, timeout=30) as resp:
        resp.read()


@contextlib.contextmanager
def influxdb_with_password(database: str) -> Iterator[Authed]:
    """influxd 1.x with ``auth-enabled``: an admin user and ``database`` created."""
    with _tmp("fluxfunc-authinflux-") as tmp:
        port, user, password = free_port(), "fluxfunc", "influx-pw-h1"
        env = {"INFLUXDB_META_DIR": str(tmp / "meta"), "INFLUXDB_DATA_DIR": str(tmp / "data"),
               "INFLUXDB_DATA_WAL_DIR": str(tmp / "wal"),
               "INFLUXDB_HTTP_BIND_ADDRESS": f"127.0.0.1:{port}",
               "INFLUXDB_BIND_ADDRESS": f"127.0.0.1:{free_port()}",
               "INFLUXDB_HTTP_AUTH_ENABLED": "true", "INFLUXDB_REPORTING_DISABLED": "true",
               "INFLUXDB_HTTP_LOG_ENABLED": "false", "INFLUXDB_DATA_QUERY_LOG_ENABLED": "false",
               "PATH": "/usr/bin:/usr/sbin:/bin"}
        binary = shutil.which("influxd") or "/usr/bin/influxd"
        with _process([binary, "-config", "/dev/null"], port, tmp / "log", env=env):
            # with no user yet, InfluxDB lets the first admin be created without credentials
            _influx_query(port, f"CREATE USER {user} WITH PASSWORD '{password}' WITH ALL PRIVILEGES")
            _influx_query(port, f'CREATE DATABASE "{database}"', (user, password))
            yield Authed(port, user, password)


def _as_postgres(argv: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: run it as the ``postgres`` system user then."""
    import os

    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


@contextlib.contextmanager
def postgresql_with_password() -> Iterator[Authed]:
    """A private PostgreSQL cluster (initdb) whose only login is ``scram-sha-256`` over TCP."""
    with _tmp("fluxfunc-authpg-") as tmp:
        port, user, password = free_port(), "postgres", "pg-pw-h1"
        data, pwfile = tmp / "data", tmp / "pw"
        pwfile.write_text(password + "\n")
        if _as_postgres([]):
            shutil.chown(tmp, "postgres")
        pwfile.chmod(0o644)
        bindir = Path(shutil.which("postgres") or "/usr/local/bin/postgres").parent
        subprocess.run(_as_postgres([str(bindir / "initdb"), "-D", str(data), "-U", user,
                                     "--auth=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8",
                                     "--no-sync"]),
                       check=True, capture_output=True, timeout=120)
        argv = _as_postgres([str(bindir / "postgres"), "-D", str(data), "-p", str(port), "-k", str(tmp),
                             "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"])
        with _process(argv, port, tmp / "log"):
            yield Authed(port, user, password)


@contextlib.contextmanager
def mysql_user_with_password() -> Iterator[Authed]:
    """On the shared MariaDB (its root has no password): a user of the test's own with a
    password and a database it may use, both dropped afterwards."""
    import secrets

    import pymysql

    tag = secrets.token_hex(4)
    user, password, database = f"h1_{tag}", f"mysql-pw-{tag}", f"h1_connacc_{tag}"
    root = pymysql.connect(host="127.0.0.1", port=3306, user="root", autocommit=True)
    try:
        with root.cursor() as cur:
            cur.execute(f"CREATE DATABASE {database}")
            cur.execute(f"CREATE USER '{user}'@'%' IDENTIFIED BY '{password}'")
            cur.execute(f"GRANT ALL ON {database}.* TO '{user}'@'%'")
        yield Authed(3306, user, password, database)
    finally:
        with root.cursor() as cur:
            cur.execute(f"DROP USER IF EXISTS '{user}'@'%'")
            cur.execute(f"DROP DATABASE IF EXISTS {database}")
        root.close()
