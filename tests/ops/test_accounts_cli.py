"""``fluxfunc admin create-user`` and ``create-token --role`` (issue 16): a generated password
printed once (or read from stdin), stored only as a scrypt hash; tokens carry the role given."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

from tests.conftest import RedisServer
from tests.server.processes import write_config

from fluxfunc_common import passwords
from fluxfunc_common.settings import StoreSettings
from fluxfunc_common.store import CredentialKind, User, open_store


def admin(config: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "fluxfunc_common.cli", "admin", *args,
                           "--config", str(config)], capture_output=True, text=True, timeout=60,
                          input=stdin, check=False)


def _config(tmp_path: Path, redis_server: RedisServer, namespace: str) -> tuple[Path, str]:
    store_url = f"sqlite:///{tmp_path / 'store.db'}"
    return write_config(tmp_path / "fluxfunc.yaml", redis_url=redis_server.url, namespace=namespace,
                        store_url=store_url), store_url


async def _user(store_url: str, username: str) -> User | None:
    async with open_store(StoreSettings(url=store_url)) as store:
        return await store.find_user(username)


def test_create_user_prints_a_generated_password_once(tmp_path: Path, redis_server: RedisServer,
                                                      namespace: str) -> None:
    config, store_url = _config(tmp_path, redis_server, namespace)
    done = admin(config, "create-user", "uma", "--role", "developer")
    assert done.returncode == 0, done.stderr
    password = done.stdout.strip().splitlines()[-1]
    assert "shown only now" in done.stdout and len(password) >= 16
    user = asyncio.run(_user(store_url, "uma"))
    assert user is not None and user.role == "developer"
    assert password not in user.password_hash and passwords.verify(password, user.password_hash)
    again = admin(config, "create-user", "uma", "--role", "viewer")
    assert again.returncode != 0 and "already exists" in again.stderr and "Traceback" not in again.stderr


def test_create_user_reads_the_password_from_stdin(tmp_path: Path, redis_server: RedisServer,
                                                   namespace: str) -> None:
    config, store_url = _config(tmp_path, redis_server, namespace)
    done = admin(config, "create-user", "vic", "--role", "viewer", "--password-stdin",
                 stdin="my own password\n")
    assert done.returncode == 0, done.stderr
    assert "my own password" not in done.stdout and "shown only now" not in done.stdout
    user = asyncio.run(_user(store_url, "vic"))
    assert user is not None and passwords.verify("my own password", user.password_hash)
    short = admin(config, "create-user", "wes", "--role", "viewer", "--password-stdin", stdin="short\n")
    assert short.returncode != 0 and "characters" in short.stderr
    bad = admin(config, "create-user", "token:x", "--role", "viewer")
    assert bad.returncode != 0 and "username" in bad.stderr
    wrong_role = admin(config, "create-user", "xena", "--role", "root")
    assert wrong_role.returncode != 0


def test_create_token_with_a_role(tmp_path: Path, redis_server: RedisServer, namespace: str) -> None:
    config, store_url = _config(tmp_path, redis_server, namespace)
    assert admin(config, "create-token", "--name", "reader", "--role", "viewer").returncode == 0
    assert admin(config, "create-token", "--name", "default").returncode == 0
    assert admin(config, "create-access-key", "--name", "sdk", "--role", "developer").returncode == 0
    listed = admin(config, "list-tokens").stdout
    roles = {line.split("\t")[1]: line.split("\t")[3] for line in listed.splitlines() if "\t" in line}
    assert roles == {"reader": "viewer", "default": "admin"}

    async def key_roles() -> list[str]:
        async with open_store(StoreSettings(url=store_url)) as store:
            return [c.role for c in await store.list_credentials(CredentialKind.ACCESS_KEY)]
    assert asyncio.run(key_roles()) == ["developer"]
