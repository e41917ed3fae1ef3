"""``fluxfunc export`` / ``fluxfunc import`` as a user runs them: two deployments' configs,
export from one, dry run and import into the other, a second export identical byte for
byte, a second import that changes nothing, sealed secrets with the passphrase variable."""

from __future__ import annotations

import asyncio
import secrets
from pathlib import Path

import pytest
from tests.common.test_transfer import SOURCE, populate
from tests.conftest import RedisServer
from tests.server.processes import write_config

from fluxfunc_common import cli
from fluxfunc_common.cli.transfer import DFF_PASSWORD_ENV, PASSPHRASE_ENV
from fluxfunc_common.crypto import Cipher
from fluxfunc_common.settings import StoreSettings
from fluxfunc_common.store import Entity, SqlStore, open_store

SECRET = "test-secret-for-fluxfunc-tests-only-0123"  # what write_config sets


def config(tmp_path: Path, name: str, redis_server: RedisServer) -> tuple[Path, str]:
    store_url = f"sqlite:///{tmp_path / name}.db"
    path = write_config(tmp_path / f"{name}.yaml", redis_url=redis_server.url,
                        namespace="xfer" + secrets.token_hex(4), store_url=store_url)
    return path, store_url


async def _populate(src_url: str) -> None:
    async with open_store(StoreSettings(url=src_url), migrate=True) as store:
        assert isinstance(store, SqlStore)
        await populate(store)
        # populate() sealed the password with SOURCE: reseal with this deployment's secret
        env = await store.get(Entity.ENV_VARIABLE, "db_pass")
        await store.update(Entity.ENV_VARIABLE, "db_pass", {
            "valueCipher": Cipher(SECRET).encrypt(SOURCE.decrypt(str(env["valueCipher"])))})
        auth = (await store.get(Entity.SYNC_API, "sapi-plus"))["apiAuth"]
        assert isinstance(auth, dict)
        await store.update(Entity.SYNC_API, "sapi-plus", {"apiAuth": {
            **auth, "valueCipher": Cipher(SECRET).encrypt(SOURCE.decrypt(auth["valueCipher"]))}})


async def _password(dst_url: str) -> str:
    async with open_store(StoreSettings(url=dst_url)) as store:
        env = await store.get(Entity.ENV_VARIABLE, "db_pass")
        plain: str = Cipher(SECRET).decrypt(str(env["valueCipher"]))
        return plain


def test_export_then_import_with_the_cli(tmp_path: Path, redis_server: RedisServer,
                                         capsys: pytest.CaptureFixture[str],
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    src_cfg, src_url = config(tmp_path, "src", redis_server)
    dst_cfg, dst_url = config(tmp_path, "dst", redis_server)
    asyncio.run(_populate(src_url))
    monkeypatch.setenv(PASSPHRASE_ENV, "passphrase for the cli test")
    first, second = tmp_path / "first.zip", tmp_path / "second.zip"
    assert cli.main(["export", "--config", str(src_cfg), "--with-secrets", str(first)]) == 0
    assert "2 secret(s) sealed" in capsys.readouterr().out
    assert cli.main(["import", "--config", str(dst_cfg), "--dry-run", str(first)]) == 0
    out = capsys.readouterr().out
    assert "create    script demo__calc" in out and "dry run: nothing written" in out
    assert cli.main(["import", "--config", str(dst_cfg), str(first)]) == 0
    assert "total: 7 create" in capsys.readouterr().out
    assert asyncio.run(_password(dst_url)) == "hunter2"
    assert cli.main(["import", "--config", str(dst_cfg), str(first)]) == 0
    assert "nothing to change" in capsys.readouterr().out
    monkeypatch.delenv(PASSPHRASE_ENV)
    plain_src, plain_dst = tmp_path / "a.zip", second
    assert cli.main(["export", "--config", str(src_cfg), str(plain_src)]) == 0
    assert cli.main(["export", "--config", str(dst_cfg), str(plain_dst)]) == 0
    assert plain_src.read_bytes() == plain_dst.read_bytes()


async def _script_set(url: str, title: str) -> None:
    async with open_store(StoreSettings(url=url), migrate=True) as store:
        await store.create(Entity.SCRIPT_SET, {"id": "tools", "title": title})


def test_conflicts_exit_1_and_name_the_object(tmp_path: Path, redis_server: RedisServer,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    src_cfg, src_url = config(tmp_path, "src", redis_server)
    dst_cfg, dst_url = config(tmp_path, "dst", redis_server)
    asyncio.run(_script_set(src_url, "Tools"))
    asyncio.run(_script_set(dst_url, "Other"))
    file = tmp_path / "x.zip"
    assert cli.main(["export", "--config", str(src_cfg), str(file)]) == 0
    assert cli.main(["import", "--config", str(dst_cfg), str(file)]) == 1
    out = capsys.readouterr().out
    assert "conflict  script set tools: exists and differs (title)" in out
    assert "nothing imported: 1 conflict(s)" in out
    assert cli.main(["import", "--config", str(dst_cfg), "--overwrite", str(file)]) == 0
    assert "update    script set tools: changes title" in capsys.readouterr().out


def test_import_a_dataflux_func_package_with_its_password(
        tmp_path: Path, redis_server: RedisServer, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.common.test_transfer_dff_package import PACKAGE, PASSWORD, package_file

    dst_cfg, dst_url = config(tmp_path, "dst", redis_server)
    package = tmp_path / "dataflux-func-20221001_120000.func-pkg"
    package.write_bytes(package_file(PACKAGE, PASSWORD))
    monkeypatch.delenv(DFF_PASSWORD_ENV, raising=False)
    assert cli.main(["import", "--config", str(dst_cfg), str(package)]) == 2
    assert "protected by a password" in capsys.readouterr().err
    assert cli.main(["import", "--config", str(dst_cfg), "--password", "guess", str(package)]) == 2
    assert "wrong password" in capsys.readouterr().err
    assert asyncio.run(_script_sets(dst_url)) == []  # nothing written
    monkeypatch.setenv(DFF_PASSWORD_ENV, PASSWORD)
    assert cli.main(["import", "--config", str(dst_cfg), "--dry-run", str(package)]) == 0
    assert "create    sync api auln-plus" in capsys.readouterr().out
    assert cli.main(["import", "--config", str(dst_cfg), "--password", PASSWORD, str(package)]) == 0
    out = capsys.readouterr().out
    assert "total: 7 create" in out and "connector db: set its password" in out
    assert asyncio.run(_script_sets(dst_url)) == ["demo"]


async def _script_sets(url: str) -> list[str]:
    async with open_store(StoreSettings(url=url), migrate=True) as store:
        page = await store.list(Entity.SCRIPT_SET)
        return [str(r["id"]) for r in page.items]
