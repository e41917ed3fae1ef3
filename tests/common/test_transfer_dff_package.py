"""DataFlux Func 1.x's password-protected script package (``.func-pkg``): built here the way
its exporter builds one (zip of ``dataflux-func.json`` → base64 → AES-256-CBC with the
space-padded password, zero IV, space-padded text → base64), opened with the right password,
refused with a wrong or a missing one — and then nothing is written."""

from __future__ import annotations

import base64
import io
import json
import zipfile

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher as AesCipher
from cryptography.hazmat.primitives.ciphers import algorithms, modes
from tests.common.test_transfer import CODE, TARGET

from fluxfunc_common.errors import BadRequest
from fluxfunc_common.store import Entity, SqlStore
from fluxfunc_common.transfer import archive, dff_package
from fluxfunc_common.transfer.importing import import_bundle

PASSWORD = "pkg-pass-2022"


def _spaces(text: bytes, size: int) -> bytes:
    """DataFlux Func's padding: 1…size spaces up to the next multiple of size."""
    return text + b" " * (size - len(text) % size)


def package_file(data: dict[str, object], password: str) -> bytes:
    """A ``.func-pkg`` as DataFlux Func 1.x's ``scriptSetMod.export`` writes it."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("dataflux-func.json", json.dumps(data))
    text = base64.b64encode(out.getvalue())
    key = _spaces(password.encode(), 32)[:32]
    enc = AesCipher(algorithms.AES(key), modes.CBC(b"\0" * 16)).encryptor()
    return base64.b64encode(enc.update(_spaces(text, 16)) + enc.finalize())


PACKAGE: dict[str, object] = {
    "scriptSets": [{"id": "demo", "title": "Demo", "description": None, "requirements": "arrow"}],
    "scripts": [{"id": "demo__calc", "scriptSetId": "demo", "title": "Calc", "description": None,
                 "publishVersion": 4, "type": "python", "code": CODE},
                {"id": "other__x", "scriptSetId": "other", "type": "python", "code": "x = 1"}],
    "funcs": [{"id": "demo__calc.plus", "scriptSetId": "demo", "scriptId": "demo__calc",
               "name": "plus", "argsJSON": ["x", "y"]}],
    "note": "from 1.x",
    "authLinks": [{"id": "auln-plus", "funcId": "demo__calc.plus",
                   "funcCallKwargsJSON": {"x": "INPUT_BY_CALLER"},
                   "expireTime": "2030-01-01T00:00:00.000Z", "throttlingJSON": {"byMinute": 60},
                   "origin": "user", "showInDoc": 1, "isDisabled": 0, "note": None}],
    "crontabConfigs": [{"id": "cron-tick", "funcId": "demo__calc.tick", "funcCallKwargsJSON": "{}",
                        "crontab": "*/15 * * * *", "tagsJSON": None, "saveResult": 0,
                        "scope": "GLOBAL", "expireTime": None, "isDisabled": 0, "note": None}],
    "batches": [{"id": "bat-plus", "funcId": "demo__calc.plus", "funcCallKwargsJSON": {"x": 1},
                 "tagsJSON": ["b"], "isDisabled": 1}],
    "connectors": [{"id": "db", "type": "mysql", "configJSON": {"passwordCipher": ""}}],
    "dataSources": [{"id": "db", "type": "mysql", "configJSON": {"passwordCipher": ""}}],
    "envVariables": [{"id": "region", "title": "Region", "valueTEXT": "eu",
                      "autoTypeCasting": "string"}],
}


@pytest.fixture
def target(sql_store: SqlStore) -> SqlStore:
    return sql_store


def test_the_file_is_recognised_only_as_a_package() -> None:
    data = package_file(PACKAGE, PASSWORD)
    assert dff_package.is_package(data) and dff_package.is_package(data + b"\n")
    assert not dff_package.is_package(b"PK\x03\x04" + data)
    assert not dff_package.is_package(b"hello world, not base64!")


async def test_a_package_opens_with_its_password(target: SqlStore) -> None:
    plan = await import_bundle(target, archive.read(package_file(PACKAGE, PASSWORD),
                                                    password=PASSWORD), TARGET)
    assert not plan.conflicts(), plan.lines()
    assert plan.counts()["create"] == 7, plan.lines()  # set, script, env, 2 APIs, cron, connector
    assert await target.published_code("demo__calc") == (CODE, 4)
    sapi = await target.get(Entity.SYNC_API, "auln-plus")
    assert sapi["kwargs"] == {"x": "INPUT_BY_CALLER"} and sapi["expireTime"] == 1893456000.0
    assert sapi["throttling"] == {"byMinute": 60, "window": "fixed"}
    assert (await target.get(Entity.ASYNC_API, "bat-plus"))["isDisabled"] is True
    cron = await target.get(Entity.CRON_JOB, "cron-tick")
    assert cron["cronExpr"] == "*/15 * * * *" and cron["isDisabled"] is True
    assert (await target.get(Entity.ENV_VARIABLE, "region"))["value"] == "eu"
    assert await target.find(Entity.SCRIPT, "other__x") is None  # its set is not in the package
    assert any(n.startswith("connector db: set its password") for n in plan.notes), plan.notes
    assert (await target.get_connector("db")).type == "mysql"


@pytest.mark.parametrize("given", ["wrong-password", None])
async def test_a_wrong_or_missing_password_is_refused(target: SqlStore, given: str | None) -> None:
    data = package_file(PACKAGE, PASSWORD)
    with pytest.raises(BadRequest, match="wrong password" if given else "protected by a password"):
        archive.read(data, password=given)
    assert await target.find(Entity.SCRIPT_SET, "demo") is None


def test_a_package_without_password_opens_without_one() -> None:
    bundle = archive.read(package_file(PACKAGE, ""))
    assert [r["id"] for r in bundle.rows[Entity.SCRIPT]] == ["demo__calc"]
    # DataFlux Func cuts a long password at 32 characters
    long = "p" * 40
    assert archive.read(package_file(PACKAGE, long), password=long[:32] + "ignored").rows
