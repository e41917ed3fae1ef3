"""Export → import round trips (a second export is byte-identical), secrets sealed with a
passphrase, the plan (create / update / unchanged / conflict), all-or-nothing writes, and
DataFlux Func's own export file and cipher."""

from __future__ import annotations

import io
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml

from fluxfunc_common import scripts
from fluxfunc_common.crypto import Cipher
from fluxfunc_common.errors import BadRequest, Conflict
from fluxfunc_common.settings import StoreSettings
from fluxfunc_common.store import Entity, SqlStore, open_store
from fluxfunc_common.transfer import archive, dff_cipher
from fluxfunc_common.transfer.exporting import export_bundle
from fluxfunc_common.transfer.importing import import_bundle
from fluxfunc_common.transfer.planning import Action, make_plan

CODE = '''
@DFF.API("Plus")
def plus(x, y=1):
    return x + y

@DFF.API("Tick", fixed_cron_expr="*/5 * * * *")
def tick():
    return "tick"
'''
SOURCE = Cipher("source-deployment-secret-0123456789abcdef")
TARGET = Cipher("target-deployment-secret-0123456789abcdef")
PASSPHRASE = "correct horse battery staple"


@pytest.fixture
async def source(tmp_path: Path) -> AsyncIterator[SqlStore]:
    async with open_store(StoreSettings(url=f"sqlite:///{tmp_path / 'a.db'}"), migrate=True) as s:
        assert isinstance(s, SqlStore)
        await populate(s)
        yield s


@pytest.fixture
def target(sql_store: SqlStore) -> SqlStore:
    """The deployment imported into: SQLite and MariaDB (``store_url``)."""
    return sql_store


async def populate(store: SqlStore) -> None:
    """What the Server would have stored: a published script, env variables (one password),
    a sync API with a sealed fixedField value, an async API and a cron job."""
    await store.create(Entity.SCRIPT_SET, {"id": "demo", "title": "Demo", "description": None,
                                           "requirements": "arrow==1.3.0"})
    funcs = scripts.analyse("demo__calc", CODE).funcs
    await store.publish_script("demo__calc", CODE, funcs, create={
        "scriptSetId": "demo", "title": "calc", "description": "sums", "code": CODE + "# draft\n"})
    await store.create(Entity.ENV_VARIABLE, {"id": "region", "title": "Region", "description": None,
                                             "valueType": "string", "value": "eu"})
    await store.create(Entity.ENV_VARIABLE, {"id": "db_pass", "title": None, "description": None,
                                             "valueType": "password", "value": None,
                                             "valueCipher": SOURCE.encrypt("hunter2")})
    await store.create(Entity.SYNC_API, {
        "id": "sapi-plus", "funcId": "demo__calc.plus", "kwargs": {"x": "INPUT_BY_CALLER"},
        "apiAuth": {"type": "fixedField", "location": "header", "field": "X-Key",
                    "valueCipher": SOURCE.encrypt("k-123")},
        "throttling": {"bySecond": 5, "window": "fixed"}, "expireTime": None,
        "isDisabled": False, "taskRecordLimit": None, "tags": ["a"], "note": None})
    await store.create(Entity.ASYNC_API, {
        "id": "aapi-plus", "funcId": "demo__calc.plus", "kwargs": {}, "apiAuth": {"type": "none"},
        "throttling": None, "expireTime": None, "isDisabled": False, "taskRecordLimit": None,
        "tags": [], "note": None})
    await store.create(Entity.CRON_JOB, {
        "id": "cron-plus", "funcId": "demo__calc.plus", "kwargs": {"x": 1}, "cronExpr": "0 * * * *",
        "timezone": "UTC", "misfirePolicy": "fireOnce", "overlapPolicy": "skip",
        "expireTime": None, "isDisabled": False, "taskRecordLimit": None, "tags": [], "note": None})


async def export_zip(store: SqlStore, cipher: Cipher, *, secrets: bool = False) -> bytes:
    bundle = await export_bundle(store, cipher, with_secrets=secrets)
    data: bytes = archive.write(bundle, passphrase=PASSPHRASE if secrets else None)
    return data


async def test_round_trip_is_byte_identical(source: SqlStore, target: SqlStore) -> None:
    first = await export_zip(source, SOURCE)
    assert await export_zip(source, SOURCE) == first  # deterministic
    plan = await import_bundle(target, archive.read(first), TARGET)
    assert plan.counts() == {"create": 7, "update": 0, "unchanged": 0, "skip": 0, "conflict": 0}
    assert await export_zip(target, TARGET) == first
    assert await target.published_code("demo__calc") == (CODE, 1)
    func = await target.get(Entity.FUNC, "demo__calc.tick")
    assert func["scriptSetId"] == "demo"
    script = await target.get(Entity.SCRIPT, "demo__calc")
    assert script["code"] == CODE + "# draft\n"
    # without secrets the password arrives without a value, the fixedField without its value
    env = await target.get(Entity.ENV_VARIABLE, "db_pass")
    assert env["valueType"] == "password" and "valueCipher" not in env
    again = await import_bundle(target, archive.read(first), TARGET)
    assert again.counts()["unchanged"] == 7 and not again.writes()


async def test_zip_is_sorted_with_fixed_timestamps(source: SqlStore) -> None:
    with zipfile.ZipFile(io.BytesIO(await export_zip(source, SOURCE))) as zf:
        names = zf.namelist()
        assert names == sorted(names) and "fluxfunc-export.json" in names
        assert {i.date_time for i in zf.infolist()} == {(1980, 1, 1, 0, 0, 0)}
        assert b"hunter2" not in zf.read("env_variables.json")


async def test_secrets_travel_sealed_with_a_passphrase(source: SqlStore, target: SqlStore) -> None:
    data = await export_zip(source, SOURCE, secrets=True)
    assert b"hunter2" not in data and b"k-123" not in data
    assert archive.has_sealed_secrets(data)
    with pytest.raises(BadRequest, match="wrong passphrase"):
        archive.read(data, passphrase="not the passphrase")
    assert any("secrets left out" in note for note in archive.read(data).notes)
    await import_bundle(target, archive.read(data, passphrase=PASSPHRASE), TARGET)
    env = await target.get(Entity.ENV_VARIABLE, "db_pass")
    assert TARGET.decrypt(str(env["valueCipher"])) == "hunter2"
    auth = (await target.get(Entity.SYNC_API, "sapi-plus"))["apiAuth"]
    assert isinstance(auth, dict) and TARGET.decrypt(str(auth["valueCipher"])) == "k-123"
    # the same secrets again: unchanged; the public part of a second export is identical
    again = await import_bundle(target, archive.read(data, passphrase=PASSPHRASE), TARGET)
    assert not again.writes()
    plain_a, plain_b = await export_zip(source, SOURCE), await export_zip(target, TARGET)
    assert plain_a == plain_b


async def test_conflicts_are_listed_by_id_and_nothing_is_written(source: SqlStore,
                                                                 target: SqlStore) -> None:
    data = await export_zip(source, SOURCE)
    await target.create(Entity.ENV_VARIABLE, {"id": "region", "title": "Region",
                                              "description": None, "valueType": "string",
                                              "value": "us"})
    plan = await make_plan(target, archive.read(data), TARGET)
    assert [s.id for s in plan.conflicts()] == ["region"]
    assert "value" in plan.conflicts()[0].why
    with pytest.raises(Conflict):
        await import_bundle(target, archive.read(data), TARGET)
    assert await target.find(Entity.SCRIPT_SET, "demo") is None  # all or nothing
    dry = await import_bundle(target, archive.read(data), TARGET, overwrite=True, dry_run=True)
    assert {s.id: s.action for s in dry.steps}["region"] is Action.UPDATE
    assert await target.find(Entity.SCRIPT_SET, "demo") is None  # dry run writes nothing
    await import_bundle(target, archive.read(data), TARGET, overwrite=True)
    assert (await target.get(Entity.ENV_VARIABLE, "region"))["value"] == "eu"


async def test_a_failure_mid_write_rolls_everything_back(source: SqlStore, target: SqlStore) -> None:
    plan = await make_plan(target, archive.read(await export_zip(source, SOURCE)), TARGET)
    # an object created between planning and writing: the insert fails late in the transaction
    await target.create(Entity.CRON_JOB, {"id": "cron-plus", "funcId": "x.y", "kwargs": {}})
    from fluxfunc_common.transfer.applying import apply_plan

    with pytest.raises(Conflict, match="meanwhile"):
        await apply_plan(target, plan, TARGET)
    for kind, entity_id in ((Entity.SCRIPT_SET, "demo"), (Entity.SCRIPT, "demo__calc"),
                            (Entity.FUNC, "demo__calc.plus"), (Entity.SYNC_API, "sapi-plus")):
        assert await target.find(kind, entity_id) is None


async def test_entry_points_need_their_func(source: SqlStore, target: SqlStore) -> None:
    bundle = archive.read(await export_zip(source, SOURCE))
    bundle.rows[Entity.SYNC_API][0]["funcId"] = "demo__calc.missing"
    bundle.rows[Entity.CRON_JOB][0]["cronExpr"] = "not a schedule"
    plan = await make_plan(target, bundle, TARGET)
    why = {s.id: s.why for s in plan.conflicts()}
    assert set(why) == {"sapi-plus", "cron-plus"}
    assert "demo__calc.missing" in why["sapi-plus"]


# --- DataFlux Func's export file --------------------------------------------------------------


def dff_export_zip() -> bytes:
    """A script-set export as DataFlux Func writes it (META.yaml + script-sets/<set>/<name>.py),
    under a top folder, as an unpacked-and-rezipped export has."""
    meta = {
        "version": 2,
        "scriptSets": [{"id": "demo", "title": "Demo", "description": None, "requirements": None,
                        "origin": "user", "originId": "u-1", "scripts": [
                            {"id": "demo__calc", "title": "Calc", "description": None,
                             "publishVersion": 3, "type": "python", "codeMD5": "x",
                             "funcs": [{"id": "demo__calc.plus", "name": "plus"}]},
                            {"id": "demo__readme", "title": "Readme", "type": "markdown"}]}],
        "connectors": [{"id": "mysql1", "title": "DB", "type": "mysql",
                        "configJSON": {"host": "db", "port": 3306, "passwordCipher": ""}},
                       {"id": "mq", "type": "mqtt", "configJSON": {"host": "mq", "topicHandlers": [
                           {"topic": "t/#", "funcId": "demo__calc.plus"}]}},
                       {"id": "kafka1", "type": "kafka", "configJSON": {}}],
        "envVariables": [{"id": "db_pass", "title": "DB", "autoTypeCasting": "string",
                          "valueTEXT": ""},
                         {"id": "flags", "autoTypeCasting": "commaArray", "valueTEXT": "a,b"}],
        "syncAPIs": [{"id": "auln-plus", "funcId": "demo__calc.plus",
                      "funcCallKwargsJSON": {"x": "INPUT_BY_CALLER"}, "expireTime": None,
                      "throttlingJSON": {"bySecond": 2}, "isDisabled": False, "note": None}],
        "cronJobs": [{"id": "cron-1", "funcId": "demo__calc.plus", "funcCallKwargsJSON": {"x": 1},
                      "cronExpr": "*/5 * * * *", "tagsJSON": ["t"], "isDisabled": False}],
        "extra": {"exportUser": "admin", "note": "Exported by admin"},
    }
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr("export-2024/META.yaml", yaml.safe_dump(meta, allow_unicode=True))
        zf.writestr("export-2024/script-sets/demo/calc.py", CODE)
        zf.writestr("export-2024/script-sets/demo/readme.md", "# hi")
        zf.writestr("export-2024/NOTE.txt", "Exported by admin")
    return out.getvalue()


async def test_dataflux_func_export_imports_unchanged(target: SqlStore) -> None:
    bundle = archive.read(dff_export_zip())
    plan = await import_bundle(target, bundle, TARGET)
    assert not plan.conflicts(), plan.lines()
    assert await target.published_code("demo__calc") == (CODE, 3)
    sapi = await target.get(Entity.SYNC_API, "auln-plus")
    assert sapi["kwargs"] == {"x": "INPUT_BY_CALLER"}
    assert sapi["throttling"] == {"bySecond": 2, "window": "fixed"}
    cron = await target.get(Entity.CRON_JOB, "cron-1")
    assert cron["isDisabled"] is True and cron["tags"] == ["t"]
    assert (await target.get(Entity.ENV_VARIABLE, "flags"))["value"] == ["a", "b"]
    notes = "\n".join(plan.notes)
    assert "demo__readme" in notes and "connector mysql1: set its password" in notes
    assert "skipped connector kafka1" in notes
    assert "connector mq: its 1 subscription(s) created DISABLED" in notes
    mysql1 = await target.get_connector("mysql1")
    assert mysql1.config == {"host": "db", "port": 3306}  # the password is still to be set
    mq = await target.get_connector("mq")
    assert mq.config["topicHandlers"] == [{"topic": "t/#", "funcId": "demo__calc.plus",
                                           "isDisabled": True}]
    # enabling the cron job and the subscription here and importing again changes nothing
    await target.update(Entity.CRON_JOB, "cron-1", {"isDisabled": False})
    await target.replace_connector(mq.model_copy(update={"config": {
        **mq.config, "topicHandlers": [{"topic": "t/#", "funcId": "demo__calc.plus"}]}}))
    again = await import_bundle(target, archive.read(dff_export_zip()), TARGET)
    assert not again.writes() and not again.conflicts(), again.lines()


def test_not_an_export_is_refused() -> None:
    with pytest.raises(BadRequest, match="not a zip"):
        archive.read(b"hello")
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("other.txt", "x")
    with pytest.raises(BadRequest, match="not an export file"):
        archive.read(buf.getvalue())


# --- DataFlux Func's cipher: vectors made by its own cipherByAES (Node) -----------------------


@pytest.mark.parametrize(("cipher_text", "secret", "salt", "plain"), [
    ("AESv2:CP0f3dsi8OyUId8SEz1uxjKePV3kSg+d7lx4uxElXf0=", "dff-secret-abc", "db_password",
     "s3cr3t-db-password"),
    ("AESv2:575/DEtWjbSVmG1dXt0snlsZp2UHmeUG8nSFylGP3Jc=", "dff-secret-abc", "k2",
     "exactly16chars!!"),
    ("AxuLhOj2Nhf3Kme1AMpwGA==", "shortsecret", "ignored", "old-style"),
])
def test_dff_cipher_known_answers(cipher_text: str, secret: str, salt: str, plain: str) -> None:
    assert dff_cipher.decrypt(cipher_text, secret, salt) == plain
    if cipher_text.startswith(dff_cipher.HEADER):
        assert dff_cipher.encrypt(plain, secret, salt) == cipher_text


def test_dff_cipher_wrong_secret() -> None:
    data = dff_cipher.encrypt("a longer password than one block", "right", "id")
    with pytest.raises(BadRequest, match="dff-secret"):
        dff_cipher.decrypt(data, "wrong", "id")


async def test_older_dataflux_func_export_layout(target: SqlStore) -> None:
    """Exports without META.yaml: scriptSets.yaml plus one YAML file per kind, old names."""
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr("scriptSets.yaml", yaml.safe_dump([{"id": "demo", "title": "Demo", "scripts": [
            {"id": "demo__calc", "type": "python", "publishVersion": 1}]}]))
        zf.writestr("script-sets/demo/calc.py", CODE)
        zf.writestr("authLinks.yaml", yaml.safe_dump([{"id": "auln-old", "funcId": "demo__calc.plus",
                                                       "funcCallKwargsJSON": '{"x": 1}'}]))
        zf.writestr("crontabConfigs.yaml", yaml.safe_dump([{"id": "cron-old",
                                                            "funcId": "demo__calc.tick",
                                                            "crontab": "*/10 * * * *"}]))
    plan = await import_bundle(target, archive.read(out.getvalue()), TARGET)
    assert plan.counts()["create"] == 4, plan.lines()
    assert (await target.get(Entity.SYNC_API, "auln-old"))["kwargs"] == {"x": 1}
    assert (await target.get(Entity.CRON_JOB, "cron-old"))["cronExpr"] == "*/10 * * * *"
