"""Connectors in an export: masked secrets in the file, sealed ones with a passphrase, an import
without secrets that keeps stored ones and says which must be set, subscriptions moved with
their enabled/disabled state, and the checks (type, subscription funcs) as conflicts."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml
from tests.common.test_transfer import PASSPHRASE, SOURCE, TARGET, populate

from fluxfunc_common.connectors.types import ConnectorType, StoredConnector
from fluxfunc_common.crypto import Cipher
from fluxfunc_common.settings import StoreSettings
from fluxfunc_common.store import SqlStore, open_store
from fluxfunc_common.transfer import archive, dff_cipher
from fluxfunc_common.transfer.bundle import CONNECTOR
from fluxfunc_common.transfer.exporting import export_bundle
from fluxfunc_common.transfer.importing import import_bundle
from fluxfunc_common.transfer.planning import Action, make_plan

HANDLERS = [{"topic": "orders/#", "funcId": "demo__calc.plus"},
            {"topic": "audit", "funcId": "demo__calc.plus", "isDisabled": True}]


def broker(cipher: Cipher, *, password: str | None = "s3cret", disabled: bool = False,
           host: str = "mq.example", connector_id: str = "mq") -> StoredConnector:
    config: dict[str, object] = {"host": host, "port": 1883, "user": "bot",
                                 "topicHandlers": HANDLERS}
    if password is not None:
        config["passwordCipher"] = cipher.encrypt(password)
    return StoredConnector(id=connector_id, type=ConnectorType.MQTT, title="Broker",
                           config=config, isDisabled=disabled)


@pytest.fixture
async def source(tmp_path: Path) -> AsyncIterator[SqlStore]:
    async with open_store(StoreSettings(url=f"sqlite:///{tmp_path / 'src.db'}"), migrate=True) as s:
        assert isinstance(s, SqlStore)
        await populate(s)
        await s.create_connector(broker(SOURCE))
        await s.create_connector(broker(SOURCE, password=None, disabled=True, connector_id="mq-off"))
        yield s


@pytest.fixture
def target(sql_store: SqlStore) -> SqlStore:
    return sql_store


async def export_zip(store: SqlStore, cipher: Cipher, *, secrets: bool = False) -> bytes:
    bundle = await export_bundle(store, cipher, with_secrets=secrets)
    data: bytes = archive.write(bundle, passphrase=PASSPHRASE if secrets else None)
    return data


def connectors_json(data: bytes) -> list[dict[str, object]]:
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        rows: list[dict[str, object]] = json.loads(zf.read("connectors.json"))
        return rows


async def test_without_secrets_they_are_masked_kept_out_and_named(source: SqlStore,
                                                                  target: SqlStore) -> None:
    data = await export_zip(source, SOURCE)
    assert b"s3cret" not in data and b"Cipher" not in data
    rows = {r["id"]: r for r in connectors_json(data)}
    assert rows["mq"]["config"] == {"host": "mq.example", "port": 1883, "user": "bot",
                                    "password": "******", "topicHandlers": HANDLERS}
    assert "createTime" not in rows["mq"] and rows["mq-off"]["isDisabled"] is True
    plan = await import_bundle(target, archive.read(data), TARGET)
    steps = {s.id: s for s in plan.steps if s.kind is CONNECTOR}
    assert steps["mq"].action is Action.CREATE and "without its password" in steps["mq"].why
    assert any(n.startswith("connector mq: set its password") for n in plan.notes), plan.notes
    assert not any("mq-off" in n for n in plan.notes)  # it had no secret
    created = await target.get_connector("mq")
    assert "passwordCipher" not in created.config and created.config.get("password") is None
    # subscriptions as they were: the disabled handler and the disabled connector stay so
    assert created.config["topicHandlers"] == HANDLERS and created.is_disabled is False
    assert (await target.get_connector("mq-off")).is_disabled is True
    again = await import_bundle(target, archive.read(data), TARGET)
    assert not again.writes() and not again.conflicts(), again.lines()
    assert any(n.startswith("connector mq: set its password") for n in again.notes)


async def test_secrets_travel_sealed_and_arrive_resealed(source: SqlStore, target: SqlStore) -> None:
    data = await export_zip(source, SOURCE, secrets=True)
    assert b"s3cret" not in data
    plan = await import_bundle(target, archive.read(data, passphrase=PASSPHRASE), TARGET)
    assert not any("connector" in n for n in plan.notes)
    stored = await target.get_connector("mq")
    assert TARGET.decrypt(str(stored.config["passwordCipher"])) == "s3cret"
    again = await import_bundle(target, archive.read(data, passphrase=PASSPHRASE), TARGET)
    assert not again.writes()
    # the public part of an export of either deployment is the same, byte for byte
    assert await export_zip(source, SOURCE) == await export_zip(target, TARGET)
    # a changed secret is an update (with overwrite) and names it
    await source.replace_connector(broker(SOURCE, password="rotated"))
    changed = await make_plan(target, archive.read(await export_zip(source, SOURCE, secrets=True),
                                                   passphrase=PASSPHRASE), TARGET, overwrite=True)
    step = next(s for s in changed.steps if s.id == "mq")
    assert step.action is Action.UPDATE and "(secret)" in step.why


async def test_import_without_secrets_keeps_the_stored_ones(source: SqlStore,
                                                            target: SqlStore) -> None:
    await target.create_connector(broker(TARGET, password="target-pass", host="old.example"))
    data = await export_zip(source, SOURCE)
    plan = await make_plan(target, archive.read(data), TARGET)
    conflict = next(s for s in plan.steps if s.id == "mq")
    assert conflict.action is Action.CONFLICT and "config" in conflict.why
    plan = await import_bundle(target, archive.read(data), TARGET, overwrite=True)
    assert not any(n.startswith("connector mq:") for n in plan.notes)  # it has its password
    stored = await target.get_connector("mq")
    assert stored.config["host"] == "mq.example"
    assert TARGET.decrypt(str(stored.config["passwordCipher"])) == "target-pass"


async def test_broken_connectors_are_conflicts_by_id(source: SqlStore, target: SqlStore) -> None:
    bundle = archive.read(await export_zip(source, SOURCE))
    rows = {str(r["id"]): r for r in bundle.rows[CONNECTOR]}
    rows["mq"]["config"] = {**HANDLERS[0], "topicHandlers": [{"topic": "t", "funcId": "demo__calc.gone"}]}
    rows["mq-off"]["type"] = "kafka"
    plan = await make_plan(target, bundle, TARGET)
    why = {s.id: s.why for s in plan.conflicts()}
    assert set(why) == {"mq", "mq-off"}, plan.lines()
    assert "demo__calc.gone" in why["mq"] and "type" in why["mq-off"]


async def test_a_secret_written_plain_into_the_file_is_stored_sealed(source: SqlStore,
                                                                    target: SqlStore) -> None:
    bundle = archive.read(await export_zip(source, SOURCE))
    row = next(r for r in bundle.rows[CONNECTOR] if r["id"] == "mq")
    config = row["config"]
    assert isinstance(config, dict)
    config["password"] = "typed-in"
    await import_bundle(target, bundle, TARGET)
    stored = await target.get_connector("mq")
    assert "password" not in stored.config
    assert TARGET.decrypt(str(stored.config["passwordCipher"])) == "typed-in"


def dff_export_with_connectors() -> bytes:
    """DataFlux Func's export of three connectors as it writes them: a DataWay ``token`` kept in
    clear, a MySQL password whose cipher the export emptied, and (as an older or edited file
    may hold) a Redis password still encrypted with DataFlux Func's SECRET."""
    meta = {"version": 2, "scriptSets": [], "connectors": [
        {"id": "dw", "title": "DataWay", "type": "df_dataway",
         "configJSON": {"host": "dw.example", "port": 9528, "token": "tkn_abc"}},
        {"id": "db", "type": "mysql", "configJSON": {"host": "db", "user": "u", "passwordCipher": ""}},
        {"id": "rd", "type": "redis", "configJSON": {
            "host": "rd", "passwordCipher": dff_cipher.encrypt("pw", "dff-secret", "rd")}},
    ]}
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr("META.yaml", yaml.safe_dump(meta))
    return out.getvalue()


async def test_a_dataflux_func_export_brings_the_secrets_it_left_in_clear(target: SqlStore) -> None:
    bundle = archive.read(dff_export_with_connectors())
    assert json.loads(bundle.secrets["connectors/dw"]) == {"token": "tkn_abc"}
    assert "connectors/db" not in bundle.secrets and "connectors/rd" not in bundle.secrets
    plan = await import_bundle(target, bundle, TARGET)
    notes = "\n".join(plan.notes)
    assert "connector db: set its password" in notes and "connector rd: set its password" in notes
    assert "connector dw" not in notes
    dataway = await target.get_connector("dw")
    assert dataway.type is ConnectorType.DATAWAY
    assert TARGET.decrypt(str(dataway.config["tokenCipher"])) == "tkn_abc" and "token" not in dataway.config
    for connector_id in ("db", "rd"):  # written without the password, to be set here
        stored = await target.get_connector(connector_id)
        assert "password" not in stored.config and "passwordCipher" not in stored.config
